/**
 * Turns an accepted narinfo into a valid path on the shared store.
 *
 * A pushed path is imported once its narinfo arrives, its NAR is staged
 * (checked against FileHash/FileSize), its signature (or the pusher's
 * `push-unsigned` right) has been checked, and every reference is the path
 * itself, valid on the shared store already, or being imported by another
 * push (waited for). Nix does the import (`nix copy --no-recursive --from
 * file://<staging import cache>`), so Nix checks NarHash and NarSize and
 * writes the path atomically: a proxy killed mid-import leaves the path
 * invalid, never half-valid.
 *
 * Imports go through the same SharedStore stack as the Execute path's copies
 * (serialised writes into the store, retries of the concurrent-copy failure),
 * and pushes that are ready while another import runs share one `nix copy`.
 * Each path is imported once however many clients push it at the same time.
 * An imported path is rooted like an ensured one (root first, then copy), so
 * its last use is the push, and every Execute using it renews it.
 *
 * The HTTP answer waits for the import, so `nix copy --to` succeeds only when
 * the path is valid on the shared store, and fails with Nix's reason when not.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { isProxyError } from '../errors';
import type { PathLeases } from '../gc/path-leases';
import { baseName } from '../nix/store-path';
import { Code } from '../reapi/grpc-status';
import type { PathSource, SharedStore } from '../store/shared-store';
import { formatNarInfo, type NarInfo } from './narinfo';
import { verifyNarInfo, type TrustedKey } from './narinfo-signature';
import { PushError } from './push-error';
import type { StagingArea, StagedNar } from './staging-area';
import { NAR_EXTENSIONS } from './cache-routes';

export type PushRight = 'push' | 'push-unsigned';

export interface Pusher {
  client: string;
  right: PushRight;
}

export interface PushResult {
  /** False when the path was valid on the shared store already (nothing imported). */
  imported: boolean;
  message: string;
}

export interface PushImporterOptions {
  store: SharedStore;
  staging: StagingArea;
  trustedKeys: readonly TrustedKey[];
  leases: PathLeases;
  logger: Logger;
  /** Told about every path that became valid through a push (the hash index). */
  onImported?: (path: string) => void;
  /** Paths imported by one `nix copy` at most. */
  maxBatch?: number;
}

interface Pending {
  info: NarInfo;
  staged: StagedNar;
  client: string;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const DEFAULT_MAX_BATCH = 200;

export class PushImporter {
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Paths this importer made valid lately: a push racing the one that imported them checks the store again. */
  private readonly recentlyImported = new LRUCache<string, true>({ max: 50_000 });
  private queue: Pending[] = [];
  private draining = false;
  private readonly lifetime = new AbortController();

  constructor(private readonly o: PushImporterOptions) {}

  close(): void {
    this.lifetime.abort();
  }

  /** Paths being imported right now (their narinfo accepted, not yet valid). */
  isImporting(path: string): boolean {
    return this.inFlight.has(path);
  }

  async push(info: NarInfo, pusher: Pusher): Promise<PushResult> {
    const path = info.storePath;
    this.checkTrust(info, pusher);
    const earlier = this.inFlight.get(path);
    if (earlier) {
      // Another client pushes the same path right now: its import decides.
      const joined = await earlier.then(
        () => true,
        () => false,
      );
      if (joined) return this.alreadyValid(info, 'was imported by a concurrent push');
    }
    if ((await this.invalid([path])).length === 0) return this.alreadyValid(info, 'is valid on the shared store already');
    await this.checkReferences(info);
    // While the references were checked, another push of the same path may have started or finished
    // its import (and removed the NAR both uploaded): that import decides.
    const concurrent = this.inFlight.get(path);
    if (concurrent) {
      const joined = await concurrent.then(
        () => true,
        () => false,
      );
      if (joined) return this.alreadyValid(info, 'was imported by a concurrent push');
    }
    // Or finished it: the path is valid now (this client's NAR, of another compression, may still be staged).
    if ((this.recentlyImported.has(path) || !this.o.staging.get(this.narFileOf(info))) && (await this.invalid([path])).length === 0) {
      return this.alreadyValid(info, 'was imported by a concurrent push');
    }
    const staged = this.stagedNarOf(info);
    return this.importOnce(info, staged, pusher.client);
  }

  private async alreadyValid(info: NarInfo, why: string): Promise<PushResult> {
    await this.root(info.storePath);
    // A NAR this client uploaded for a path already valid is not needed (one an import reads is pinned).
    void this.o.staging.remove(this.narFileOf(info));
    return { imported: false, message: `${info.storePath} ${why}` };
  }

  private narFileOf(info: NarInfo): string {
    return info.url.slice('nar/'.length);
  }

  private checkTrust(info: NarInfo, pusher: Pusher): void {
    if (pusher.right === 'push-unsigned') return;
    const verdict = verifyNarInfo(info, this.o.trustedKeys);
    if (verdict.trusted) return;
    const keys = this.o.trustedKeys.length === 0 ? 'the proxy has no trustedPublicKeys' : `trusted keys: ${this.o.trustedKeys.map((k) => k.name).join(', ')}`;
    throw new PushError(
      403,
      `${info.storePath} was not imported: ${verdict.why} (${keys}). Sign it when pushing ` +
        "(nix copy --to 'URL?secret-key=/path/to/secret.key' ..., or nix store sign -k KEY first) with a key the proxy trusts, " +
        `or push with a token that has the push-unsigned right (client '${pusher.client}' has push only)`,
    );
  }

  private async checkReferences(info: NarInfo): Promise<void> {
    const others = info.references.filter((r) => r !== info.storePath);
    if (others.length === 0) return;
    await Promise.all(others.map((r) => this.inFlight.get(r)?.catch(() => undefined)));
    const invalid = await this.invalid(others);
    if (invalid.length === 0) return;
    const listed = invalid.slice(0, 5).join(', ') + (invalid.length > 5 ? ` and ${invalid.length - 5} more` : '');
    throw new PushError(
      400,
      `${info.storePath} was not imported: its references ${listed} are neither valid on the shared store nor pushed. ` +
        'Push the whole closure (nix copy --to URL PATH sends references first), then this path again',
    );
  }

  private stagedNarOf(info: NarInfo): StagedNar {
    const fileName = this.narFileOf(info);
    const staged = this.o.staging.get(fileName);
    if (!staged) {
      throw new PushError(
        400,
        `${info.storePath} was not imported: its NAR ${info.url} was not uploaded before the narinfo, or was removed unclaimed after cacheStagingTtlMs; push again`,
      );
    }
    const ext = fileName.slice(fileName.indexOf('.nar') + 4);
    if (NAR_EXTENSIONS[ext] !== info.compression) {
      throw new PushError(400, `${info.storePath} was not imported: Compression is ${info.compression} but ${info.url} is named as ${NAR_EXTENSIONS[ext] ?? 'unknown'}`);
    }
    if (info.fileHash !== undefined && info.fileHash !== staged.fileHash) {
      throw new PushError(400, `${info.storePath} was not imported: FileHash ${info.fileHash} does not match the uploaded ${info.url} (${staged.fileHash})`);
    }
    if (info.fileSize !== undefined && info.fileSize !== staged.size) {
      throw new PushError(400, `${info.storePath} was not imported: FileSize ${info.fileSize} does not match the uploaded ${info.url} (${staged.size} bytes)`);
    }
    return staged;
  }

  private importOnce(info: NarInfo, staged: StagedNar, client: string): Promise<PushResult> {
    const path = info.storePath;
    const concurrent = this.inFlight.get(path);
    if (concurrent) {
      // Another push of the path got here while this one was checking: it imports, this one waits.
      return concurrent.then(() => this.alreadyValid(info, 'was imported by a concurrent push'));
    }
    const done = new Promise<void>((resolve, reject) => {
      this.queue.push({ info, staged, client, resolve, reject });
    });
    this.inFlight.set(path, done);
    const unpin = this.o.staging.pin(staged.fileName);
    void this.drain();
    return done
      .then(() => {
        unpin();
        // Imported: the staged NAR is not needed any more (unless another import still reads it).
        void this.o.staging.remove(staged.fileName);
        return { imported: true, message: `${path} imported into the shared store` };
      })
      .finally(() => {
        unpin();
        if (this.inFlight.get(path) === done) this.inFlight.delete(path);
      });
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.o.maxBatch ?? DEFAULT_MAX_BATCH);
        await this.importBatch(batch);
      }
    } finally {
      this.draining = false;
    }
  }

  private async importBatch(batch: Pending[]): Promise<void> {
    const started = Date.now();
    const paths = batch.map((p) => p.info.storePath);
    this.o.logger.info({ paths: paths.length, first: paths[0], clients: [...new Set(batch.map((p) => p.client))] }, 'importing pushed paths into the shared store');
    let failure: unknown;
    try {
      await this.copy(batch);
    } catch (err) {
      failure = err;
    }
    if (failure !== undefined && batch.length > 1) {
      // One bad path fails the whole `nix copy`: settle what did get in, then give each other path its own try.
      const stillInvalid = new Set(await this.invalid(paths).catch(() => paths));
      const rest = batch.filter((p) => stillInvalid.has(p.info.storePath));
      for (const p of batch) if (!stillInvalid.has(p.info.storePath)) this.succeeded(p);
      for (const p of rest) await this.importBatch([p]);
      return;
    }
    const ms = Date.now() - started;
    if (failure === undefined) {
      for (const p of batch) this.succeeded(p);
      this.o.logger.info({ paths: paths.length, clients: [...new Set(batch.map((p) => p.client))], ms }, 'pushed paths imported into the shared store');
      return;
    }
    const err = this.asPushError(failure, batch[0]!.info.storePath);
    this.o.logger.warn({ path: paths[0], client: batch[0]!.client, status: err.status, why: err.message, ms }, 'pushed path not imported');
    for (const p of batch) p.reject(err);
  }

  private succeeded(p: Pending): void {
    this.recentlyImported.set(p.info.storePath, true);
    this.o.onImported?.(p.info.storePath);
    p.resolve();
  }

  private async copy(batch: Pending[]): Promise<void> {
    const narinfos = new Map(batch.map((p) => [baseName(p.info.storePath).slice(0, 32), formatNarInfo(p.info)]));
    const paths = batch.map((p) => p.info.storePath);
    const cache = await this.o.staging.importCache(narinfos);
    // Rooted before the copy, so the store host's GC cannot take a fresh path before its root exists.
    const lease = await this.o.leases.acquire(paths);
    try {
      const source: PathSource = {
        url: `file://${cache.dir}`,
        provides: async (asked) => new Set(asked),
        copyMode: { onlyListedPaths: true, signaturesChecked: true },
      };
      await this.o.store.copyFrom(source, paths, this.lifetime.signal);
    } finally {
      lease.release();
      await cache.dispose();
    }
  }

  private async root(path: string): Promise<void> {
    const lease = await this.o.leases.acquire([path]);
    lease.release();
  }

  private async invalid(paths: readonly string[]): Promise<string[]> {
    try {
      return await this.o.store.findInvalid(paths, this.lifetime.signal);
    } catch (err) {
      throw this.asPushError(err, paths[0]!);
    }
  }

  private asPushError(err: unknown, path: string): PushError {
    if (err instanceof PushError) return err;
    if (isProxyError(err)) {
      const status = err.code === Code.FAILED_PRECONDITION || err.code === Code.INVALID_ARGUMENT ? 400 : 503;
      const hint = status === 503 ? '; retry the push (nix copy skips what already arrived)' : '';
      return new PushError(status, `${path} was not imported: ${err.message}${hint}`);
    }
    return new PushError(500, `${path} was not imported: ${(err as Error).message ?? String(err)}`);
  }
}
