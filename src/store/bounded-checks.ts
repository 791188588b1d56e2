/**
 * Every Execute asks the shared store which of its paths are valid; under a
 * burst that would be one Nix process per Execute. This decorator bounds how
 * many validity checks run at once, and checks that have to wait for a slot
 * are merged: when a slot frees, every waiting check runs as ONE Nix process
 * over the union of their paths, and each caller gets the answer for its own
 * paths. (100 Executes fanning out over one toolchain cost a handful of Nix
 * processes, not 100.) A caller that gives up stops waiting at once; the
 * merged process is cancelled only when every caller in it gave up.
 */
import { cancelledError, untilAborted } from '../util/abortable';
import type { PathSource, SharedStore } from './shared-store';

interface Waiter {
  paths: readonly string[];
  signal: AbortSignal;
  resolve: (invalid: string[]) => void;
  reject: (err: unknown) => void;
}

export class BoundedChecks implements SharedStore {
  readonly url: string;
  private active = 0;
  private waiting: Waiter[] = [];

  constructor(
    private readonly inner: SharedStore,
    private readonly maxConcurrent: number,
  ) {
    if (!(maxConcurrent >= 1)) throw new RangeError(`maxConcurrent must be at least 1, got ${maxConcurrent}`);
    this.url = inner.url;
  }

  findInvalid(paths: readonly string[], signal: AbortSignal): Promise<string[]> {
    const what = `checking paths on ${this.url}`;
    if (signal.aborted) return Promise.reject(cancelledError(what));
    if (this.active < this.maxConcurrent) {
      this.active++;
      const work = this.inner.findInvalid(paths, signal).finally(() => this.release());
      return untilAborted(work, signal, what);
    }
    return new Promise<string[]>((resolve, reject) => {
      const waiter: Waiter = { paths, signal, resolve, reject };
      const onAbort = (): void => {
        this.waiting = this.waiting.filter((w) => w !== waiter);
        reject(cancelledError(what));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      waiter.resolve = (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      };
      waiter.reject = (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      };
      this.waiting.push(waiter);
    });
  }

  copyFrom(source: PathSource, paths: readonly string[], signal: AbortSignal): Promise<void> {
    return this.inner.copyFrom(source, paths, signal);
  }

  private release(): void {
    const batch = this.waiting.filter((w) => !w.signal.aborted);
    this.waiting = [];
    if (batch.length === 0) {
      this.active--;
      return;
    }
    // The slot passes to the merged check, so `active` does not change.
    void this.runMerged(batch).finally(() => this.release());
  }

  private async runMerged(batch: Waiter[]): Promise<void> {
    const union = [...new Set(batch.flatMap((w) => w.paths))];
    // The Nix process stops only when nobody is left waiting for its answer.
    const controller = new AbortController();
    let listening = batch.length;
    const leave = (): void => {
      if (--listening === 0) controller.abort();
    };
    for (const w of batch) w.signal.addEventListener('abort', leave, { once: true });
    try {
      const invalid = new Set(await this.inner.findInvalid(union, controller.signal));
      for (const w of batch) w.resolve(w.paths.filter((p) => invalid.has(p)));
    } catch (err) {
      for (const w of batch) w.reject(err);
    } finally {
      for (const w of batch) w.signal.removeEventListener('abort', leave);
    }
  }
}
