/**
 * What the Execute path needs from the Nix side: "make these store paths, and
 * their closures, valid on the shared store the executors mount".
 *
 * Contract:
 * - `paths` are already validated store paths (`/nix/store/<32 nixbase32>-<name>`,
 *   no sub-paths); duplicates are allowed.
 * - Safe to call concurrently from any number of Executes. A path missing from
 *   the store is realised once however many callers wait for it (single-flight);
 *   a failure is reported to every waiter and not remembered, a success is.
 * - Resolves only when every path is valid on the shared store (and, if
 *   configured, visible to the executors).
 * - Rejects with a ProxyError:
 *     FAILED_PRECONDITION, reason NIX_PATHS_UNAVAILABLE: some paths exist in no
 *       source; `violations` has one entry per path, type NIX_STORE_PATH,
 *       subject the path, description why;
 *     UNAVAILABLE: the shared store or a substituter cannot be reached, or a Nix
 *       process failed in a way worth retrying;
 *     DEADLINE_EXCEEDED: a bound on time was hit;
 *     CANCELLED: `signal` aborted (the realisation itself goes on for other waiters).
 */
export interface ClosureEnsurer {
  ensure(paths: readonly string[], signal: AbortSignal): Promise<EnsureReport>;
}

export interface EnsureReport {
  /** Distinct paths asked for. */
  requested: number;
  /** Answered valid from the positive cache, without asking the store. */
  cachedValid: number;
  /** Found invalid on the shared store by the validity check. */
  missing: string[];
  /** Realised by this call or by a realisation it joined. */
  realised: string[];
  /** Of `realised`, how many were joined from another caller's in-flight realisation. */
  joined: number;
  checkMs: number;
  realiseMs: number;
  visibleWaitMs: number;
}

/** The violation type the proxy uses for a store path no source can provide (never MISSING). */
export const NIX_STORE_PATH_VIOLATION = 'NIX_STORE_PATH';
