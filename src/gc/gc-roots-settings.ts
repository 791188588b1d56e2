/**
 * Timing of the GC-roots side derived from configuration, in one place so the
 * proxy and the prune command agree. Pure.
 */
import type { Config } from '../config/config';

/** Lease rewrite interval; a lease counts for LEASE_TTL_REFRESHES of these. */
export const LEASE_REFRESH_MS = 30_000;
/** Shortest linger of a held path after its last action. */
export const MIN_LINGER_MS = 60_000;
/**
 * Roots to paths that are not valid (an ensure that failed, a replica that
 * died mid-copy) are dropped after this, whatever the retention. A copy that
 * is still running is protected by its replica's lease, not by this grace.
 */
export const NOT_VALID_GRACE_MS = 3_600_000;
/** Paths one process remembers as held before it shortens lingers. */
export const MAX_HELD_PATHS = 500_000;

export interface RootTimings {
  touchIntervalMs: number;
  lingerMs: number;
  /** Set when the configured touch interval had to be shortened, for the start-up log. */
  touchClampedFrom?: number;
}

/**
 * The linger covers the validity cache's ttl: a path the cache still calls
 * valid is still held, so its root cannot have been dropped. The touch
 * interval must stay well under the retention, or a path in steady use would
 * look unused to a prune between two touches.
 */
export function rootTimings(config: Pick<Config, 'rootTouchIntervalMs' | 'rootRetentionMs' | 'cache'>): RootTimings {
  const lingerMs = Math.max(MIN_LINGER_MS, config.cache.validityTtlMs);
  const ceiling =
    config.rootRetentionMs > 0 ? Math.max(1_000, Math.floor(config.rootRetentionMs / 4)) : config.rootTouchIntervalMs;
  if (config.rootTouchIntervalMs > ceiling) {
    return { touchIntervalMs: ceiling, lingerMs, touchClampedFrom: config.rootTouchIntervalMs };
  }
  return { touchIntervalMs: config.rootTouchIntervalMs, lingerMs };
}
