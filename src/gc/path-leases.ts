/**
 * What the Execute path tells the GC-roots side: "these store paths are in
 * use by an action" and "that action is done".
 *
 * Contract:
 * - acquire(paths): resolves once every path (strings that are not store
 *   paths are ignored) has a GC root on the shared store and is held by this
 *   process's lease, so neither `nix-store --gc` on the store host nor a prune
 *   in any process removes it until the returned lease is released (and a
 *   short linger after that). A path need not be valid yet: a root to a path
 *   about to be copied is harmless and closes the GC race of a fresh copy.
 *   Rejects UNAVAILABLE (reason GC_ROOTS_UNAVAILABLE) when a root or the lease
 *   cannot be written; nothing is held then.
 * - For paths this process already holds, acquire does no I/O (at most a
 *   background touch once per touch interval).
 * - release(): idempotent; call it when the action has finished (its result
 *   is known or it was cancelled), whatever the outcome.
 * - Safe to call concurrently; leases on the same paths are counted.
 */
export interface PathLeases {
  acquire(paths: readonly string[]): Promise<PathLease>;
}

export interface PathLease {
  release(): void;
}

const NO_LEASE: PathLease = Object.freeze({ release() {} });

/** When GC roots are off: holds nothing, costs nothing. */
export const NO_LEASES: PathLeases = Object.freeze({
  acquire: () => Promise.resolve(NO_LEASE),
});
