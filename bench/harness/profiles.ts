/** How much work each scenario does in each bench mode. Pure data. */
export interface Profile {
  name: 'full' | 'quick' | 'tiny';
  /** Direct/proxy round pairs for scenarios 1 and 2 (64 MiB). */
  rounds: number;
  unary: { callsAtC1: number; callsAtC64: number; warmupCalls: number; maxMs: number };
  /** `repeat` transfers of `size` per run; one transfer of `bigSize` (0 = none) for the memory check. */
  blobs: { size: number; rounds: number; repeat: number; bigSize: number };
  streams: { count: number; connections: number; delayMs: number };
  execute: {
    warmCalls: number;
    treeFiles: number;
    treeDirs: number;
    treeRefs: number;
    closurePaths: number;
    concurrent: number;
  };
  /** Cold Executes of a fresh big tree (scenario 4). */
  coldRounds: number;
  /** Scenario 7: pushes of fresh closures of `paths` paths of `pathBytes` random bytes each, `rounds` per compression. */
  push: { paths: number; pathBytes: number; rounds: number };
}

const MIB = 1024 * 1024;

export const PROFILES: Record<Profile['name'], Profile> = {
  full: {
    name: 'full',
    rounds: 5,
    unary: { callsAtC1: 5_000, callsAtC64: 40_000, warmupCalls: 2_000, maxMs: 30_000 },
    blobs: { size: 64 * MIB, rounds: 5, repeat: 8, bigSize: 1024 * MIB },
    streams: { count: 10_000, connections: 10, delayMs: 5_000 },
    execute: {
      warmCalls: 3_000,
      treeFiles: 10_000,
      treeDirs: 1_000,
      treeRefs: 100,
      closurePaths: 200,
      concurrent: 100,
    },
    coldRounds: 3,
    push: { paths: 200, pathBytes: 512 * 1024, rounds: 3 },
  },
  quick: {
    name: 'quick',
    rounds: 2,
    unary: { callsAtC1: 1_000, callsAtC64: 5_000, warmupCalls: 500, maxMs: 10_000 },
    // The 1 GiB memory check is in the full run; quick checks the same with 256 MiB.
    blobs: { size: 64 * MIB, rounds: 2, repeat: 4, bigSize: 256 * MIB },
    streams: { count: 10_000, connections: 10, delayMs: 2_000 },
    execute: {
      warmCalls: 1_000,
      treeFiles: 10_000,
      treeDirs: 1_000,
      treeRefs: 100,
      closurePaths: 200,
      concurrent: 100,
    },
    coldRounds: 1,
    push: { paths: 200, pathBytes: 512 * 1024, rounds: 1 },
  },
  // For the smoke test: proves the harness works end to end, measures nothing worth quoting.
  tiny: {
    name: 'tiny',
    rounds: 1,
    unary: { callsAtC1: 100, callsAtC64: 300, warmupCalls: 50, maxMs: 10_000 },
    blobs: { size: 1 * MIB, rounds: 1, repeat: 2, bigSize: 0 },
    streams: { count: 200, connections: 2, delayMs: 200 },
    execute: { warmCalls: 50, treeFiles: 100, treeDirs: 10, treeRefs: 5, closurePaths: 10, concurrent: 5 },
    coldRounds: 1,
    push: { paths: 10, pathBytes: 16 * 1024, rounds: 1 },
  },
};
