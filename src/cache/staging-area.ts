/**
 * The staging directory pushed NARs are written to before Nix imports them:
 *
 *   <dir>/tmp/        uploads being received (random names)
 *   <dir>/nar/        complete uploads, named as Nix names them (<filehash>.nar.xz),
 *                     each checked to hash to its name
 *   <dir>/imports/N/  one file:// binary cache per import (nix-cache-info, the
 *                     narinfo files, and `nar` -> ../../nar), removed afterwards
 *
 * It is emptied when the proxy starts (nothing in it is valid anywhere, so a
 * crash loses nothing) and bounded by a byte budget: an upload reserves its
 * announced size first and is refused when the budget is spent. A NAR no
 * narinfo has claimed within the TTL is removed by a periodic sweep. Upload
 * bodies are streamed to disk, never held in memory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { encodeNixBase32 } from './nix-base32';

export interface StagedNar {
  fileName: string;
  /** Absolute path of the file. */
  file: string;
  /** Bytes of the file. */
  size: number;
  /** `sha256:<base32>` of the file, as narinfo's FileHash writes it. */
  fileHash: string;
  /** When it was completed or last claimed (ms). */
  touchedAt: number;
}

export interface StagingOptions {
  dir: string;
  budgetBytes: number;
  /** Unclaimed NARs older than this are removed. */
  ttlMs: number;
  logger: Logger;
  now?: () => number;
}

/** Why an upload was not staged; `status` is the HTTP status to answer with. */
export class UploadError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class StagingArea {
  private readonly nars = new Map<string, StagedNar>();
  private readonly pins = new Map<string, number>();
  private reservedBytes = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private importSeq = 0;
  private readonly now: () => number;

  constructor(private readonly o: StagingOptions) {
    this.now = o.now ?? Date.now;
  }

  get dir(): string {
    return this.o.dir;
  }

  /** Bytes staged or reserved by uploads in progress. */
  get usedBytes(): number {
    return this.reservedBytes;
  }

  /** Empties the directory (left by an earlier run) and starts the sweep. */
  async open(): Promise<void> {
    await mkdir(this.o.dir, { recursive: true });
    for (const sub of ['tmp', 'nar', 'imports']) {
      await rm(join(this.o.dir, sub), { recursive: true, force: true });
      await mkdir(join(this.o.dir, sub), { recursive: true });
    }
    const every = Math.max(1_000, Math.min(60_000, Math.floor(this.o.ttlMs / 4)));
    this.sweepTimer = setInterval(() => void this.sweep(), every);
    this.sweepTimer.unref();
    this.o.logger.info(
      { dir: this.o.dir, budgetBytes: this.o.budgetBytes, ttlMs: this.o.ttlMs },
      'binary cache staging directory ready (emptied)',
    );
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
  }

  /** The refusal an upload of `length` bytes would get now for lack of room, if any. */
  roomProblem(length: number): UploadError | undefined {
    if (this.reservedBytes + length <= this.o.budgetBytes) return undefined;
    return new UploadError(
      507,
      `the binary cache's staging area is full (${this.reservedBytes} of ${this.o.budgetBytes} bytes in use, this upload needs ${length}); ` +
        'retry in a few minutes, or ask the operator to raise cacheStagingBudgetBytes',
    );
  }

  get(fileName: string): StagedNar | undefined {
    return this.nars.get(fileName);
  }

  /**
   * Streams `body` (announced as `length` bytes) into nar/<fileName>, hashing
   * it on the way; rejects with an UploadError when the budget is spent, the
   * body is shorter or longer than announced, sends nothing for
   * `idleTimeoutMs`, or does not hash to `expectedHash` (the name's hash).
   * Nothing of a failed upload is left on disk.
   */
  async receive(
    fileName: string,
    expectedHash: string,
    body: Readable,
    length: number,
    idleTimeoutMs: number,
  ): Promise<StagedNar> {
    // The same NAR staged already (another client pushes the same path): the body is still read to its
    // end and checked, so the client gets its answer after sending, never mid-upload, but it is not kept.
    const duplicate = this.nars.get(fileName) !== undefined;
    if (!duplicate) {
      const noRoom = this.roomProblem(length);
      if (noRoom) throw noRoom;
      this.reservedBytes += length;
    }
    const tmp = join(this.o.dir, 'tmp', randomBytes(12).toString('hex'));
    const hash = createHash('sha256');
    let received = 0;
    let idle: NodeJS.Timeout | undefined;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        if (received > length) {
          done(new UploadError(400, `the upload of nar/${fileName} is longer than its Content-Length (${length})`));
          return;
        }
        hash.update(chunk);
        armIdle();
        done(null, chunk);
      },
    });
    // The body is fed in by hand rather than through pipeline(), which would destroy the request (and
    // its socket) on a failure; the listener still has to answer it (408, 400).
    const stopFeeding = (err: UploadError): void => {
      body.unpipe(meter);
      meter.destroy(err);
    };
    const armIdle = (): void => {
      clearTimeout(idle);
      idle = setTimeout(
        () =>
          stopFeeding(
            new UploadError(
              408,
              `the upload of nar/${fileName} sent nothing for ${idleTimeoutMs} ms and was abandoned; push again`,
            ),
          ),
        idleTimeoutMs,
      );
    };
    const onAborted = (): void =>
      stopFeeding(
        new UploadError(
          400,
          `the upload of nar/${fileName} was cut off by the client after ${received} of ${length} bytes; nothing was kept, push again`,
        ),
      );
    body.once('aborted', onAborted);
    body.once('error', onAborted);
    armIdle();
    let keep = false;
    try {
      const sink = duplicate
        ? new Writable({ write: (_chunk, _enc, done) => done() })
        : createWriteStream(tmp, { flags: 'wx' });
      const writing = pipeline(meter, sink);
      body.pipe(meter);
      await writing;
      if (received !== length) {
        throw new UploadError(
          400,
          `the upload of nar/${fileName} ended after ${received} of ${length} bytes; push again`,
        );
      }
      const digest = hash.digest();
      const got = encodeNixBase32(digest);
      if (got !== expectedHash) {
        throw new UploadError(
          400,
          `nar/${fileName} does not hash to its name: its sha256 is ${got}; Nix names a NAR file by the hash of its bytes, so this upload is corrupt or was altered`,
        );
      }
      const raced = this.nars.get(fileName);
      if (raced) {
        // The same bytes arrived twice (at once, or again): keep one copy, count one.
        raced.touchedAt = this.now();
        return raced;
      }
      if (duplicate) {
        // The copy staged when this upload began was imported and removed meanwhile: the path is in the
        // shared store now or being imported, and this upload's narinfo finds it so.
        return { fileName, file: '', size: received, fileHash: `sha256:${got}`, touchedAt: this.now() };
      }
      const file = join(this.o.dir, 'nar', fileName);
      await rename(tmp, file);
      const staged: StagedNar = { fileName, file, size: received, fileHash: `sha256:${got}`, touchedAt: this.now() };
      this.nars.set(fileName, staged);
      keep = true;
      return staged;
    } catch (err) {
      if (err instanceof UploadError) throw err;
      throw new UploadError(
        500,
        `the upload of nar/${fileName} could not be staged (${(err as Error).message}); nothing was kept, push again`,
      );
    } finally {
      clearTimeout(idle);
      body.off('aborted', onAborted);
      body.off('error', onAborted);
      if (!keep && !duplicate) {
        this.reservedBytes -= length;
        await unlink(tmp).catch(() => {});
      }
    }
  }

  /** Keeps `fileName` from the sweep while an import reads it. */
  pin(fileName: string): () => void {
    this.pins.set(fileName, (this.pins.get(fileName) ?? 0) + 1);
    const staged = this.nars.get(fileName);
    if (staged) staged.touchedAt = this.now();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pins.get(fileName) ?? 1) - 1;
      if (n <= 0) this.pins.delete(fileName);
      else this.pins.set(fileName, n);
    };
  }

  /** Removes a staged NAR (after its path was imported); no-op when pinned by another import. */
  async remove(fileName: string): Promise<void> {
    if (this.pins.has(fileName)) return;
    const staged = this.nars.get(fileName);
    if (!staged) return;
    this.nars.delete(fileName);
    this.reservedBytes -= staged.size;
    await unlink(staged.file).catch(() => {});
  }

  /** A fresh file:// binary cache holding `narinfos` (hash part -> text) over the staged NARs; returns its directory and a cleanup. */
  async importCache(narinfos: ReadonlyMap<string, string>): Promise<{ dir: string; dispose: () => Promise<void> }> {
    const dir = join(this.o.dir, 'imports', String(++this.importSeq));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'nix-cache-info'), 'StoreDir: /nix/store\n');
    await symlink(join('..', '..', 'nar'), join(dir, 'nar'));
    for (const [hash, text] of narinfos) await writeFile(join(dir, `${hash}.narinfo`), text);
    return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
  }

  /** Removes unclaimed NARs older than the TTL. */
  async sweep(): Promise<number> {
    const cutoff = this.now() - this.o.ttlMs;
    let removed = 0;
    for (const staged of [...this.nars.values()]) {
      if (staged.touchedAt > cutoff || this.pins.has(staged.fileName)) continue;
      await this.remove(staged.fileName);
      removed++;
    }
    if (removed > 0)
      this.o.logger.info({ removed, usedBytes: this.reservedBytes }, 'removed staged NARs no narinfo claimed in time');
    return removed;
  }

  /** The size on disk of a staged file (tests and diagnostics). */
  async sizeOnDisk(fileName: string): Promise<number | undefined> {
    const staged = this.nars.get(fileName);
    if (!staged) return undefined;
    return (await stat(staged.file)).size;
  }
}
