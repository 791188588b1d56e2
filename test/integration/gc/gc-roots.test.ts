/**
 * GC roots against real Nix: chroot shared stores under a temp dir, the host
 * store as the `local` substituter, `nix-store --gc` on the chroot store as
 * the store host's garbage collector. Paths are built once per file:
 *
 *   cc -> binutils -> libc (100 kB)      py -> libc      jq      junk (never used)
 */
import { spawn } from 'node:child_process';
import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { createGcRoots, type OwnedGcRoots } from '../../../src/gc/create-gc-roots';
import { GcRoots } from '../../../src/gc/gc-roots';
import { formatPruneReport } from '../../../src/gc/prune-report-format';
import { nodeRootFs, type RootFs } from '../../../src/gc/root-fs';
import { runPrune } from '../../../src/gc/run-prune';
import { NO_METRICS } from '../../../src/metrics/metrics';
import type { ClosureEnsurer } from '../../../src/store/closure-ensurer';
import { createClosureEnsurer, type OwnedClosureEnsurer } from '../../../src/compose/create-closure-ensurer';
import { SpawnNixRunner, type NixInvocation, type NixRunner } from '../../../src/store/nix-command';
import {
  buildPaths,
  closureOf,
  FIXTURE_NIX_CONFIG,
  makeChrootStore,
  nixAvailable,
  run,
  validIn,
} from '../../support/nix-fixtures';
import { testLogger } from '../../support/test-logger';
import { typed, type TextOverrides } from '../../support/config-values';

const HAVE_NIX = nixAvailable();
const DAY = 86_400_000;
const signal = () => new AbortController().signal;

let dir: string;
let P: Record<'libc' | 'binutils' | 'cc' | 'py' | 'jq' | 'junk', string>;
let n = 0;
const opened: Array<{ close(): unknown }> = [];

function configFor(store: string, over: TextOverrides = {}): Config {
  return {
    ...DEFAULTS,
    ...typed({ sharedStore: store, substituters: ['local'], ...over }),
    requireSigs: over.requireSigs ?? false,
    rootSweepIntervalMs: over.rootSweepIntervalMs ?? 0,
  };
}

const rootsDirOf = (store: string) => join(store, 'nix/var/nix/gcroots/nix-reapi-proxy');
const rootFile = (store: string, path: string) => join(rootsDirOf(store), path.slice('/nix/store/'.length));

async function rootNames(store: string): Promise<string[]> {
  return (await readdir(rootsDirOf(store))).filter((e) => !e.startsWith('.')).sort();
}

/** A proxy's store side: GC roots from config and an ensurer that roots what it ensures. */
function proxy(store: string, opts: { now?: () => number; config?: TextOverrides } = {}) {
  const config = configFor(store, opts.config);
  const roots = createGcRoots(config, { logger: testLogger(), now: opts.now });
  const ensurer = createClosureEnsurer(config, { logger: testLogger(), leases: roots, retryBaseDelayMs: 10 });
  opened.push(roots, { close: () => ensurer.close() });
  return { roots, ensurer, config };
}

/** An action: hold its paths, ensure them, and check the closure really is there while held. */
async function action(
  roots: { acquire: OwnedGcRoots['acquire'] },
  ensurer: ClosureEnsurer,
  store: string,
  path: string,
) {
  const lease = await roots.acquire([path]);
  try {
    const report = await ensurer.ensure([path], signal());
    const closure = await closureOf(store, path);
    const valid = await validIn(store, closure);
    return { realised: report.realised.length, closure, allValid: valid.size === closure.length && closure.length > 0 };
  } finally {
    lease.release();
  }
}

async function gc(store: string): Promise<void> {
  await run('nix-store', ['--store', store, '--gc']);
}

/** Resolves true once the GC's socket accepts connections, false if the GC exits first. */
async function gcAccepting(socketPath: string, exited: Promise<unknown>): Promise<boolean> {
  let gone = false;
  void exited.then(() => (gone = true));
  while (!gone) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect({ path: socketPath });
      c.on('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setImmediate(r));
  }
  return false;
}

async function copyUnrooted(store: string, paths: string[]): Promise<void> {
  await run('nix', ['copy', '--no-check-sigs', '--to', store, ...paths]);
}

describe.skipIf(!HAVE_NIX)('GC roots on real Nix', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gc-it-'));
    P = (await buildPaths([
      { name: 'libc', files: { 'lib/libc.so': 'x'.repeat(100_000) } },
      { name: 'binutils', deps: ['libc'], files: { 'bin/ld': 'ld @dep:libc@' } },
      { name: 'cc', deps: ['binutils', 'libc'], files: { 'bin/cc': 'cc' } },
      { name: 'py', deps: ['libc'], files: { 'bin/py': 'py' } },
      { name: 'jq', files: { 'bin/jq': 'jq' } },
      { name: 'junk', files: { x: 'junk' } },
    ])) as typeof P;
  });

  afterAll(async () => {
    for (const o of opened.reverse()) await o.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const freshStore = () => makeChrootStore(join(dir, `shared-${n++}`));

  it('roots every ensured path, copied or already valid; the store GC keeps their closures and deletes the rest', async () => {
    const store = await freshStore();
    await copyUnrooted(store, [P.py, P.junk]); // valid before any action: py only through nobody's root
    const { roots, ensurer } = proxy(store);
    const cc = await action(roots, ensurer, store, P.cc);
    expect(cc).toMatchObject({ realised: 1, allValid: true });
    const py = await action(roots, ensurer, store, P.py);
    expect(py).toMatchObject({ realised: 0, allValid: true });
    expect(await rootNames(store)).toEqual([P.cc, P.py].map((p) => p.slice(11)).sort());
    expect((await lstat(rootFile(store, P.cc))).isSymbolicLink()).toBe(true);

    await gc(store);
    const kept = [...cc.closure, ...py.closure];
    expect(await validIn(store, kept)).toEqual(new Set(kept));
    expect(await validIn(store, [P.junk])).toEqual(new Set());
  });

  it('prune --unused-for 0s drops the roots (a dry run first changes nothing) and the GC then deletes the closures', async () => {
    const store = await freshStore();
    const { roots, ensurer, config } = proxy(store);
    await action(roots, ensurer, store, P.cc);
    await action(roots, ensurer, store, P.jq);
    const closures = [...(await closureOf(store, P.cc)), P.jq];
    await roots.close(); // the proxy stops: its lease goes

    const before = await rootNames(store);
    const dry = await runPrune({ config, unusedForMs: 0, dryRun: true, gc: true }, testLogger());
    expect(dry.dropped.map((d) => d.path).sort()).toEqual([P.cc, P.jq].sort());
    expect(dry.gc).toBeUndefined();
    expect(await rootNames(store)).toEqual(before);
    expect(await validIn(store, closures)).toEqual(new Set(closures));

    const real = await runPrune({ config, unusedForMs: 0, dryRun: false, gc: true }, testLogger());
    expect(real.dropped.map((d) => d.path).sort()).toEqual([P.cc, P.jq].sort());
    expect(await rootNames(store)).toEqual([]);
    expect(await validIn(store, closures)).toEqual(new Set());
    expect(real.rootedBytesBefore).toBeGreaterThan(100_000);
    expect(real.rootedBytesAfter).toBe(0);
    expect(real.gc?.pathsDeleted).toBeGreaterThanOrEqual(closures.length);
    expect(real.gc?.bytesFreed).toBeGreaterThan(0);
    const text = formatPruneReport(real, Date.now());
    expect(text).toContain('dropped 2 of 2 roots (unused: 2)');
    expect(text).toMatch(/garbage collection: \d+ store paths deleted/);
  });

  it('keeps usage history across a restart: a new process drops what was used long ago, not what was used lately', async () => {
    const store = await freshStore();
    const T0 = Date.now();
    let clock = T0 - 20 * DAY;
    const first = proxy(store, { now: () => clock });
    await action(first.roots, first.ensurer, store, P.cc);
    clock = T0 - 1 * DAY;
    await action(first.roots, first.ensurer, store, P.jq);
    await first.roots.close();
    first.ensurer.close();

    const second = proxy(store, { now: () => T0, config: { rootRetentionMs: 14 * DAY } });
    const outcome = await second.roots.sweep();
    expect(outcome?.ok).toBe(true);
    expect(outcome?.report?.dropped.map((d) => d.path)).toEqual([P.cc]);
    expect(await rootNames(store)).toEqual([P.jq.slice(11)]);
    // Times go through lutimes as seconds and nanoseconds: equal to the millisecond.
    expect(Math.round((await lstat(rootFile(store, P.jq))).mtimeMs)).toBe(T0 - 1 * DAY);
  });

  it('with a budget smaller than all closures, drops least recently used roots first; shared dependencies of kept roots survive the GC', async () => {
    const store = await freshStore();
    const T0 = Date.now();
    let clock = T0 - 3 * 3_600_000;
    const p = proxy(store, { now: () => clock });
    for (const path of [P.cc, P.py, P.jq]) {
      await action(p.roots, p.ensurer, store, path);
      clock += 3_600_000;
    }
    await p.roots.close();
    const sizes = JSON.parse(await run('nix', ['path-info', '--store', store, '--json', '-r', P.py, P.jq])) as Array<{
      narSize: number;
    }>;
    const budget = sizes.reduce((s, x) => s + x.narSize, 0); // exactly py + libc + jq: cc's closure cannot fit too

    const report = await runPrune(
      { config: { ...p.config, rootedSizeBudgetBytes: budget }, unusedForMs: 14 * DAY, dryRun: false, gc: true },
      testLogger(),
    );
    expect(report.dropped.map((d) => [d.path, d.reason])).toEqual([[P.cc, 'over-budget']]);
    expect(report.rootedBytesAfter).toBe(budget);
    expect(report.rootedBytesBefore).toBeGreaterThan(budget);
    expect(await validIn(store, [P.cc, P.binutils])).toEqual(new Set());
    expect(await validIn(store, [P.libc, P.py, P.jq])).toEqual(new Set([P.libc, P.py, P.jq]));
  });

  it("another replica's live lease protects its paths from a prune; once that replica stops refreshing, they go", async () => {
    const store = await freshStore();
    const a = proxy(store);
    const held = await a.roots.acquire([P.cc]);
    await a.ensurer.ensure([P.cc], signal());
    const config = configFor(store);
    const now = await runPrune({ config, unusedForMs: 0, dryRun: false, gc: true }, testLogger());
    expect(now.dropped).toEqual([]);
    expect(now.keptForLeases).toBe(1);
    expect(await validIn(store, [P.cc])).toEqual(new Set([P.cc]));
    // Seen from ten minutes later, replica a has not refreshed its lease: it counts as crashed.
    const later = await runPrune(
      { config, unusedForMs: 0, dryRun: false, gc: false, now: () => Date.now() + 600_000 },
      testLogger(),
    );
    expect(later.dropped.map((d) => d.path)).toEqual([P.cc]);
    expect(later.leases).toEqual({ live: 0, stale: 1 });
    held.release();
  });

  it('a path valid but unrooted when a GC started, first used while that GC runs, survives it', async () => {
    const store = await freshStore();
    // Enough dead paths that the GC is still deleting when the action arrives.
    const dead = Object.values(await buildPaths(Array.from({ length: 600 }, (_, i) => ({ name: `dead${i}` }))));
    await copyUnrooted(store, [...dead, P.py]);
    const { roots, ensurer } = proxy(store);
    const collector = spawn('nix-store', ['--store', store, '--gc'], {
      env: { ...process.env, NIX_CONFIG: FIXTURE_NIX_CONFIG },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((r) => collector.on('exit', (code) => r(code)));
    opened.push({ close: () => collector.exitCode === null && collector.kill('SIGKILL') });
    expect(await gcAccepting(join(store, 'nix/var/nix/gc-socket/socket'), exited)).toBe(true);

    const lease = await roots.acquire([P.py]);
    await ensurer.ensure([P.py], signal());
    expect(await exited).toBe(0);
    const closure = await closureOf(store, P.py);
    expect(await validIn(store, closure)).toEqual(new Set(closure));
    expect(await validIn(store, dead)).toEqual(new Set()); // the GC did run over everything else
    lease.release();
  });

  describe('a prune racing actions that ensure the same paths', () => {
    /**
     * Held paths are forgotten as soon as their action ends (no linger) and the
     * validity cache is off, so every prune may really drop the root and every
     * GC really delete the closure: the action must still never run without it.
     */
    async function racingSetup(pruneFs: RootFs = nodeRootFs) {
      const store = await freshStore();
      const config = configFor(store, { cache: { ...DEFAULTS.cache, validityTtlMs: 1 } });
      const roots = new GcRoots({
        dir: rootsDirOf(store),
        mustExist: store,
        replica: `racer-${n}`,
        host: 'test',
        pid: process.pid,
        fs: nodeRootFs,
        now: Date.now,
        touchIntervalMs: 3_600_000,
        lingerMs: 0,
        leaseRefreshMs: 60_000,
        maxHeldPaths: 1000,
        logger: testLogger(),
        metrics: NO_METRICS,
        gcSocket: join(store, 'nix/var/nix/gc-socket/socket'),
      });
      opened.push(roots);
      const ensurer: OwnedClosureEnsurer = createClosureEnsurer(config, {
        logger: testLogger(),
        leases: roots,
        retryBaseDelayMs: 10,
      });
      opened.push({ close: () => ensurer.close() });
      const prune = (runner?: NixRunner) =>
        runPrune({ config, unusedForMs: 0, dryRun: false, gc: true, fs: pruneFs, runner }, testLogger());
      return { store, roots, ensurer, prune };
    }

    /** A runner that calls `hook` (once) before the first `nix path-info`, i.e. after the prune listed roots and leases. */
    function hookedRunner(hook: () => Promise<void>): NixRunner {
      const inner = new SpawnNixRunner({ timeoutMs: 60_000 });
      let fired = false;
      return {
        async run(inv: NixInvocation, s: AbortSignal) {
          if (!fired && inv.args[0] === 'path-info') {
            fired = true;
            await hook();
          }
          return inner.run(inv, s);
        },
      };
    }

    it('an action that takes the path while the prune plans keeps root and closure', async () => {
      const { store, roots, ensurer, prune } = await racingSetup();
      await action(roots, ensurer, store, P.cc);
      await roots.refresh(); // cc is no longer held: the prune plans to drop it
      let lease: { release(): void } | undefined;
      const report = await prune(hookedRunner(async () => void (lease = await roots.acquire([P.cc]))));
      expect(report.spared).toEqual([{ path: P.cc, why: 'leased' }]);
      const ensured = await ensurer.ensure([P.cc], signal());
      expect(ensured.realised).toEqual([]);
      const closure = await closureOf(store, P.cc);
      expect(await validIn(store, closure)).toEqual(new Set(closure));
      lease!.release();
    });

    it('an action that takes the path just after the prune unlinked its root gets the root back before the GC', async () => {
      let roots!: GcRoots;
      let lease: { release(): void } | undefined;
      const ccFile = () => P.cc.slice(11);
      const racingFs: RootFs = {
        ...nodeRootFs,
        unlink: async (path) => {
          await nodeRootFs.unlink(path);
          if (path.endsWith(ccFile()) && !lease) lease = await roots.acquire([P.cc]);
        },
      };
      const setup = await racingSetup(racingFs);
      roots = setup.roots;
      await action(roots, setup.ensurer, setup.store, P.cc);
      await roots.refresh();
      const report = await setup.prune();
      expect(report.restored).toEqual([P.cc]);
      expect((await lstat(rootFile(setup.store, P.cc))).isSymbolicLink()).toBe(true);
      const closure = await closureOf(setup.store, P.cc);
      expect(await validIn(setup.store, closure)).toEqual(new Set(closure));
      lease!.release();
    });

    it('actions starting at every phase of a prune with GC race it to the end: every action sees its whole closure', async () => {
      type Phase = 'listing' | 'sizes' | 'unlinking' | 'collecting' | 'after';
      const phases: Phase[] = ['listing', 'sizes', 'unlinking', 'collecting', 'after', 'collecting', 'unlinking'];
      let fire: (p: Phase) => void = () => {};
      const phasedFs: RootFs = {
        ...nodeRootFs,
        readdir: (d) => {
          fire('listing');
          return nodeRootFs.readdir(d);
        },
        unlink: async (path) => {
          await nodeRootFs.unlink(path);
          fire('unlinking');
        },
      };
      const { store, roots, ensurer, prune } = await racingSetup(phasedFs);
      const inner = new SpawnNixRunner({ timeoutMs: 60_000 });
      const phasedRunner: NixRunner = {
        run: (inv, s) => {
          if (inv.args[0] === 'path-info') fire('sizes');
          if (inv.args.includes('--gc')) fire('collecting');
          return inner.run(inv, s);
        },
      };
      let collected = 0;
      let recopied = 0;
      for (const phase of phases) {
        await roots.refresh(); // nothing held: the prune plans to drop both roots
        let started: Promise<Array<Awaited<ReturnType<typeof action>>>> | undefined;
        const start = () =>
          (started ??= Promise.all([action(roots, ensurer, store, P.cc), action(roots, ensurer, store, P.py)]));
        fire = (p) => {
          if (p === phase) start();
        };
        const report = await prune(phasedRunner);
        fire = () => {};
        const results = await start();
        for (const r of results) expect(r.allValid).toBe(true);
        collected += report.gc?.pathsDeleted ?? 0;
        recopied += results.reduce((n, r) => n + r.realised, 0);
      }
      // The race was real: GCs deleted closures that later actions had to copy again.
      expect(collected).toBeGreaterThan(0);
      expect(recopied).toBeGreaterThan(2);
    });
  });
});
