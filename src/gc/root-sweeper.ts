/**
 * The proxy's periodic prune: drops roots unused for longer than the
 * retention and enforces the rooted size budget. One sweep at a time per
 * process; replicas sweeping the same directory at once is harmless (drops
 * are idempotent and every sweep honours every lease). The store's garbage
 * collector is not run here: that stays the store host's decision.
 */
import type { Logger } from 'pino';
import type { Metrics } from '../metrics/metrics';
import type { PruneReport } from './prune-roots';

export interface SweepOutcome {
  atMs: number;
  ok: boolean;
  report?: PruneReport;
  error?: unknown;
}

export interface RootSweeperOptions {
  intervalMs: number;
  sweep: (signal: AbortSignal) => Promise<PruneReport>;
  now: () => number;
  logger: Logger;
  metrics: Metrics;
  /** Told about every sweep; the place to export a last-sweep time. */
  onSweep?: (outcome: SweepOutcome) => void;
}

export class RootSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SweepOutcome> | undefined;
  private readonly lifetime = new AbortController();
  /** The last sweep's outcome (for health and tests). */
  last: SweepOutcome | undefined;

  constructor(private readonly o: RootSweeperOptions) {}

  start(): void {
    if (this.timer || this.o.intervalMs <= 0) return;
    this.timer = setInterval(() => void this.sweepNow(), this.o.intervalMs);
    this.timer.unref();
  }

  /** Runs a sweep now, or joins the one running. Never rejects. */
  sweepNow(): Promise<SweepOutcome> {
    this.running ??= this.sweepOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Stops the timer and aborts a running sweep (its Nix processes are killed). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.lifetime.abort();
    await this.running;
  }

  private async sweepOnce(): Promise<SweepOutcome> {
    const atMs = this.o.now();
    let outcome: SweepOutcome;
    try {
      const report = await this.o.sweep(this.lifetime.signal);
      outcome = { atMs, ok: true, report };
      this.o.metrics.gcRoots({
        added: report.restored.length,
        dropped: report.dropped.length,
        rooted: report.rootsAfter,
        rootedBytes: report.rootedBytesAfter,
      });
    } catch (error) {
      outcome = { atMs, ok: false, error };
      if (!this.lifetime.signal.aborted) {
        this.o.logger.warn({ err: error }, 'sweep of unused GC roots failed; roots are kept until the next sweep');
      }
    }
    this.last = outcome;
    this.o.onSweep?.(outcome);
    return outcome;
  }
}
