import { describe, expect, it } from 'vitest';
import { MeteredClosureEnsurer } from '../../../src/metrics/metered-closure-ensurer';
import { MeteredRealiser } from '../../../src/metrics/metered-realiser';
import { MeteredSharedStore } from '../../../src/metrics/metered-shared-store';
import { NO_METRICS, type Metrics } from '../../../src/metrics/metrics';
import type { ClosureEnsurer, EnsureReport } from '../../../src/store/closure-ensurer';
import type { PathOutcome, PathSource, Realiser, SharedStore } from '../../../src/store/shared-store';

/** A Metrics that records every call, by method name. */
function recorder(): { metrics: Metrics; calls: Array<[string, unknown[]]> } {
  const calls: Array<[string, unknown[]]> = [];
  const metrics = Object.fromEntries(
    Object.keys(NO_METRICS).map((name) => [name, (...args: unknown[]) => void calls.push([name, args])]),
  ) as unknown as Metrics;
  return { metrics, calls };
}

/** A clock that advances by `step` ms per reading. */
const clock = (step: number) => {
  let t = 0;
  return () => (t += step);
};

const P = (n: number) =>
  `/nix/store/${String(n)
    .padStart(32, 'a')
    .replace(/[eotu]/g, 'a')}-p${n}`;
const source: PathSource = { url: 'file:///cache', provides: async (p) => new Set(p) };
const signal = new AbortController().signal;

describe('MeteredSharedStore', () => {
  const store = (behaviour: Partial<SharedStore>): SharedStore => ({
    url: 'ssh-ng://nix-store',
    findInvalid: async () => [],
    copyFrom: async () => {},
    ...behaviour,
  });

  it.each([
    ['all valid', async () => [], { paths: 3, invalid: 0, ok: true }],
    ['two invalid', async () => [P(1), P(2)], { paths: 3, invalid: 2, ok: true }],
  ])('reports a validity query that answered: %s', async (_what, findInvalid, expected) => {
    const { metrics, calls } = recorder();
    const m = new MeteredSharedStore(store({ findInvalid }), metrics, clock(10));
    expect(await m.findInvalid([P(1), P(2), P(3)], signal)).toEqual(await findInvalid());
    expect(calls).toEqual([['validityChecked', [{ ...expected, durationMs: 10 }]]]);
  });

  it('reports a failed validity query and passes the error on', async () => {
    const { metrics, calls } = recorder();
    const boom = new Error('unreachable');
    const m = new MeteredSharedStore(store({ findInvalid: async () => Promise.reject(boom) }), metrics, clock(5));
    await expect(m.findInvalid([P(1)], signal)).rejects.toBe(boom);
    expect(calls).toEqual([['validityChecked', [{ paths: 1, invalid: 0, durationMs: 5, ok: false }]]]);
  });

  it('brackets a copy with started and finished, counting distinct paths on success', async () => {
    const { metrics, calls } = recorder();
    const seen: string[][] = [];
    const m = new MeteredSharedStore(store({ copyFrom: async (_s, p) => void seen.push([...p]) }), metrics, clock(7));
    await m.copyFrom(source, [P(1), P(2), P(1)], signal);
    expect(seen).toEqual([[P(1), P(2), P(1)]]);
    expect(calls).toEqual([
      ['realisationStarted', []],
      ['realisationFinished', [{ ok: true, durationMs: 7, paths: 2, bytes: 0 }]],
    ]);
  });

  it('reports a failed copy with no paths and passes the error on', async () => {
    const { metrics, calls } = recorder();
    const boom = new Error('copy failed');
    const m = new MeteredSharedStore(store({ copyFrom: async () => Promise.reject(boom) }), metrics, clock(7));
    await expect(m.copyFrom(source, [P(1)], signal)).rejects.toBe(boom);
    expect(calls.map(([n, a]) => [n, a])).toEqual([
      ['realisationStarted', []],
      ['realisationFinished', [{ ok: false, durationMs: 7, paths: 0, bytes: 0 }]],
    ]);
  });

  it('keeps the url of the store it wraps', () => {
    expect(new MeteredSharedStore(store({}), NO_METRICS).url).toBe('ssh-ng://nix-store');
  });
});

describe('MeteredRealiser', () => {
  const realiser = (outcomes: Array<[string, PathOutcome]>): Realiser => ({ realise: async () => new Map(outcomes) });

  it.each([
    ['none joined', [[P(1), { ok: true, joined: false }]], []],
    [
      'two joined, one own',
      [
        [P(1), { ok: true, joined: true }],
        [P(2), { ok: true, joined: true }],
        [P(3), { ok: true, joined: false }],
      ],
      [['singleFlightJoined', [2]]],
    ],
    [
      'a failed path is no join',
      [
        [P(1), { ok: false, transient: true, why: 'x' }],
        [P(2), { ok: true, joined: true }],
      ],
      [['singleFlightJoined', [1]]],
    ],
  ] as Array<[string, Array<[string, PathOutcome]>, Array<[string, unknown[]]>]>)(
    'counts joins: %s',
    async (_what, outcomes, expected) => {
      const { metrics, calls } = recorder();
      const result = await new MeteredRealiser(realiser(outcomes), metrics).realise(
        outcomes.map(([p]) => p),
        signal,
      );
      expect([...result]).toEqual(outcomes);
      expect(calls).toEqual(expected);
    },
  );
});

describe('MeteredClosureEnsurer', () => {
  const report = (requested: number, cachedValid: number): EnsureReport => ({
    requested,
    cachedValid,
    missing: [],
    realised: [],
    joined: 0,
    checkMs: 0,
    realiseMs: 0,
    visibleWaitMs: 0,
  });

  it('reports cache hits and misses of each ensure', async () => {
    const { metrics, calls } = recorder();
    const inner: ClosureEnsurer = { ensure: async () => report(10, 7) };
    expect(await new MeteredClosureEnsurer(inner, metrics).ensure([P(1)], signal)).toEqual(report(10, 7));
    expect(calls).toEqual([['cacheLookups', ['validity', 7, 3]]]);
  });

  it('reports nothing for a failed ensure and passes the error on', async () => {
    const { metrics, calls } = recorder();
    const boom = new Error('unavailable');
    await expect(
      new MeteredClosureEnsurer({ ensure: async () => Promise.reject(boom) }, metrics).ensure([P(1)], signal),
    ).rejects.toBe(boom);
    expect(calls).toEqual([]);
  });
});
