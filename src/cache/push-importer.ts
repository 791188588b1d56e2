/**
 * Turns an accepted narinfo into a valid path on the shared store.
 *
 * A pushed path is accepted once its narinfo arrives, its NAR is staged
 * (checked against FileHash/FileSize, and against NarHash/NarSize when it is
 * uncompressed), its signature (or the pusher's `push-unsigned` right) has
 * been checked, and every reference is the path itself, valid on the shared
 * store, or accepted by an earlier push and being imported. Nix does the
 * import (`nix copy --no-recursive --from file://<staging import cache>`), so
 * Nix checks NarHash and NarSize and writes each path atomically: a proxy
 * killed mid-import leaves the path invalid, never half-valid.
 *
 * The HTTP answer does not wait for the import. Stock Nix pushes a closure
 * one path at a time, and one `nix copy` into the store per path would cost
 * tens of milliseconds each; instead imports run behind the answers, and all
 * paths accepted while one import runs share the next `nix copy`. An Execute
 * that needs a path still being imported waits for it (ImportsInFlight, read
 * by the Execute path's realiser). A failed import is logged and remembered:
 * a push that references the path is refused naming the failure, and the
 * next push of the path itself waits for its import and answers with Nix's
 * reason, so the developer sees it.
 *
 * Imports go through the same SharedStore stack as the Execute path's copies
 * (serialised writes into the store, retries of the concurrent-copy failure).
 * Each path is imported once however many clients push it at the same time.
 * An imported path is rooted like an ensured one (root first, then copy), so
 * its last use is the push, and every Execute using it renews it.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { isProxyError } from '../errors';
import type { PathLeases } from '../gc/path-leases';
import { baseName } from '../nix/store-path';
import { Code } from '../reapi/grpc-status';
import { ImportsInFlight } from '../store/imports-in-flight';
import type { PathSource, SharedStore } from '../store/shared-store';
import { NAR_EXTENSIONS } from './cache-routes';
import { formatNarInfo, type NarInfo } from './narinfo';
import { verifyNarInfo, type TrustedKey } from './narinfo-signature';
import { PushError } from './push-error';
import type { StagedNar, StagingArea } from './staging-area';

export type PushRight = 'push' | 'push-unsigned';

export interface Pusher {
  client: string;
  right: PushRight;
}

export interface PushResult {
  /** False when the path was valid already or another push of it is being imported. */
  accepted: boolean;
  message: string;
}

export interface PushImporterOptions {
  store: SharedStore;
  staging: StagingArea;
  trustedKeys: readonly TrustedKey[];
  leases: PathLeases;
  logger: Logger;
  /** Shared with the Execute path, which waits for paths being imported. */
  imports?: ImportsInFlight;
  /** Told about every path that became valid through a push (the hash index). */
  onImported?: (path: string) => void;
  /** Paths imported by one `nix copy` at most. */
  maxBatch?: number;
  /** An import starts once no push was accepted for this long (default 25 ms)... */
  gatherQuietMs?: number;
  /** ...or this long after it could have started (default 1 s). */
  gatherMaxMs?: number;
  /** How long a path seen valid (or imported) counts as valid for reference checks. */
  knownValidTtlMs?: number;
}

interface Pending {
  info: NarInfo;
  staged: StagedNar;
  client: string;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const DEFAULT_MAX_BATCH = 500;
const DEFAULT_GATHER_QUIET_MS = 25;
const DEFAULT_GATHER_MAX_MS = 1_000;
const DEFAULT_KNOWN_VALID_TTL_MS = 5 * 60_000;

export class PushImporter {
  readonly imports: ImportsInFlight;
  /** Paths seen valid on the shared store lately (imported here, or answered valid): references need no store query. */
  private readonly knownValid: LRUCache<string, true>;
  /** Why the last import of a path failed, until it is pushed again. */
  private readonly failed = new LRUCache<string, string>({ max: 10_000 });
  /** The narinfos of paths accepted and not yet imported, by hash part: the cache serves them meanwhile. */
  private readonly pendingByHash = new Map<string, NarInfo>();
  private queue: Pending[] = [];
  private draining: Promise<void> | undefined;
  private readonly lifetime = new AbortController();

  constructor(private readonly o: PushImporterOptions) {
    this.imports = o.imports ?? new ImportsInFlight();
    this.knownValid = new LRUCache<string, true>({
      max: 200_000,
      ttl: o.knownValidTtlMs ?? DEFAULT_KNOWN_VALID_TTL_MS,
    });
  }

  close(): void {
    this.lifetime.abort();
  }

  /** Paths being imported right now (accepted, not yet valid). */
  isImporting(path: string): boolean {
    return this.imports.has(path);
  }

  /** The binary cache answered a narinfo request for `path` from the store: it is valid. */
  noteValid(path: string): void {
    this.knownValid.set(path, true);
  }

  /** The narinfo of an accepted path still being imported, by its hash part. */
  pendingNarInfo(hash: string): NarInfo | undefined {
    return this.pendingByHash.get(hash);
  }

  /** Resolves when every import accepted so far has finished (successfully or not). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  async push(info: NarInfo, pusher: Pusher): Promise<PushResult> {
    const path = info.storePath;
    this.checkTrust(info, pusher);
    const earlier = this.imports.get(path);
    if (earlier) {
      // Another client's push of the same path is being imported: that import decides.
      this.discardNar(info);
      return { accepted: false, message: `${path} is being imported from a concurrent push` };
    }
    // No store query for the path itself: the client asked for its narinfo just before pushing, and an
    // import finds paths that are valid by now and copies nothing for them.
    if (this.knownValid.has(path)) return this.alreadyValid(info);
    await this.checkReferences(info);
    // Checking took a moment: another push of the path may have been accepted or finished meanwhile.
    if (this.imports.has(path)) {
      this.discardNar(info);
      return { accepted: false, message: `${path} is being imported from a concurrent push` };
    }
    if (this.knownValid.has(path)) return this.alreadyValid(info);
    const staged = this.stagedNarOf(info);
    const failedBefore = this.failed.get(path);
    const done = this.enqueue(info, staged, pusher.client);
    if (failedBefore !== undefined) {
      // Its last import failed: this push waits, so the developer sees why if it fails again.
      await done;
      return { accepted: true, message: `${path} imported into the shared store` };
    }
    return { accepted: true, message: `${path} accepted; it is being imported into the shared store` };
  }

  private checkTrust(info: NarInfo, pusher: Pusher): void {
    if (pusher.right === 'push-unsigned') return;
    const verdict = verifyNarInfo(info, this.o.trustedKeys);
    if (verdict.trusted) return;
    const keys =
      this.o.trustedKeys.length === 0
        ? 'the proxy has no trustedPublicKeys'
        : `trusted keys: ${this.o.trustedKeys.map((k) => k.name).join(', ')}`;
    throw new PushError(
      403,
      `${info.storePath} was not imported: ${verdict.why} (${keys}). Sign it when pushing ` +
        "(nix copy --to 'URL?secret-key=/path/to/secret.key' ..., or nix store sign -k KEY first) with a key the proxy trusts, " +
        `or push with a token that has the push-unsigned right (client '${pusher.client}' has push only)`,
    );
  }

  private async checkReferences(info: NarInfo): Promise<void> {
    const others = info.references.filter((r) => r !== info.storePath);
    const failedRefs = others.filter((r) => !this.imports.has(r) && this.failed.has(r));
    if (failedRefs.length > 0) {
      const r = failedRefs[0]!;
      throw new PushError(
        400,
        `${info.storePath} was not imported: its reference ${r} was pushed but could not be imported (${this.failed.get(r)}). ` +
          'Push that path again to see the whole error',
      );
    }
    const unknown = others.filter((r) => !this.imports.has(r) && !this.knownValid.has(r));
    if (unknown.length === 0) return;
    const invalid = await this.invalid(unknown);
    for (const r of unknown) if (!invalid.includes(r)) this.knownValid.set(r, true);
    // A reference accepted by a concurrent push while this one asked the store is fine too.
    const missing = invalid.filter((r) => !this.imports.has(r) && !this.knownValid.has(r));
    if (missing.length === 0) return;
    const listed = missing.slice(0, 5).join(', ') + (missing.length > 5 ? ` and ${missing.length - 5} more` : '');
    throw new PushError(
      400,
      `${info.storePath} was not imported: its references ${listed} are neither valid on the shared store nor pushed. ` +
        'Push the whole closure (nix copy --to URL PATH sends references first), then this path again',
    );
  }

  private narFileOf(info: NarInfo): string {
    return info.url.slice('nar/'.length);
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
      throw new PushError(
        400,
        `${info.storePath} was not imported: Compression is ${info.compression} but ${info.url} is named as ${NAR_EXTENSIONS[ext] ?? 'unknown'}`,
      );
    }
    if (info.fileHash !== undefined && info.fileHash !== staged.fileHash) {
      throw new PushError(
        400,
        `${info.storePath} was not imported: FileHash ${info.fileHash} does not match the uploaded ${info.url} (${staged.fileHash})`,
      );
    }
    if (info.fileSize !== undefined && info.fileSize !== staged.size) {
      throw new PushError(
        400,
        `${info.storePath} was not imported: FileSize ${info.fileSize} does not match the uploaded ${info.url} (${staged.size} bytes)`,
      );
    }
    if (info.compression === 'none') {
      // An uncompressed NAR is its own file: its hash and size are known now, not only when Nix imports it.
      if (info.narHash !== staged.fileHash) {
        throw new PushError(
          400,
          `${info.storePath} was not imported: NarHash ${info.narHash} does not match the uploaded NAR ${info.url} (${staged.fileHash})`,
        );
      }
      if (info.narSize !== staged.size) {
        throw new PushError(
          400,
          `${info.storePath} was not imported: NarSize ${info.narSize} does not match the uploaded NAR ${info.url} (${staged.size} bytes)`,
        );
      }
    }
    return staged;
  }

  private async alreadyValid(info: NarInfo): Promise<PushResult> {
    await this.root(info.storePath);
    this.discardNar(info);
    return { accepted: false, message: `${info.storePath} is valid on the shared store already` };
  }

  /** A NAR this client uploaded for a path it need not import (one an import reads is pinned, and stays). */
  private discardNar(info: NarInfo): void {
    void this.o.staging.remove(this.narFileOf(info));
  }

  private enqueue(info: NarInfo, staged: StagedNar, client: string): Promise<void> {
    const path = info.storePath;
    const done = new Promise<void>((resolve, reject) => {
      this.queue.push({ info, staged, client, resolve, reject });
    });
    this.imports.track(path, done);
    const hash = baseName(path).slice(0, 32);
    this.pendingByHash.set(hash, info);
    const unpin = this.o.staging.pin(staged.fileName);
    this.failed.delete(path);
    const forget = (): void => {
      if (this.pendingByHash.get(hash) === info) this.pendingByHash.delete(hash);
    };
    void done.then(
      () => {
        forget();
        unpin();
        // Imported: the staged NAR is not needed any more (unless another import still reads it).
        void this.o.staging.remove(staged.fileName);
      },
      (err: unknown) => {
        forget();
        unpin();
        this.failed.set(path, err instanceof Error ? err.message : String(err));
      },
    );
    if (!this.draining) {
      this.draining = this.drain().finally(() => {
        this.draining = undefined;
      });
    }
    return done;
  }

  private async drain(): Promise<void> {
    const maxBatch = this.o.maxBatch ?? DEFAULT_MAX_BATCH;
    while (this.queue.length > 0) {
      await this.gather(maxBatch);
      const batch = this.queue.splice(0, maxBatch);
      await this.importBatch(batch);
    }
  }

  /**
   * Waits while pushes keep arriving (a client sends a closure one path at a
   * time, milliseconds apart), so they share one `nix copy` (each costs a
   * process start and a store transaction): until none arrived for
   * `gatherQuietMs`, the batch is full, or `gatherMaxMs` has passed.
   */
  private async gather(maxBatch: number): Promise<void> {
    const quietMs = this.o.gatherQuietMs ?? DEFAULT_GATHER_QUIET_MS;
    const until = Date.now() + (this.o.gatherMaxMs ?? DEFAULT_GATHER_MAX_MS);
    let seen = -1;
    while (
      this.queue.length !== seen &&
      this.queue.length < maxBatch &&
      Date.now() < until &&
      !this.lifetime.signal.aborted
    ) {
      seen = this.queue.length;
      await new Promise<void>((r) => setTimeout(r, Math.max(0, Math.min(quietMs, until - Date.now()))));
    }
  }

  private async importBatch(batch: Pending[]): Promise<void> {
    const started = Date.now();
    const paths = batch.map((p) => p.info.storePath);
    this.o.logger.info(
      { paths: paths.length, first: paths[0], clients: [...new Set(batch.map((p) => p.client))] },
      'importing pushed paths into the shared store',
    );
    let failure: unknown;
    // No validity query first: `nix copy` skips paths that became valid meanwhile (another replica).
    const todo = batch;
    try {
      await this.copy(todo);
    } catch (err) {
      failure = err;
    }
    if (failure !== undefined && todo.length > 1) {
      // One bad path fails the whole `nix copy`: settle what did get in, then give each other path its own try.
      const left = new Set(await this.invalid(paths).catch(() => paths));
      for (const p of todo) if (!left.has(p.info.storePath)) this.settled(p, 'imported');
      for (const p of todo.filter((q) => left.has(q.info.storePath))) await this.importBatch([p]);
      return;
    }
    const ms = Date.now() - started;
    if (failure === undefined) {
      for (const p of todo) this.settled(p, 'imported');
      this.o.logger.info(
        { paths: todo.length, clients: [...new Set(todo.map((p) => p.client))], ms },
        'pushed paths imported into the shared store',
      );
      return;
    }
    const err = this.asPushError(failure, todo[0]!.info.storePath);
    this.o.logger.warn(
      { path: paths[0], client: todo[0]!.client, status: err.status, why: err.message, ms },
      'pushed path not imported',
    );
    for (const p of todo) p.reject(err);
  }

  private settled(p: Pending, outcome: 'imported'): void {
    this.knownValid.set(p.info.storePath, true);
    this.o.onImported?.(p.info.storePath);
    this.o.logger.debug({ path: p.info.storePath, client: p.client, outcome }, 'pushed path valid');
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
