/**
 * Retries a failed copy into the shared store when the failure is worth
 * retrying (UNAVAILABLE: Nix 2.8's concurrent-copy bug when several proxy
 * replicas write one store, a daemon restarting, a dropped ssh connection),
 * with exponential backoff and jitter so replicas do not collide again in
 * step. Failures about the paths themselves, timeouts and cancellation are
 * passed on at once.
 */
import type { Logger } from 'pino';
import { isProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { sleep } from '../util/abortable';
import type { PathSource, SharedStore } from './shared-store';

export interface RetryOptions {
  /** Retries after the first attempt. */
  retries: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  logger: Logger;
  random?: () => number;
}

export class RetryingWrites implements SharedStore {
  readonly url: string;

  constructor(
    private readonly inner: SharedStore,
    private readonly o: RetryOptions,
  ) {
    this.url = inner.url;
  }

  findInvalid(paths: readonly string[], signal: AbortSignal): Promise<string[]> {
    return this.inner.findInvalid(paths, signal);
  }

  async copyFrom(source: PathSource, paths: readonly string[], signal: AbortSignal): Promise<void> {
    const base = this.o.baseDelayMs ?? 200;
    const max = this.o.maxDelayMs ?? 5_000;
    const random = this.o.random ?? Math.random;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.inner.copyFrom(source, paths, signal);
        if (attempt > 0)
          this.o.logger.info({ store: this.url, source: source.url, attempt }, 'copy succeeded on retry');
        return;
      } catch (err) {
        if (!isProxyError(err) || err.code !== Code.UNAVAILABLE || attempt >= this.o.retries) throw err;
        const delay = Math.round(Math.min(max, base * 2 ** attempt) * (0.5 + random() / 2));
        this.o.logger.warn(
          {
            store: this.url,
            source: source.url,
            paths: paths.length,
            attempt: attempt + 1,
            delayMs: delay,
            err: err.message,
          },
          'copy into shared store failed; retrying',
        );
        await sleep(delay, signal, `retrying the copy into ${this.url}`);
      }
    }
  }
}
