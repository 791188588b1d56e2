import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { codeName } from '../reapi/grpc-status';
import type { CallObserver } from '../rpc/call-observer';
import { methodLabels } from './grpc-method-labels';
import { PREPARE_STEPS, type CacheName, type ExecutePrepared, type Metrics, type PrepareSteps } from './metrics';

/** Every series this proxy exports starts with this. */
export const METRIC_PREFIX = 'nix_reapi_proxy_';

/** Distinct failure reasons kept as label values; later new ones are counted as OTHER. */
const MAX_REASONS = 32;
const REASON_RE = /^[A-Z][A-Z0-9_]{0,63}$/;

// Calls range from sub-millisecond cache lookups to Executes that run for an hour.
const CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
// Preparation steps: cache hits take milliseconds, realising a toolchain minutes.
const STEP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
const NIX_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
const REFERENCE_BUCKETS = [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

const count = (n: number): number => (Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);
const seconds = (ms: number | undefined): number | undefined =>
  ms !== undefined && Number.isFinite(ms) && ms >= 0 ? ms / 1000 : undefined;

export interface PrometheusMetricsOptions {
  /** Shown as the `version` label of nix_reapi_proxy_build_info. */
  version: string;
  /** Also export Node's process metrics (CPU, memory, event-loop lag, GC). */
  processMetrics?: boolean;
}

/**
 * The Prometheus backend of Metrics, and the router's CallObserver. Owns its
 * own Registry (never prom-client's global one), so several proxies in one
 * process, as in tests, keep separate counts.
 */
export class PrometheusMetrics implements Metrics, CallObserver {
  readonly registry = new Registry();
  private readonly reasons = new Set<string>();

  private readonly calls = this.counter('calls_total', 'Finished gRPC calls by service, method and status code.', [
    'service',
    'method',
    'code',
  ]);
  private readonly callSeconds = new Histogram({
    name: `${METRIC_PREFIX}call_duration_seconds`,
    help: 'Time from a call arriving to its status being sent, by service and method.',
    labelNames: ['service', 'method'],
    buckets: CALL_BUCKETS,
    registers: [this.registry],
  });

  private readonly prepared = this.counter(
    'execute_prepared_total',
    'Executes whose store paths were made valid before forwarding.',
    [],
  );
  private readonly prepareFailed = this.counter(
    'execute_prepare_failures_total',
    'Executes whose preparation failed, by reason.',
    ['reason'],
  );
  private readonly prepareSeconds = new Histogram({
    name: `${METRIC_PREFIX}execute_prepare_duration_seconds`,
    help: 'Time spent per Execute in each preparation step (read, check, realise, visible, total).',
    labelNames: ['step'],
    buckets: STEP_BUCKETS,
    registers: [this.registry],
  });
  private readonly referencesPerAction = new Histogram({
    name: `${METRIC_PREFIX}execute_references`,
    help: 'Distinct store paths referenced by one prepared Execute.',
    buckets: REFERENCE_BUCKETS,
    registers: [this.registry],
  });
  private readonly references = this.counter(
    'execute_references_total',
    'Store paths referenced by prepared Executes (distinct per Execute).',
    [],
  );
  private readonly missing = this.counter(
    'execute_missing_paths_total',
    'Referenced store paths found invalid on the shared store.',
    [],
  );
  private readonly realisedForExecute = this.counter(
    'execute_realised_paths_total',
    'Store paths made valid for prepared Executes.',
    [],
  );

  private readonly cache = this.counter('cache_lookups_total', 'Cache lookups by cache and result (hit, miss).', [
    'cache',
    'result',
  ]);

  private readonly validityChecks = this.counter(
    'validity_checks_total',
    'Queries of the shared store for path validity, by outcome.',
    ['outcome'],
  );
  private readonly validityPaths = this.counter(
    'validity_checked_paths_total',
    'Store paths whose validity was asked of the shared store.',
    [],
  );
  private readonly validityInvalid = this.counter(
    'validity_invalid_paths_total',
    'Store paths the shared store reported invalid.',
    [],
  );
  private readonly validitySeconds = new Histogram({
    name: `${METRIC_PREFIX}validity_check_duration_seconds`,
    help: 'Duration of one validity query of the shared store.',
    buckets: NIX_BUCKETS,
    registers: [this.registry],
  });

  private readonly realisationsStarted = this.counter(
    'realisations_started_total',
    'Realisations (Nix processes writing into the shared store) started.',
    [],
  );
  private readonly realisationsFailed = this.counter('realisations_failed_total', 'Realisations that failed.', []);
  private readonly realisationsInFlight = new Gauge({
    name: `${METRIC_PREFIX}realisations_in_flight`,
    help: 'Realisations running now.',
    registers: [this.registry],
  });
  private readonly realisationSeconds = new Histogram({
    name: `${METRIC_PREFIX}realisation_duration_seconds`,
    help: 'Duration of one realisation, by outcome.',
    labelNames: ['outcome'],
    buckets: NIX_BUCKETS,
    registers: [this.registry],
  });
  private readonly realisedPaths = this.counter(
    'realised_paths_total',
    'Store paths made valid on the shared store by realisations.',
    [],
  );
  private readonly realisedBytes = this.counter(
    'realised_bytes_total',
    'NAR bytes made valid on the shared store by realisations.',
    [],
  );
  private readonly joins = this.counter(
    'single_flight_joins_total',
    "Store paths a caller waited for on another caller's realisation instead of realising again.",
    [],
  );

  private readonly rootsAdded = this.counter('gc_roots_added_total', 'GC roots added on the shared store.', []);
  private readonly rootsDropped = this.counter('gc_roots_dropped_total', 'GC roots dropped from the shared store.', []);
  private readonly sweeps = this.counter('gc_sweeps_total', 'Periodic sweeps of GC roots, by outcome.', ['outcome']);
  private readonly lastSweep = new Gauge({
    name: `${METRIC_PREFIX}gc_last_sweep_timestamp_seconds`,
    help: 'When the last successful sweep of GC roots ended (Unix time).',
    registers: [this.registry],
  });
  private readonly rootsEnabled = new Gauge({
    name: `${METRIC_PREFIX}gc_roots_enabled`,
    help: 'Whether GC roots protect the store paths the proxy copies into the shared store: 1 on, 0 off (or no shared store). Off means a GC on the store server deletes them.',
    registers: [this.registry],
  });
  private readonly roots = new Gauge({
    name: `${METRIC_PREFIX}gc_roots`,
    help: 'GC roots the proxy holds on the shared store.',
    registers: [this.registry],
  });
  private readonly rootedBytes = new Gauge({
    name: `${METRIC_PREFIX}gc_rooted_bytes`,
    help: 'NAR bytes of the closures the proxy keeps rooted.',
    registers: [this.registry],
  });

  constructor(options: PrometheusMetricsOptions) {
    new Gauge({
      name: `${METRIC_PREFIX}build_info`,
      help: 'Always 1; the version label tells which proxy is running.',
      labelNames: ['version'],
      registers: [this.registry],
    }).set({ version: options.version }, 1);
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** The exposition text for GET /metrics. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  callDone(path: string, code: number, durationMs: number): void {
    const { service, method } = methodLabels(path);
    this.calls.inc({ service, method, code: codeName(code) });
    const s = seconds(durationMs);
    if (s !== undefined) this.callSeconds.observe({ service, method }, s);
  }

  executePrepared(report: ExecutePrepared): void {
    this.prepared.inc();
    this.observeSteps(report.steps);
    const refs = count(report.references);
    this.referencesPerAction.observe(refs);
    this.references.inc(refs);
    this.missing.inc(count(report.missing));
    this.realisedForExecute.inc(count(report.realised));
  }

  executePrepareFailed(failure: { reason: string; steps?: PrepareSteps }): void {
    this.prepareFailed.inc({ reason: this.reasonLabel(failure.reason) });
    if (failure.steps) this.observeSteps(failure.steps);
  }

  cacheLookups(cache: CacheName, hits: number, misses: number): void {
    this.cache.inc({ cache, result: 'hit' }, count(hits));
    this.cache.inc({ cache, result: 'miss' }, count(misses));
  }

  validityChecked(check: { paths: number; invalid: number; durationMs: number; ok: boolean }): void {
    this.validityChecks.inc({ outcome: check.ok ? 'ok' : 'failed' });
    this.validityPaths.inc(count(check.paths));
    this.validityInvalid.inc(count(check.invalid));
    const s = seconds(check.durationMs);
    if (s !== undefined) this.validitySeconds.observe(s);
  }

  realisationStarted(): void {
    this.realisationsStarted.inc();
    this.realisationsInFlight.inc();
  }

  realisationFinished(result: { ok: boolean; durationMs: number; paths: number; bytes: number }): void {
    this.realisationsInFlight.dec();
    if (!result.ok) this.realisationsFailed.inc();
    const s = seconds(result.durationMs);
    if (s !== undefined) this.realisationSeconds.observe({ outcome: result.ok ? 'ok' : 'failed' }, s);
    this.realisedPaths.inc(count(result.paths));
    this.realisedBytes.inc(count(result.bytes));
  }

  singleFlightJoined(paths: number): void {
    this.joins.inc(count(paths));
  }

  gcRoots(change: { added: number; dropped: number; rooted?: number; rootedBytes?: number }): void {
    this.rootsAdded.inc(count(change.added));
    this.rootsDropped.inc(count(change.dropped));
    if (change.rooted !== undefined) this.roots.set(count(change.rooted));
    if (change.rootedBytes !== undefined) this.rootedBytes.set(count(change.rootedBytes));
  }

  gcRootsState(state: { on: boolean }): void {
    this.rootsEnabled.set(state.on ? 1 : 0);
  }

  gcSweepFinished(sweep: { ok: boolean; atMs: number }): void {
    this.sweeps.inc({ outcome: sweep.ok ? 'ok' : 'failed' });
    if (sweep.ok && Number.isFinite(sweep.atMs)) this.lastSweep.set(sweep.atMs / 1000);
  }

  private observeSteps(steps: PrepareSteps): void {
    for (const step of PREPARE_STEPS) {
      const s = seconds(steps[step]);
      if (s !== undefined) this.prepareSeconds.observe({ step }, s);
    }
  }

  private reasonLabel(reason: string): string {
    if (!REASON_RE.test(reason)) return 'OTHER';
    if (this.reasons.has(reason)) return reason;
    if (this.reasons.size >= MAX_REASONS) return 'OTHER';
    this.reasons.add(reason);
    return reason;
  }

  private counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    return new Counter({ name: `${METRIC_PREFIX}${name}`, help, labelNames, registers: [this.registry] });
  }
}
