import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors';
import type { PathLease, PathLeases } from '../../../src/gc/path-leases';
import { formatPruneReport, humanBytes } from '../../../src/gc/prune-report-format';
import type { PruneReport } from '../../../src/gc/prune-roots';
import { RootSweeper, type SweepOutcome } from '../../../src/gc/root-sweeper';
import { RootingEnsurer } from '../../../src/gc/rooting-ensurer';
import { NO_METRICS, type Metrics } from '../../../src/metrics/metrics';
import { Code } from '../../../src/reapi/grpc-status';
import type { ClosureEnsurer, EnsureReport } from '../../../src/store/closure-ensurer';
import { testLogger } from '../../support/test-logger';
import { storePath } from '../store/fake-nix';

const A = storePath('a');
const DAY = 86_400_000;

class CountingLeases implements PathLeases {
  held = new Map<string, number>();
  async acquire(paths: readonly string[]): Promise<PathLease> {
    for (const p of paths) this.held.set(p, (this.held.get(p) ?? 0) + 1);
    let done = false;
    return {
      release: () => {
        if (done) return;
        done = true;
        for (const p of paths) this.held.set(p, this.held.get(p)! - 1);
      },
    };
  }
}

const REPORT: EnsureReport = {
  requested: 1,
  cachedValid: 0,
  missing: [],
  realised: [],
  joined: 0,
  checkMs: 0,
  realiseMs: 0,
  visibleWaitMs: 0,
};

describe('RootingEnsurer', () => {
  it('holds the paths while the inner ensure runs and releases them after', async () => {
    const leases = new CountingLeases();
    let heldDuring = 0;
    const inner: ClosureEnsurer = {
      ensure: async () => {
        heldDuring = leases.held.get(A)!;
        return REPORT;
      },
    };
    await new RootingEnsurer(inner, leases).ensure([A], new AbortController().signal);
    expect(heldDuring).toBe(1);
    expect(leases.held.get(A)).toBe(0);
  });

  it('releases when the inner ensure fails, and passes the error on', async () => {
    const leases = new CountingLeases();
    const failure = new ProxyError(Code.UNAVAILABLE, 'X', 'down');
    const inner: ClosureEnsurer = { ensure: () => Promise.reject(failure) };
    await expect(new RootingEnsurer(inner, leases).ensure([A], new AbortController().signal)).rejects.toBe(failure);
    expect(leases.held.get(A)).toBe(0);
  });

  it('does not ensure when rooting fails', async () => {
    let called = false;
    const failing: PathLeases = {
      acquire: () => Promise.reject(new ProxyError(Code.UNAVAILABLE, 'GC_ROOTS_UNAVAILABLE', 'x')),
    };
    const inner: ClosureEnsurer = {
      ensure: async () => {
        called = true;
        return REPORT;
      },
    };
    await expect(new RootingEnsurer(inner, failing).ensure([A], new AbortController().signal)).rejects.toMatchObject({
      reason: 'GC_ROOTS_UNAVAILABLE',
    });
    expect(called).toBe(false);
  });
});

function report(over: Partial<PruneReport> = {}): PruneReport {
  return {
    store: '/srv/nix',
    rootsDir: '/srv/nix/nix/var/nix/gcroots/nix-reapi-proxy',
    dryRun: false,
    unusedForMs: 14 * DAY,
    startedAtMs: 0,
    durationMs: 5,
    rootsBefore: 3,
    rootsAfter: 2,
    dropped: [{ path: A, lastUsedMs: 20 * DAY, reason: 'unused' }],
    spared: [],
    restored: [],
    keptForLeases: 0,
    leases: { live: 1, stale: 0 },
    foreign: 0,
    rootedBytesBefore: 3 * 1024 ** 3,
    rootedBytesAfter: 1024 ** 3,
    overBudgetBytes: 0,
    ...over,
  };
}

describe('RootSweeper', () => {
  it('runs one sweep at a time, reports it to the metrics and the hook, and never rejects', async () => {
    const changes: Array<Parameters<Metrics['gcRoots']>[0]> = [];
    const outcomes: SweepOutcome[] = [];
    let runs = 0;
    let fail = false;
    let open!: () => void;
    const sweeper = new RootSweeper({
      intervalMs: 0,
      now: () => 42,
      logger: testLogger(),
      metrics: { ...NO_METRICS, gcRoots: (c) => changes.push(c) },
      onSweep: (o) => outcomes.push(o),
      sweep: async () => {
        runs++;
        await new Promise<void>((r) => (open = r));
        if (fail) throw new ProxyError(Code.UNAVAILABLE, 'X', 'store down');
        return report();
      },
    });
    const a = sweeper.sweepNow();
    const b = sweeper.sweepNow();
    open();
    expect(await a).toBe(await b);
    expect(runs).toBe(1);
    expect(changes).toEqual([{ added: 0, dropped: 1, rooted: 2, rootedBytes: 1024 ** 3 }]);
    fail = true;
    const c = sweeper.sweepNow();
    await new Promise((r) => setImmediate(r));
    open();
    expect(await c).toMatchObject({ ok: false, atMs: 42 });
    expect(outcomes.map((o) => o.ok)).toEqual([true, false]);
    expect(sweeper.last?.ok).toBe(false);
  });
});

describe('formatPruneReport', () => {
  it('says what was dropped, kept, the sizes and what the GC freed', () => {
    const text = formatPruneReport(
      report({
        budgetBytes: 2 * 1024 ** 3,
        keptForLeases: 1,
        gc: { pathsDeleted: 7, bytesFreed: 1536 },
        restored: [storePath('b')],
      }),
      30 * DAY,
    );
    expect(text).toContain('GC roots of /srv/nix in /srv/nix/nix/var/nix/gcroots/nix-reapi-proxy\n');
    expect(text).toContain('rules: unused for 14d or more; rooted size budget 2.0 GiB');
    expect(text).toContain('dropped 1 of 3 roots (unused: 1)');
    expect(text).toContain(`  ${A}  last used 1970-01-21T00:00:00.000Z (10d ago)  unused`);
    expect(text).toContain(`re-rooted ${storePath('b')}`);
    expect(text).toContain('kept 2 roots, 1 of them only because running actions use them');
    expect(text).toContain('rooted closure size: 3.0 GiB (3221225472 bytes) before, 1.0 GiB (1073741824 bytes) after');
    expect(text).toContain('garbage collection: 7 store paths deleted, 1.5 KiB (1536 bytes) freed');
  });

  it('marks a dry run and an unmeetable budget', () => {
    const text = formatPruneReport(report({ dryRun: true, overBudgetBytes: 10 }), 30 * DAY);
    expect(text).toContain('(dry run: nothing changed)');
    expect(text).toContain('would drop 1 of 3 roots');
    expect(text).toContain('over budget by 10 bytes');
  });

  it.each([
    [0, '0 bytes'],
    [1023, '1023 bytes'],
    [1024, '1.0 KiB (1024 bytes)'],
    [5 * 1024 ** 4, '5.0 TiB (5497558138880 bytes)'],
  ])('humanBytes(%i) = %s', (n, text) => {
    expect(humanBytes(n)).toBe(text);
  });
});
