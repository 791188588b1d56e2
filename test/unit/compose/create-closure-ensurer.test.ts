import { describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { createClosureEnsurer, type OwnedClosureEnsurer } from '../../../src/compose/create-closure-ensurer';
import type { EnsureReport } from '../../../src/store/closure-ensurer';
import { testLogger } from '../../support/test-logger';
import { FakeNix, storePath } from '../store/fake-nix';
import { typed, type TextOverrides } from '../../support/config-values';

const SHARED = '/shared';
const CACHE = 'file:///cache';

function setup(overrides: TextOverrides = {}, limits: Partial<Config['limits']> = {}) {
  const nix = new FakeNix();
  const config: Config = {
    ...DEFAULTS,
    requireSigs: false,
    ...typed({ sharedStore: SHARED, substituters: ['local', CACHE], ...overrides }),
    limits: { ...DEFAULTS.limits, ...limits },
  };
  const ensurer = createClosureEnsurer(config, {
    logger: testLogger(),
    runner: nix,
    exists: async () => true,
    retryBaseDelayMs: 1,
  });
  return { nix, ensurer };
}

/** A toolchain closure: cc -> libc, cc -> binutils -> libc. */
function toolchain(nix: FakeNix, where: string, seed = 1) {
  const libc = storePath('libc', seed);
  const binutils = storePath('binutils', seed);
  const cc = storePath('cc', seed);
  nix.references.set(cc, [libc, binutils]);
  nix.references.set(binutils, [libc]);
  for (const p of [libc, binutils, cc]) nix.store(where).add(p);
  return { libc, binutils, cc, all: [libc, binutils, cc] };
}

async function rejection(p: Promise<unknown>): Promise<ProxyError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProxyError);
  return err as ProxyError;
}

function gate(nix: FakeNix): () => void {
  let open!: () => void;
  nix.gate = new Promise<void>((r) => (open = r));
  return () => {
    nix.gate = undefined;
    open();
  };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  expect(cond()).toBe(true);
}

const signal = () => new AbortController().signal;

describe('createClosureEnsurer (fake Nix)', () => {
  it('realises a missing closure from the first source that has it', async () => {
    const { nix, ensurer } = setup();
    const t = toolchain(nix, CACHE);
    const report = await ensurer.ensure([t.cc, t.cc], signal());
    expect(report).toMatchObject({ requested: 1, cachedValid: 0, missing: [t.cc], realised: [t.cc], joined: 0 });
    expect([...nix.store(SHARED)].sort()).toEqual([...t.all].sort());
    // 'local' was asked first and had nothing; only one copy, from the cache.
    expect(nix.checks('local')).toHaveLength(1);
    expect(nix.copies()).toHaveLength(1);
    expect(nix.copies()[0]!.args).toEqual([
      'copy',
      '--from',
      CACHE,
      '--to',
      SHARED,
      '--max-jobs',
      '0',
      '--builders',
      '',
      '--no-check-sigs',
      t.cc,
    ]);
  });

  it('50 concurrent ensures of one missing closure make exactly one copy', async () => {
    const { nix, ensurer } = setup();
    const t = toolchain(nix, 'local');
    const open = gate(nix);
    const calls = Array.from({ length: 50 }, () => ensurer.ensure([t.cc], signal()));
    // 8 checks at once (the bound), the other 42 callers merged into one check, plus the batch's own
    // re-check: 10 Nix processes, not one per caller. Then everyone waits on the one copy.
    await until(() => nix.checks(SHARED).length === 10 && nix.copies().length === 1);
    await new Promise((r) => setImmediate(r));
    open();
    const reports = await Promise.all(calls);
    expect(nix.copies()).toHaveLength(1);
    expect(reports.every((r) => r.realised.length === 1 && r.realised[0] === t.cc)).toBe(true);
    expect(reports.reduce((n, r) => n + r.joined, 0)).toBe(49);
    expect(nix.store(SHARED).has(t.libc)).toBe(true);
  });

  it('a cache hit skips the check; later calls spawn nothing', async () => {
    const { nix, ensurer } = setup();
    const t = toolchain(nix, 'local');
    await ensurer.ensure([t.cc], signal());
    const spawns = nix.calls.length;
    const report = await ensurer.ensure([t.cc], signal());
    expect(nix.calls.length).toBe(spawns);
    expect(report).toMatchObject({ requested: 1, cachedValid: 1, missing: [], realised: [] });
  });

  it('paths already valid are checked once and not copied', async () => {
    const { nix, ensurer } = setup();
    const t = toolchain(nix, SHARED);
    const report = await ensurer.ensure(t.all, signal());
    expect(report).toMatchObject({ requested: 3, missing: [], realised: [] });
    expect(nix.calls).toHaveLength(1);
  });

  it('never caches a path as invalid: it is looked at again and realised once a source has it', async () => {
    const { nix, ensurer } = setup();
    const p = storePath('late');
    const err = await rejection(ensurer.ensure([p], signal()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    nix.store(CACHE).add(p);
    const report = await ensurer.ensure([p], signal());
    expect(report.realised).toEqual([p]);
  });

  it('a path no source has: FAILED_PRECONDITION naming it and each source, others in the call realised', async () => {
    const { nix, ensurer } = setup();
    const t = toolchain(nix, 'local');
    const absent = storePath('absent');
    const err = await rejection(ensurer.ensure([t.cc, absent], signal()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.reason).toBe('NIX_PATHS_UNAVAILABLE');
    expect(err.message).toContain(absent);
    expect(err.message).toContain('local: does not have it');
    expect(err.message).toContain(`${CACHE}: does not have it`);
    expect(err.violations).toEqual([
      { type: 'NIX_STORE_PATH', subject: absent, description: expect.stringContaining('local') },
    ]);
    expect(nix.store(SHARED).has(t.cc)).toBe(true);
  });

  it('a closure incomplete in one source is isolated: the other paths of the batch are copied, the bad one comes from the next source', async () => {
    const { nix, ensurer } = setup();
    const good = Array.from({ length: 7 }, (_, i) => storePath(`good${i}`));
    const broken = storePath('broken');
    const dep = storePath('dep');
    nix.references.set(broken, [dep]);
    for (const p of [...good, broken]) nix.store('local').add(p);
    const err = await rejection(ensurer.ensure([...good, broken], signal()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.violations.map((v) => v.subject)).toEqual([broken]);
    expect(err.message).toContain(`path '${dep}' is not valid`);
    for (const p of good) expect(nix.store(SHARED).has(p)).toBe(true);
    // Bisection, not one copy per path.
    expect(nix.copies().length).toBeLessThanOrEqual(1 + 2 * 3);

    nix.store(CACHE).add(broken);
    nix.store(CACHE).add(dep);
    await ensurer.ensure([broken], signal());
    expect(nix.store(SHARED).has(dep)).toBe(true);
  });

  it('a failure reaches every waiter and is forgotten: the next call tries again', async () => {
    const { nix, ensurer } = setup({}, { realiseRetries: 0 });
    const t = toolchain(nix, 'local');
    const open = gate(nix);
    nix.copyFailures.push("error: not an absolute path: 'nix-archive-1'");
    const calls = Array.from({ length: 10 }, () => rejection(ensurer.ensure([t.cc], signal())));
    // 8 checks at once, the other 2 callers merged into one, plus the batch's re-check.
    await until(() => nix.copies().length === 1 && nix.checks(SHARED).length === 10);
    open();
    const errors = await Promise.all(calls);
    expect(errors.every((e) => e.code === Code.UNAVAILABLE && e.message.includes('nix-archive-1'))).toBe(true);
    expect(nix.copies()).toHaveLength(1);
    const report = await ensurer.ensure([t.cc], signal());
    expect(report.realised).toEqual([t.cc]);
    expect(nix.copies()).toHaveLength(2);
  });

  it('a failed write is retried (limits.realiseRetries) and recovers', async () => {
    const { nix, ensurer } = setup({}, { realiseRetries: 2 });
    const t = toolchain(nix, 'local');
    nix.copyFailures.push("error: not an absolute path: 'nix-archive-1'");
    const report = await ensurer.ensure([t.cc], signal());
    expect(report.realised).toEqual([t.cc]);
    expect(nix.copies()).toHaveLength(2);
  });

  it('gives up after the configured retries with UNAVAILABLE', async () => {
    const { nix, ensurer } = setup({}, { realiseRetries: 2 });
    const t = toolchain(nix, 'local');
    nix.copyFailures.push('error: boom', 'error: boom', 'error: boom');
    const err = await rejection(ensurer.ensure([t.cc], signal()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(nix.copies()).toHaveLength(3);
  });

  it('paths asked while all realisation slots are busy go into one next batch', async () => {
    const { nix, ensurer } = setup({}, { concurrentRealisations: 1 });
    const [a, b, c] = ['a', 'b', 'c'].map((n) => storePath(n));
    for (const p of [a!, b!, c!]) nix.store('local').add(p);
    const open = gate(nix);
    const first = ensurer.ensure([a!], signal());
    await until(() => nix.copies().length === 1);
    const second = ensurer.ensure([b!], signal());
    const third = ensurer.ensure([c!, a!], signal());
    await until(() => nix.checks(SHARED).length === 4);
    await new Promise((r) => setImmediate(r));
    open();
    const reports: EnsureReport[] = await Promise.all([first, second, third]);
    expect(nix.copies()).toHaveLength(2);
    expect(nix.copies()[1]!.args.slice(-2).sort()).toEqual([b!, c!].sort());
    expect(reports[2]!.joined).toBe(1);
  });

  it('a caller that aborts gets CANCELLED while the copy goes on for the others', async () => {
    const { nix, ensurer } = setup();
    const t = toolchain(nix, 'local');
    const open = gate(nix);
    const quitter = new AbortController();
    const gone = rejection(ensurer.ensure([t.cc], quitter.signal));
    const stays = ensurer.ensure([t.cc], signal());
    await until(() => nix.copies().length === 1 && nix.checks(SHARED).length === 3);
    quitter.abort();
    expect((await gone).code).toBe(Code.CANCELLED);
    open();
    expect((await stays).realised).toEqual([t.cc]);
  });

  it('an unreachable shared store gives UNAVAILABLE naming it', async () => {
    const { nix, ensurer } = setup();
    nix.unreachable.add(SHARED);
    const err = await rejection(ensurer.ensure([storePath('x')], signal()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.reason).toBe('SHARED_STORE_UNAVAILABLE');
    expect(err.message).toContain(SHARED);
    expect(err.message).toContain('cannot open connection');
  });

  it('an unreachable substituter is skipped; the path comes from the next one', async () => {
    const { nix, ensurer } = setup();
    nix.unreachable.add('local');
    const t = toolchain(nix, CACHE);
    expect((await ensurer.ensure([t.cc], signal())).realised).toEqual([t.cc]);
  });

  it('a path only an unreachable substituter might have gives UNAVAILABLE, not FAILED_PRECONDITION', async () => {
    const { nix, ensurer } = setup();
    nix.unreachable.add('local');
    const err = await rejection(ensurer.ensure([storePath('nowhere')], signal()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.reason).toBe('NIX_SOURCES_UNAVAILABLE');
    expect(err.message).toContain('local: could not be asked');
  });

  it('with no substituters, missing paths are FAILED_PRECONDITION saying so', async () => {
    const { ensurer } = setup({ substituters: [] });
    const err = await rejection(ensurer.ensure([storePath('x')], signal()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain('no substituters are configured');
  });

  it('rejects malformed paths before running anything', async () => {
    const { nix, ensurer } = setup();
    const err = await rejection(ensurer.ensure(['/nix/store/short-x', `${storePath('a')}/bin/cc`], signal()));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(nix.calls).toHaveLength(0);
  });

  it('passes trusted public keys when signatures are required', async () => {
    const { nix, ensurer } = setup({ requireSigs: true, trustedPublicKeys: ['cache-1:AAAA', 'cache-2:BBBB='] });
    const t = toolchain(nix, 'local');
    await ensurer.ensure([t.cc], signal());
    expect(nix.copies()[0]!.args).toEqual([
      'copy',
      '--from',
      'local',
      '--to',
      SHARED,
      '--max-jobs',
      '0',
      '--builders',
      '',
      '--option',
      'trusted-public-keys',
      'cache-1:AAAA cache-2:BBBB=',
      t.cc,
    ]);
  });
});

describe('visibility waiting (fake Nix, fake mount)', () => {
  function visibleSetup(timeoutMs: number) {
    const nix = new FakeNix();
    const visible = new Set<string>();
    const probes: string[] = [];
    let onProbe: (() => void) | undefined;
    const ensurer: OwnedClosureEnsurer = createClosureEnsurer(
      {
        ...DEFAULTS,
        ...typed({ sharedStore: SHARED, substituters: ['local'] }),
        requireSigs: false,
        visibleAt: '/mnt/nix/store/',
        visibleTimeoutMs: timeoutMs,
      },
      {
        logger: testLogger(),
        runner: nix,
        exists: async (p) => {
          if (!p.startsWith('/mnt/')) return true;
          probes.push(p);
          onProbe?.();
          return visible.has(p);
        },
      },
    );
    return { nix, visible, probes, ensurer, setOnProbe: (f: () => void) => (onProbe = f) };
  }

  it('resolves only once every path appears under visibleAt', async () => {
    const { nix, visible, probes, ensurer, setOnProbe } = visibleSetup(60_000);
    const p = storePath('tool');
    nix.store('local').add(p);
    const target = `/mnt/nix/store/${p.slice('/nix/store/'.length)}`;
    let resolved = false;
    const call = ensurer.ensure([p], signal()).then((r) => {
      resolved = true;
      return r;
    });
    await new Promise<void>((r) => setOnProbe(r));
    await until(() => probes.length >= 2);
    expect(resolved).toBe(false);
    visible.add(target);
    const report = await call;
    expect(report.realised).toEqual([p]);
    expect(probes.every((x) => x === target)).toBe(true);
    // Cached afterwards: not probed again.
    const n = probes.length;
    await ensurer.ensure([p], signal());
    expect(probes.length).toBe(n);
  });

  it('times out with DEADLINE_EXCEEDED naming the paths that never appeared', async () => {
    const { nix, ensurer } = visibleSetup(50);
    const p = storePath('never');
    nix.store(SHARED).add(p);
    const err = await rejection(ensurer.ensure([p], signal()));
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.reason).toBe('NIX_PATHS_NOT_VISIBLE');
    expect(err.message).toContain(p);
  });
});
