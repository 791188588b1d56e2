/**
 * What the proxy's modules report about their work, in their own terms. The
 * Prometheus backend (prometheus-metrics.ts) turns these into series; modules
 * depend only on this interface and receive NO_METRICS when metrics are off,
 * so every call is safe to make unconditionally.
 *
 * Contract for every method:
 * - Synchronous, cheap (a few counter updates) and never throws.
 * - Counts are non-negative integers and durations non-negative milliseconds;
 *   anything else (NaN, negative, fractional counts) is clamped or dropped by
 *   the backend rather than corrupting a series.
 * - Label-like arguments are fixed unions, or (for `reason`) stable error
 *   codes; the backend caps how many distinct values it keeps, so a client
 *   cannot grow the series set without bound.
 */
export interface Metrics {
  /**
   * One Execute's preparation succeeded and the request goes upstream. Call
   * once per Execute that needed preparation (so not for pure pass-through).
   * `steps` holds the time spent in each step that ran.
   */
  executePrepared(report: ExecutePrepared): void;

  /**
   * One Execute's preparation failed and the client got an error instead of a
   * forwarded call. `reason` is the ProxyError reason (e.g.
   * NIX_PATHS_UNAVAILABLE), or CANCELLED / DEADLINE_EXCEEDED / INTERNAL.
   */
  executePrepareFailed(failure: { reason: string; steps?: PrepareSteps }): void;

  /**
   * Lookups in one of the proxy's caches. Call with the numbers of one batch
   * (e.g. per ensure(): paths answered valid from the positive cache as hits,
   * the others as misses).
   */
  cacheLookups(cache: CacheName, hits: number, misses: number): void;

  /** One query of the shared store's validity (one Nix process), after it finished. */
  validityChecked(check: { paths: number; invalid: number; durationMs: number; ok: boolean }): void;

  /** A realisation (one Nix process copying or substituting paths into the shared store) begins. */
  realisationStarted(): void;

  /**
   * The realisation begun by the matching realisationStarted() ended. `paths`
   * and `bytes` count what became valid (0 when it failed or nothing was
   * copied); `bytes` is the NAR size when known, else 0.
   */
  realisationFinished(result: { ok: boolean; durationMs: number; paths: number; bytes: number }): void;

  /** A caller waited on another caller's in-flight realisation of `paths` paths instead of starting its own. */
  singleFlightJoined(paths: number): void;

  /**
   * GC roots changed on the shared store. `rooted` and `rootedBytes`, when
   * known, are the totals after the change (they set gauges).
   */
  gcRoots(change: { added: number; dropped: number; rooted?: number; rootedBytes?: number }): void;

  /** Whether GC roots protect what the proxy copies into the shared store (set once, at start). */
  gcRootsState(state: { on: boolean }): void;

  /** A periodic sweep of GC roots ended (at `atMs`, epoch ms), successfully or not. */
  gcSweepFinished(sweep: { ok: boolean; atMs: number }): void;
}

/** Steps of an Execute's preparation, in the order they run. */
export const PREPARE_STEPS = ['read', 'check', 'realise', 'visible', 'total'] as const;
/**
 * - read: fetching Action, Command and input tree from the CAS and scanning them for store paths;
 * - check: asking the shared store which referenced paths are valid;
 * - realise: making the missing ones valid (own realisations and joined ones);
 * - visible: waiting until the executors' mount shows them;
 * - total: the whole preparation, start to forwarding (or failure).
 */
export type PrepareStep = (typeof PREPARE_STEPS)[number];
export type PrepareSteps = Partial<Record<PrepareStep, number>>;

export interface ExecutePrepared {
  steps: PrepareSteps;
  /** Distinct store paths the action references. */
  references: number;
  /** Of those, found invalid on the shared store. */
  missing: number;
  /** Made valid for this Execute (by its own realisation or a joined one). */
  realised: number;
}

export const CACHE_NAMES = ['validity', 'tree', 'action'] as const;
/** validity: store paths known valid; tree: CAS digest -> store paths found in it; action: Action digest -> store paths it references. */
export type CacheName = (typeof CACHE_NAMES)[number];

/** Does nothing; what modules get when metrics are off. */
export const NO_METRICS: Metrics = Object.freeze({
  executePrepared() {},
  executePrepareFailed() {},
  cacheLookups() {},
  validityChecked() {},
  realisationStarted() {},
  realisationFinished() {},
  singleFlightJoined() {},
  gcRoots() {},
  gcRootsState() {},
  gcSweepFinished() {},
});
