/**
 * Every Execute asks the shared store which of its paths are valid; under a
 * burst that would be one Nix process per Execute. This decorator bounds how
 * many validity checks run at once; the rest wait their turn (or give up when
 * their caller does).
 */
import { untilAborted } from './abortable';
import { Semaphore } from './semaphore';
import type { PathSource, SharedStore } from './shared-store';

export class BoundedChecks implements SharedStore {
  readonly url: string;
  private readonly slots: Semaphore;

  constructor(
    private readonly inner: SharedStore,
    maxConcurrent: number,
  ) {
    this.url = inner.url;
    this.slots = new Semaphore(maxConcurrent);
  }

  findInvalid(paths: readonly string[], signal: AbortSignal): Promise<string[]> {
    const work = this.slots.use(() => (signal.aborted ? Promise.resolve([]) : this.inner.findInvalid(paths, signal)));
    return untilAborted(work, signal, `checking paths on ${this.url}`);
  }

  copyFrom(source: PathSource, paths: readonly string[], signal: AbortSignal): Promise<void> {
    return this.inner.copyFrom(source, paths, signal);
  }
}
