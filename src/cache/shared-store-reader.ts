/**
 * Reads the shared store for the binary cache's GET and HEAD requests:
 * narinfo of valid paths (one `nix path-info --json` per burst of requests,
 * answers cached briefly) and NAR streams (`nix store dump-path`, piped to
 * the response with backpressure; the process stops when the client goes).
 */
import type { Writable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import type { NixRunner } from '../store/nix-command';
import { nixErrorSummary } from '../store/nix-error-text';
import { CoalescingBatcher } from '../util/coalescing-batcher';
import type { NarInfo } from './narinfo';
import { narInfosFromPathInfoJson } from './store-narinfo';

export interface SharedStoreReaderOptions {
  storeUrl: string;
  runner: NixRunner;
  /** How long a narinfo answer is reused. */
  ttlMs: number;
  maxEntries: number;
}

export class SharedStoreReader {
  private readonly cache: LRUCache<string, NarInfo>;
  private readonly batcher: CoalescingBatcher<string, NarInfo>;
  private readonly lifetime = new AbortController();

  constructor(private readonly o: SharedStoreReaderOptions) {
    this.cache = new LRUCache({ max: o.maxEntries, ttl: o.ttlMs });
    this.batcher = new CoalescingBatcher((paths) => this.pathInfo(paths), { maxBatch: 500, maxConcurrent: 2 });
  }

  close(): void {
    this.lifetime.abort();
  }

  /** The narinfo of `path` when it is valid on the shared store, else undefined. */
  async narInfo(path: string): Promise<NarInfo | undefined> {
    const cached = this.cache.get(path);
    if (cached) return cached;
    const info = await this.batcher.get(path);
    if (info) this.cache.set(path, info);
    return info;
  }

  /** Forgets what is known of `path` (after it was imported). */
  forget(path: string): void {
    this.cache.delete(path);
  }

  /** Streams the NAR of `path` into `out` (not ended); rejects when Nix fails or `signal` aborts. */
  async dumpPath(path: string, out: Writable, signal: AbortSignal): Promise<void> {
    const outcome = await this.o.runner.run(
      { program: 'nix', args: ['store', 'dump-path', '--store', this.o.storeUrl, path], stdout: out },
      signal,
    );
    if (outcome.exitCode !== 0) {
      throw new ProxyError(
        Code.UNAVAILABLE,
        'NAR_DUMP_FAILED',
        `nix store dump-path ${path} failed: ${nixErrorSummary(outcome.stderr) || `exit ${outcome.exitCode ?? outcome.signal}`}`,
      );
    }
  }

  private async pathInfo(paths: string[]): Promise<Map<string, NarInfo>> {
    const outcome = await this.o.runner.run(
      { program: 'nix', args: ['path-info', '--json', '--store', this.o.storeUrl, ...paths] },
      this.lifetime.signal,
    );
    // Nix 2.8 exits non-zero when some path is not valid, yet prints the JSON for all of them.
    try {
      return narInfosFromPathInfoJson(outcome.stdout);
    } catch {
      throw new ProxyError(
        Code.UNAVAILABLE,
        'SHARED_STORE_UNAVAILABLE',
        `shared Nix store ${this.o.storeUrl} cannot be read: ${nixErrorSummary(outcome.stderr) || `nix path-info exited ${outcome.exitCode ?? outcome.signal}`}`,
      );
    }
  }
}
