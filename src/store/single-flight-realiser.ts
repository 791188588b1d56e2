/**
 * Many Executes reference the same toolchain at once. This decorator makes
 * sure each missing path is realised once however many callers wait for it,
 * and that paths asked for while `maxConcurrent` realisations are already
 * running are gathered into one next batch instead of one copy per caller.
 *
 * A batch runs under the proxy's lifetime signal, not a caller's: a caller
 * that gives up stops waiting (CANCELLED), the copy goes on for the others
 * and is never left half-done. Outcomes, failures included, go to every
 * waiter and are then forgotten: the next call for a failed path tries again.
 */
import type { Logger } from 'pino';
import { untilAborted } from '../util/abortable';
import type { PathOutcome, Realiser } from './shared-store';

interface Deferred {
  promise: Promise<PathOutcome>;
  resolve(outcome: PathOutcome): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: (o: PathOutcome) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<PathOutcome>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Waiters attach their own handlers; this keeps an unwaited failure from being "unhandled".
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export interface SingleFlightOptions {
  /** Batches running at once (limits.concurrentRealisations). */
  maxConcurrent: number;
  /** Paths per batch; the rest wait for the next one. */
  maxBatch?: number;
  /** Aborted when the proxy shuts down; batches run under it. */
  lifetime: AbortSignal;
  logger: Logger;
}

export class SingleFlightRealiser implements Realiser {
  /** Every path queued or being realised, to its outcome. */
  private readonly inflight = new Map<string, Promise<PathOutcome>>();
  /** The next batch, filling while all slots are busy. */
  private queue = new Map<string, Deferred>();
  private running = 0;
  private readonly maxBatch: number;

  constructor(
    private readonly inner: Realiser,
    private readonly o: SingleFlightOptions,
  ) {
    this.maxBatch = o.maxBatch ?? 10_000;
  }

  async realise(paths: readonly string[], signal: AbortSignal): Promise<Map<string, PathOutcome>> {
    const waits: Array<{ path: string; outcome: Promise<PathOutcome>; joined: boolean }> = [];
    for (const path of new Set(paths)) {
      const existing = this.inflight.get(path);
      if (existing) {
        waits.push({ path, outcome: existing, joined: true });
        continue;
      }
      const d = deferred();
      this.inflight.set(path, d.promise);
      this.queue.set(path, d);
      waits.push({ path, outcome: d.promise, joined: false });
    }
    this.pump();
    const outcomes = await untilAborted(
      Promise.all(waits.map((w) => w.outcome)),
      signal,
      'waiting for store paths to be copied to the shared store',
    );
    return new Map(waits.map((w, i) => [w.path, withJoined(outcomes[i]!, w.joined)]));
  }

  private pump(): void {
    while (this.running < this.o.maxConcurrent && this.queue.size > 0) {
      const batch = new Map<string, Deferred>();
      for (const [path, d] of this.queue) {
        if (batch.size >= this.maxBatch) break;
        batch.set(path, d);
      }
      for (const path of batch.keys()) this.queue.delete(path);
      this.running++;
      void this.run(batch);
    }
  }

  private async run(batch: Map<string, Deferred>): Promise<void> {
    let outcomes: Map<string, PathOutcome> | undefined;
    let failure: unknown;
    try {
      outcomes = await this.inner.realise([...batch.keys()], this.o.lifetime);
    } catch (err) {
      failure = err;
    }
    // Forget before answering, so a caller arriving next starts afresh.
    for (const path of batch.keys()) this.inflight.delete(path);
    this.running--;
    for (const [path, d] of batch) {
      if (outcomes) {
        d.resolve(outcomes.get(path) ?? { ok: false, transient: true, why: 'the realisation gave no answer for it' });
      } else {
        d.reject(failure);
      }
    }
    if (failure !== undefined) this.o.logger.warn({ paths: batch.size, err: errorText(failure) }, 'realisation failed');
    this.pump();
  }
}

function withJoined(outcome: PathOutcome, joined: boolean): PathOutcome {
  return outcome.ok ? { ok: true, joined: joined || outcome.joined } : outcome;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
