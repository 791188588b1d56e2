/**
 * The store side against real Nix: chroot shared stores under a temp dir, the
 * host store as the `local` substituter, file:// binary caches made for the
 * test. Paths are built fresh (salted) once for the whole file.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../../src/config/config';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { createClosureEnsurer, type ClosureEnsurerDeps } from '../../../src/compose/create-closure-ensurer';
import { pathExists } from '../../../src/store/local-dir-check';
import { SpawnNixRunner } from '../../../src/store/nix-command';
import {
  absentStorePath,
  buildPaths,
  closureOf,
  makeBinaryCache,
  makeChrootStore,
  nixAvailable,
  run,
  validIn,
} from '../../support/nix-fixtures';
import { testLogger } from '../../support/test-logger';
import { RecordingRunner } from './recording-runner';
import { typed, type TextOverrides } from '../../support/config-values';

const HAVE_NIX = nixAvailable();
const HAVE_SSH = spawnSync('ssh', ['-V'], { stdio: 'ignore' }).status === 0;
const signal = () => new AbortController().signal;

let dir: string;
let P: Record<string, string>;
let n = 0;

async function freshStore(): Promise<string> {
  return makeChrootStore(join(dir, `shared-${n++}`));
}

function setup(config: TextOverrides, deps: Partial<ClosureEnsurerDeps> = {}, runnerEnv?: NodeJS.ProcessEnv) {
  const runner = new RecordingRunner(new SpawnNixRunner({ timeoutMs: 20_000, env: runnerEnv }));
  const ensurer = createClosureEnsurer(
    { ...DEFAULTS, requireSigs: false, ...typed({ substituters: ['local'], ...config }) },
    { logger: testLogger(), runner, retryBaseDelayMs: 10, ...deps },
  );
  return { runner, ensurer };
}

async function rejection(p: Promise<unknown>): Promise<ProxyError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProxyError);
  return err as ProxyError;
}

describe.skipIf(!HAVE_NIX)('closure ensurer on real Nix', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'store-it-'));
    P = await buildPaths([
      { name: 'libc', files: { 'lib/libc.so': 'libc' } },
      {
        name: 'binutils',
        deps: ['libc'],
        files: { 'bin/ld': '#!/bin/sh\n# uses @dep:libc@\n' },
        executable: ['bin/ld'],
      },
      {
        name: 'cc',
        deps: ['binutils'],
        files: { 'bin/cc': '#!/bin/sh\nexec @dep:binutils@/bin/ld "$@"\n' },
        executable: ['bin/cc'],
      },
      { name: 'lone', files: { 'share/x': 'x' } },
      { name: 'zlib', files: { 'lib/libz.so': 'z' } },
      { name: 'curl', deps: ['zlib'], files: { 'bin/curl': 'curl' } },
      { name: 'jq', files: { 'bin/jq': 'jq' } },
    ]);
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('copies a missing closure from the host store; the closure is complete and visible in the chroot store', async () => {
    const shared = await freshStore();
    const { ensurer } = setup({ sharedStore: shared, visibleAt: join(shared, 'nix/store') });
    const report = await ensurer.ensure([P.cc!], signal());
    expect(report).toMatchObject({ requested: 1, missing: [P.cc], realised: [P.cc] });
    expect(await closureOf(shared, P.cc!)).toEqual(await closureOf('/', P.cc!));
    expect((await validIn(shared, [P.libc!, P.binutils!, P.cc!])).size).toBe(3);
    // Already valid now: checked, not copied again.
    const again = await setup({ sharedStore: shared }).ensurer.ensure([P.cc!, P.binutils!], signal());
    expect(again).toMatchObject({ missing: [], realised: [] });
  });

  it('copies from a file:// binary cache', async () => {
    const shared = await freshStore();
    const cache = await makeBinaryCache(join(dir, 'cache-curl'), [P.curl!]);
    const { ensurer, runner } = setup({ sharedStore: shared, substituters: [cache] });
    await ensurer.ensure([P.curl!], signal());
    expect(await closureOf(shared, P.curl!)).toEqual([P.curl!, P.zlib!].sort());
    expect(runner.copies().map((c) => c.args[2])).toEqual([cache]);
  });

  it('50 concurrent ensures of the same missing closure spawn exactly one copy', async () => {
    const shared = await freshStore();
    const { ensurer, runner } = setup({ sharedStore: shared });
    const reports = await Promise.all(Array.from({ length: 50 }, () => ensurer.ensure([P.cc!], signal())));
    expect(runner.copies()).toHaveLength(1);
    for (const r of reports) expect(r.missing.length === 0 || r.realised[0] === P.cc).toBe(true);
    expect(reports.some((r) => r.realised.length === 1 && r.joined === 0)).toBe(true);
    expect((await validIn(shared, [P.libc!, P.binutils!, P.cc!])).size).toBe(3);
  });

  it('a referenced .drv is copied as a file, never built: its builder never runs, its outputs stay absent', async () => {
    const shared = await freshStore();
    const marker = join(dir, `drv-builder-ran-${n}`);
    const expr = join(dir, `marker-${n}.nix`);
    // A builder that would leave a marker file on this host if Nix ever ran it.
    await writeFile(
      expr,
      `derivation { name = "marker-${Date.now()}-${n}"; system = builtins.currentSystem; builder = "/bin/sh"; ` +
        `args = [ "-c" "/bin/touch ${marker}; /bin/echo built > $out" ]; }`,
    );
    const drv = (await run('nix-instantiate', [expr])).trim();
    expect(drv).toMatch(/^\/nix\/store\/[0-9a-z]{32}-marker-.*\.drv$/);
    const output = (await run('nix-store', ['--query', '--outputs', drv])).trim();
    const { ensurer, runner } = setup({ sharedStore: shared });
    const report = await ensurer.ensure([drv], signal());
    expect(report).toMatchObject({ missing: [drv], realised: [drv] });
    expect(existsSync(marker)).toBe(false);
    expect(await validIn(shared, [drv, output])).toEqual(new Set([drv]));
    expect(await validIn('/', [output])).toEqual(new Set());
    for (const c of runner.copies())
      expect(c.args).toEqual(expect.arrayContaining(['--derivation', '--max-jobs', '0']));
    expect(runner.copies().length).toBeGreaterThan(0);
  });

  it('a path that exists nowhere gives FAILED_PRECONDITION naming it; the other paths are still realised', async () => {
    const shared = await freshStore();
    const cache = await makeBinaryCache(join(dir, 'cache-jq'), [P.jq!]);
    const absent = absentStorePath('never-built');
    const { ensurer } = setup({ sharedStore: shared, substituters: ['local', cache] });
    const err = await rejection(ensurer.ensure([P.lone!, absent, P.cc!], signal()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.reason).toBe('NIX_PATHS_UNAVAILABLE');
    expect(err.message).toContain(absent);
    expect(err.message).toContain(`${cache}: does not have it`);
    expect(err.violations.map((v) => [v.type, v.subject])).toEqual([['NIX_STORE_PATH', absent]]);
    expect(await validIn(shared, [P.lone!, P.cc!, absent])).toEqual(new Set([P.lone!, P.cc!]));
  });

  it('a closure incomplete in a binary cache fails only that path, which then comes from the next source', async () => {
    const shared = await freshStore();
    const cacheDir = join(dir, 'cache-broken');
    const cache = await makeBinaryCache(cacheDir, [P.curl!, P.lone!, P.jq!]);
    const zlibHash = P.zlib!.slice('/nix/store/'.length, '/nix/store/'.length + 32);
    await unlink(join(cacheDir, `${zlibHash}.narinfo`));

    const only = setup({ sharedStore: shared, substituters: [cache] });
    const err = await rejection(only.ensurer.ensure([P.lone!, P.curl!, P.jq!], signal()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.violations.map((v) => v.subject)).toEqual([P.curl!]);
    expect(err.message).toContain(`path '${P.zlib!}' is not valid`);
    expect(await validIn(shared, [P.lone!, P.jq!, P.curl!])).toEqual(new Set([P.lone!, P.jq!]));

    const withFallback = setup({ sharedStore: shared, substituters: [cache, 'local'] });
    await withFallback.ensurer.ensure([P.curl!], signal());
    expect(await closureOf(shared, P.curl!)).toEqual([P.curl!, P.zlib!].sort());
  });

  it('unsigned paths are refused when signatures are required', async () => {
    const shared = await freshStore();
    const { ensurer } = setup({ sharedStore: shared, requireSigs: true });
    const err = await rejection(ensurer.ensure([P.lone!], signal()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain('lacks a valid signature');
  });

  it('the copy retry recovers from one injected failure', async () => {
    const shared = await freshStore();
    const { ensurer, runner } = setup({ sharedStore: shared, limits: { ...DEFAULTS.limits, realiseRetries: 2 } });
    runner.failCopies(1, "error: not an absolute path: 'nix-archive-1'");
    const report = await ensurer.ensure([P.cc!], signal());
    expect(report.realised).toEqual([P.cc]);
    expect(runner.copies()).toHaveLength(2);
    expect(await closureOf(shared, P.cc!)).toEqual(await closureOf('/', P.cc!));
  });

  it('a daemon store with no socket gives UNAVAILABLE naming the store', async () => {
    const url = `unix://${join(dir, 'no-daemon', 'socket')}`;
    const { ensurer } = setup({ sharedStore: url });
    const err = await rejection(ensurer.ensure([P.lone!], signal()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.reason).toBe('SHARED_STORE_UNAVAILABLE');
    expect(err.message).toContain(url);
    expect(err.message).toContain('cannot connect to socket');
    expect(err.message).toContain('nix-daemon');
  });

  it.skipIf(!HAVE_SSH)(
    'an ssh-ng store nobody answers gives UNAVAILABLE naming the store (not a timeout)',
    async () => {
      const port = await closedPort();
      const { ensurer } = setup(
        { sharedStore: 'ssh-ng://127.0.0.1' },
        {},
        {
          ...process.env,
          NIX_SSHOPTS: `-p ${port} -o BatchMode=yes -o ConnectTimeout=5`,
        },
      );
      const err = await rejection(ensurer.ensure([P.lone!], signal()));
      expect(err.code).toBe(Code.UNAVAILABLE);
      expect(err.message).toContain('ssh-ng://127.0.0.1');
      expect(err.message).toMatch(/Connection refused|cannot open connection/);
    },
  );

  it('a chroot directory that does not exist is reported, not created', async () => {
    const missing = join(dir, 'not-mounted');
    const { ensurer, runner } = setup({ sharedStore: missing });
    const err = await rejection(ensurer.ensure([P.lone!], signal()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toContain('does not exist');
    expect(runner.calls).toHaveLength(0);
    expect(await pathExists(missing)).toBe(false);
  });

  it('the visibility waiter waits for a directory that appears later', async () => {
    const shared = await freshStore();
    const visibleAt = join(dir, 'executor-view');
    await mkdir(visibleAt);
    const target = join(visibleAt, P.jq!.slice('/nix/store/'.length));
    let misses = 0;
    let firstMiss!: () => void;
    const missed = new Promise<void>((r) => (firstMiss = r));
    const { ensurer } = setup(
      { sharedStore: shared, visibleAt, visibleTimeoutMs: 20_000 },
      {
        exists: async (p) => {
          const found = await pathExists(p);
          if (p === target && !found) {
            misses++;
            firstMiss();
          }
          return found;
        },
      },
    );
    let resolved = false;
    const call = ensurer.ensure([P.jq!], signal()).finally(() => (resolved = true));
    await missed;
    expect(resolved).toBe(false);
    await mkdir(target);
    const report = await call;
    expect(report.realised).toEqual([P.jq]);
    expect(misses).toBeGreaterThanOrEqual(1);
  });
});

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
