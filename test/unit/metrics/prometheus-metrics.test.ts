import { describe, expect, it } from 'vitest';
import { NO_METRICS, type Metrics } from '../../../src/metrics/metrics';
import { PrometheusMetrics } from '../../../src/metrics/prometheus-metrics';
import { Code } from '../../../src/reapi/grpc-status';
import { parseExposition, valueOf, type Sample } from '../../integration/metrics/prometheus-text';

const P = 'nix_reapi_proxy_';

async function samplesOf(m: PrometheusMetrics): Promise<Sample[]> {
  const { contentType, body } = await m.exposition();
  expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(body);
}

const fresh = () => new PrometheusMetrics({ version: '1.2.3' });

describe('PrometheusMetrics', () => {
  it('says which version runs', async () => {
    expect(valueOf(await samplesOf(fresh()), `${P}build_info`, { version: '1.2.3' })).toBe(1);
  });

  it('counts calls by service, method and status name, and times them', async () => {
    const m = fresh();
    const exec = '/build.bazel.remote.execution.v2.Execution/Execute';
    m.callDone(exec, Code.OK, 1500);
    m.callDone(exec, Code.OK, 500);
    m.callDone(exec, Code.FAILED_PRECONDITION, 20);
    m.callDone('/acme.Unknown/Thing', Code.UNIMPLEMENTED, 1);
    const s = await samplesOf(m);
    const labels = { service: 'build.bazel.remote.execution.v2.Execution', method: 'Execute' };
    expect(valueOf(s, `${P}calls_total`, { ...labels, code: 'OK' })).toBe(2);
    expect(valueOf(s, `${P}calls_total`, { ...labels, code: 'FAILED_PRECONDITION' })).toBe(1);
    expect(valueOf(s, `${P}calls_total`, { service: 'other', method: 'other', code: 'UNIMPLEMENTED' })).toBe(1);
    expect(valueOf(s, `${P}call_duration_seconds_count`, labels)).toBe(3);
    expect(valueOf(s, `${P}call_duration_seconds_sum`, labels)).toBeCloseTo(2.02, 6);
    expect(valueOf(s, `${P}call_duration_seconds_bucket`, { ...labels, le: '1' })).toBe(2);
  });

  it('records an Execute preparation: steps, references, missing and realised paths', async () => {
    const m = fresh();
    m.executePrepared({
      steps: { read: 10, check: 40, realise: 2000, total: 2050 },
      references: 12,
      missing: 3,
      realised: 3,
    });
    m.executePrepared({ steps: { read: 5, check: 0, total: 5 }, references: 12, missing: 0, realised: 0 });
    const s = await samplesOf(m);
    expect(valueOf(s, `${P}execute_prepared_total`)).toBe(2);
    expect(valueOf(s, `${P}execute_references_total`)).toBe(24);
    expect(valueOf(s, `${P}execute_missing_paths_total`)).toBe(3);
    expect(valueOf(s, `${P}execute_realised_paths_total`)).toBe(3);
    expect(valueOf(s, `${P}execute_references_count`)).toBe(2);
    expect(valueOf(s, `${P}execute_prepare_duration_seconds_count`, { step: 'read' })).toBe(2);
    expect(valueOf(s, `${P}execute_prepare_duration_seconds_count`, { step: 'realise' })).toBe(1);
    expect(valueOf(s, `${P}execute_prepare_duration_seconds_count`, { step: 'visible' })).toBe(0);
    expect(valueOf(s, `${P}execute_prepare_duration_seconds_sum`, { step: 'total' })).toBeCloseTo(2.055, 6);
  });

  it.each([
    ['a negative count', -5, 0],
    ['NaN', Number.NaN, 0],
    ['Infinity', Number.POSITIVE_INFINITY, 0],
    ['a fraction', 2.7, 2],
  ])('clamps %s instead of corrupting a counter', async (_what, bad, expected) => {
    const m = fresh();
    m.executePrepared({ steps: { total: bad }, references: bad, missing: bad, realised: bad });
    m.singleFlightJoined(bad);
    const s = await samplesOf(m);
    expect(valueOf(s, `${P}execute_references_total`)).toBe(expected);
    expect(valueOf(s, `${P}single_flight_joins_total`)).toBe(expected);
    const totalObserved = valueOf(s, `${P}execute_prepare_duration_seconds_count`, { step: 'total' });
    expect(totalObserved).toBe(Number.isFinite(bad) && bad >= 0 ? 1 : 0);
  });

  it('labels failures with their reason, and stops adding new reasons after 32', async () => {
    const m = fresh();
    m.executePrepareFailed({ reason: 'NIX_PATHS_UNAVAILABLE', steps: { read: 3, check: 7, total: 12 } });
    m.executePrepareFailed({ reason: 'NIX_PATHS_UNAVAILABLE' });
    m.executePrepareFailed({ reason: 'not a code {x="y"}' });
    for (let i = 0; i < 40; i++) m.executePrepareFailed({ reason: `REASON_${i}` });
    const s = await samplesOf(m);
    expect(valueOf(s, `${P}execute_prepare_failures_total`, { reason: 'NIX_PATHS_UNAVAILABLE' })).toBe(2);
    // 1 malformed + (40 - 31 slots left) new reasons beyond the cap
    expect(valueOf(s, `${P}execute_prepare_failures_total`, { reason: 'OTHER' })).toBe(1 + 9);
    expect(s.filter((x) => x.name === `${P}execute_prepare_failures_total`)).toHaveLength(33);
    expect(valueOf(s, `${P}execute_prepare_duration_seconds_count`, { step: 'check' })).toBe(1);
  });

  it('counts cache hits and misses per cache', async () => {
    const m = fresh();
    m.cacheLookups('validity', 7, 3);
    m.cacheLookups('validity', 1, 0);
    m.cacheLookups('tree', 0, 4);
    const s = await samplesOf(m);
    expect(valueOf(s, `${P}cache_lookups_total`, { cache: 'validity', result: 'hit' })).toBe(8);
    expect(valueOf(s, `${P}cache_lookups_total`, { cache: 'validity', result: 'miss' })).toBe(3);
    expect(valueOf(s, `${P}cache_lookups_total`, { cache: 'tree', result: 'miss' })).toBe(4);
  });

  it('counts validity queries, the paths asked and those found invalid', async () => {
    const m = fresh();
    m.validityChecked({ paths: 100, invalid: 4, durationMs: 60, ok: true });
    m.validityChecked({ paths: 10, invalid: 0, durationMs: 5000, ok: false });
    const s = await samplesOf(m);
    expect(valueOf(s, `${P}validity_checks_total`, { outcome: 'ok' })).toBe(1);
    expect(valueOf(s, `${P}validity_checks_total`, { outcome: 'failed' })).toBe(1);
    expect(valueOf(s, `${P}validity_checked_paths_total`)).toBe(110);
    expect(valueOf(s, `${P}validity_invalid_paths_total`)).toBe(4);
    expect(valueOf(s, `${P}validity_check_duration_seconds_count`)).toBe(2);
  });

  it('tracks realisations started, running, failed, their duration, paths and bytes', async () => {
    const m = fresh();
    m.realisationStarted();
    m.realisationStarted();
    m.realisationStarted();
    let s = await samplesOf(m);
    expect(valueOf(s, `${P}realisations_in_flight`)).toBe(3);
    m.realisationFinished({ ok: true, durationMs: 800, paths: 5, bytes: 1_000_000 });
    m.realisationFinished({ ok: false, durationMs: 40, paths: 0, bytes: 0 });
    s = await samplesOf(m);
    expect(valueOf(s, `${P}realisations_started_total`)).toBe(3);
    expect(valueOf(s, `${P}realisations_in_flight`)).toBe(1);
    expect(valueOf(s, `${P}realisations_failed_total`)).toBe(1);
    expect(valueOf(s, `${P}realised_paths_total`)).toBe(5);
    expect(valueOf(s, `${P}realised_bytes_total`)).toBe(1_000_000);
    expect(valueOf(s, `${P}realisation_duration_seconds_count`, { outcome: 'ok' })).toBe(1);
    expect(valueOf(s, `${P}realisation_duration_seconds_count`, { outcome: 'failed' })).toBe(1);
  });

  it('counts single-flight joins and GC roots, with totals as gauges when known', async () => {
    const m = fresh();
    m.singleFlightJoined(4);
    m.gcRoots({ added: 3, dropped: 0, rooted: 3, rootedBytes: 4096 });
    m.gcRoots({ added: 0, dropped: 2 });
    const s = await samplesOf(m);
    expect(valueOf(s, `${P}single_flight_joins_total`)).toBe(4);
    expect(valueOf(s, `${P}gc_roots_added_total`)).toBe(3);
    expect(valueOf(s, `${P}gc_roots_dropped_total`)).toBe(2);
    expect(valueOf(s, `${P}gc_roots`)).toBe(3);
    expect(valueOf(s, `${P}gc_rooted_bytes`)).toBe(4096);
  });

  it('counts GC sweeps by outcome and keeps the time of the last successful one', async () => {
    const m = fresh();
    m.gcSweepFinished({ ok: true, atMs: 1_700_000_000_000 });
    m.gcSweepFinished({ ok: false, atMs: 1_700_000_360_000 });
    const s = await samplesOf(m);
    expect(valueOf(s, `${P}gc_sweeps_total`, { outcome: 'ok' })).toBe(1);
    expect(valueOf(s, `${P}gc_sweeps_total`, { outcome: 'failed' })).toBe(1);
    expect(valueOf(s, `${P}gc_last_sweep_timestamp_seconds`)).toBe(1_700_000_000);
  });

  it('keeps separate counts per instance (no global registry)', async () => {
    const a = fresh();
    const b = fresh();
    a.singleFlightJoined(1);
    expect(valueOf(await samplesOf(b), `${P}single_flight_joins_total`)).toBe(0);
    expect(valueOf(await samplesOf(a), `${P}single_flight_joins_total`)).toBe(1);
  });

  it('exports Node process metrics only when asked', async () => {
    const withProcess = new PrometheusMetrics({ version: 'x', processMetrics: true });
    expect((await samplesOf(withProcess)).some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true);
    expect((await samplesOf(fresh())).some((s) => s.name.startsWith('process_'))).toBe(false);
  });
});

describe('NO_METRICS', () => {
  it('accepts every call and records nothing', () => {
    const m: Metrics = NO_METRICS;
    expect(m.executePrepared({ steps: {}, references: 1, missing: 0, realised: 0 })).toBeUndefined();
    expect(m.executePrepareFailed({ reason: 'X' })).toBeUndefined();
    expect(m.cacheLookups('tree', 1, 1)).toBeUndefined();
    expect(m.validityChecked({ paths: 1, invalid: 0, durationMs: 1, ok: true })).toBeUndefined();
    expect(m.realisationStarted()).toBeUndefined();
    expect(m.realisationFinished({ ok: true, durationMs: 1, paths: 1, bytes: 1 })).toBeUndefined();
    expect(m.singleFlightJoined(1)).toBeUndefined();
    expect(m.gcRoots({ added: 1, dropped: 0 })).toBeUndefined();
    expect(Object.isFrozen(m)).toBe(true);
  });
});
