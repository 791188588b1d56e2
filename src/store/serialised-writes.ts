/**
 * Nix 2.8 bug: two `nix copy` processes writing overlapping paths into one
 * store often make one of them fail ("not an absolute path: 'nix-archive-1'").
 * This decorator lets one write at a time reach the store from this proxy;
 * reads are not held up. Replicas sharing a store can still collide, which
 * retrying-writes covers. Deploy it directly around the backend, inside the
 * retries, so a retry waits its turn again.
 */
import type { PathSource, SharedStore } from './shared-store';
import { Semaphore } from '../util/semaphore';

export class SerialisedWrites implements SharedStore {
  readonly url: string;
  private readonly lock = new Semaphore(1);

  constructor(private readonly inner: SharedStore) {
    this.url = inner.url;
  }

  findInvalid(paths: readonly string[], signal: AbortSignal): Promise<string[]> {
    return this.inner.findInvalid(paths, signal);
  }

  copyFrom(source: PathSource, paths: readonly string[], signal: AbortSignal): Promise<void> {
    return this.lock.use(() => this.inner.copyFrom(source, paths, signal));
  }
}
