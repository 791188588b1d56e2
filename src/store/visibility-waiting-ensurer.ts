/**
 * Executors may see the shared store through another path than the proxy,
 * e.g. an NFS mount whose attribute cache shows a new directory seconds
 * after the copy finished. When `visibleAt` is set, an ensure resolves only
 * once `<visibleAt>/<hash>-<name>` exists for every path, polling with
 * backoff (fs.watch does not see changes made by other NFS clients). Deploy
 * it inside the validity cache so cached paths are not polled again.
 */
import { join } from 'node:path';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { baseName } from '../nix/store-path';
import { sleep } from '../util/abortable';
import type { ClosureEnsurer, EnsureReport } from './closure-ensurer';
import { pathExists, type ExistsProbe } from './local-dir-check';
import { Reasons } from './shared-store';

export interface VisibilityOptions {
  visibleAt: string;
  timeoutMs: number;
  exists?: ExistsProbe;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Probes running at once. */
  parallelism?: number;
}

export class VisibilityWaitingEnsurer implements ClosureEnsurer {
  private readonly exists: ExistsProbe;

  constructor(
    private readonly inner: ClosureEnsurer,
    private readonly o: VisibilityOptions,
  ) {
    this.exists = o.exists ?? pathExists;
  }

  async ensure(paths: readonly string[], signal: AbortSignal): Promise<EnsureReport> {
    const report = await this.inner.ensure(paths, signal);
    const t0 = Date.now();
    await this.waitVisible([...new Set(paths)], signal);
    return { ...report, visibleWaitMs: report.visibleWaitMs + (Date.now() - t0) };
  }

  private async waitVisible(paths: string[], signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.o.timeoutMs;
    let delay = this.o.initialDelayMs ?? 20;
    let pending = paths;
    for (;;) {
      pending = await this.stillMissing(pending);
      if (pending.length === 0) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ProxyError(
          Code.DEADLINE_EXCEEDED,
          Reasons.NOT_VISIBLE,
          `${pending.length} store path${pending.length === 1 ? ' is' : 's are'} valid on the shared store but did not appear under ${this.o.visibleAt} within ${this.o.timeoutMs} ms: ${pending.slice(0, 10).join(', ')}${pending.length > 10 ? ` and ${pending.length - 10} more` : ''}. Check that ${this.o.visibleAt} is the shared store's mount (visibleAt) and that the mount is healthy, or raise visibleTimeoutMs`,
        );
      }
      await sleep(Math.min(delay, left), signal, `waiting for store paths to appear under ${this.o.visibleAt}`);
      delay = Math.min(this.o.maxDelayMs ?? 1_000, delay * 2);
    }
  }

  private async stillMissing(paths: readonly string[]): Promise<string[]> {
    const missing: string[] = [];
    const width = this.o.parallelism ?? 32;
    for (let i = 0; i < paths.length; i += width) {
      const slice = paths.slice(i, i + width);
      const found = await Promise.all(slice.map((p) => this.exists(join(this.o.visibleAt, baseName(p)))));
      slice.forEach((p, j) => {
        if (!found[j]) missing.push(p);
      });
    }
    return missing;
  }
}
