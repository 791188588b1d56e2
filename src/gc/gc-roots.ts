/**
 * This process's side of the GC-roots protocol: roots for the paths actions
 * use, last-use times on those roots, and a lease file naming the paths in
 * use so that no prune (in this process, another replica or the prune
 * command) drops them.
 *
 * Protocol (the prune side is in prune-roots.ts):
 * - A path entering use (not held yet): first the lease file is rewritten to
 *   include it, then its root is created or touched. A prune drops only roots
 *   absent from every live lease, re-reads the leases after unlinking and
 *   re-creates any root that became leased meanwhile; whichever order the two
 *   interleave in, the root exists once acquire() resolves.
 * - While a path is held (in use, or lingering after its last use), this
 *   process knows its root exists and does no I/O for it. The linger (default:
 *   the validity cache's ttl) keeps warm paths held between actions, and also
 *   covers the validity cache: a path the cache calls valid is still held, so
 *   its root cannot have been dropped and the path collected.
 * - A GC that was already running when a root appeared never read it: right
 *   after making roots, the paths are announced on the store's GC socket
 *   (gc-socket.ts), as Nix's own clients do, so that GC keeps them too.
 * - Last use: the root's mtime, moved at most once per touch interval per path
 *   (in the background on the warm path).
 * - The lease file is rewritten every refresh interval and says it expires
 *   after four of them; a crashed replica's lease thus stops counting on its
 *   own. If this process itself could not refresh for that long (a stalled
 *   disk, a suspended VM), a prune may have dropped its roots: it then checks
 *   every held root again before new acquires proceed.
 */
import type { Logger } from 'pino';
import { STORE_PATH_RE } from '../nix/store-path';
import type { Metrics } from '../metrics/metrics';
import { Semaphore } from '../util/semaphore';
import { tellRunningGc } from './gc-socket';
import type { PathLease, PathLeases } from './path-leases';
import type { RootFs } from './root-fs';
import { ensureRoot, removeLease, touchRoot, writeLease, type RootsDirSpec } from './roots-dir';

export interface GcRootsOptions {
  /** The roots directory (it and its .leases/ subdirectory are created on demand, once `mustExist` exists). */
  dir: string;
  mustExist: string;
  /** This process's id among the replicas: names its lease file. */
  replica: string;
  host: string;
  pid: number;
  fs: RootFs;
  now: () => number;
  touchIntervalMs: number;
  /** How long a path stays held after its last lease is released. */
  lingerMs: number;
  /** Interval between lease rewrites; the lease counts for four of them. */
  leaseRefreshMs: number;
  /** Held paths beyond this have their linger cut short, oldest first. */
  maxHeldPaths: number;
  /** The store's GC socket: new roots are announced to a GC already running. */
  gcSocket?: string;
  /** Longest wait for a running GC to acknowledge new roots. */
  gcSocketTimeoutMs?: number;
  logger: Logger;
  metrics: Metrics;
}

export const LEASE_TTL_REFRESHES = 4;
/** Root creations in flight at once for one acquire (each is a few syscalls; NFS latency adds up). */
const ROOT_CONCURRENCY = 16;

interface Held {
  path: string;
  refs: number;
  /** When refs is 0: the path stops being held at this time. */
  lingerUntil: number;
  /** Set while the lease write and root creation for this path are running. */
  entering?: Promise<void>;
  /** Last use recorded on the root (its mtime), as far as this process knows. */
  lastUsedMs: number;
}

export class GcRoots implements PathLeases {
  private readonly held = new Map<string, Held>();
  private readonly ttlMs: number;
  private readonly background = new Set<Promise<unknown>>();
  private timer: NodeJS.Timeout | undefined;
  private leaseWritten = false;
  private lastLeaseWriteMs: number | undefined;
  private recheck: Promise<void> | undefined;
  // Lease writes: one at a time; callers that arrive during a write are served by the next one.
  private writing = false;
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];

  private readonly spec: RootsDirSpec;

  constructor(private readonly o: GcRootsOptions) {
    this.ttlMs = o.leaseRefreshMs * LEASE_TTL_REFRESHES;
    this.spec = { dir: o.dir, mustExist: o.mustExist };
  }

  /** Starts the periodic lease refresh (unref'd: it never keeps the process alive). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.track(
        this.refresh().catch((err: unknown) =>
          this.o.logger.warn({ err }, 'refreshing GC-root lease failed; will retry'),
        ),
      );
    }, this.o.leaseRefreshMs);
    this.timer.unref();
  }

  async acquire(paths: readonly string[]): Promise<PathLease> {
    const now = this.o.now();
    const taken: Held[] = [];
    const fresh: Held[] = [];
    const waits: Promise<void>[] = [];
    const toTouch: Held[] = [];
    const seen = new Set<string>();
    for (const path of paths) {
      if (seen.has(path) || !STORE_PATH_RE.test(path)) continue;
      seen.add(path);
      let h = this.held.get(path);
      if (!h) {
        h = { path, refs: 0, lingerUntil: 0, lastUsedMs: 0 };
        this.held.set(path, h);
        fresh.push(h);
      } else if (h.entering) {
        waits.push(h.entering);
      } else if (now - h.lastUsedMs >= this.o.touchIntervalMs) {
        h.lastUsedMs = now;
        toTouch.push(h);
      }
      h.refs++;
      taken.push(h);
    }
    const lease = new HeldLease(taken, this.o.now, this.o.lingerMs);
    if (fresh.length > 0) {
      const entering = this.enter(fresh, now);
      for (const h of fresh) h.entering = entering;
      waits.push(entering);
    }
    if (this.recheck) waits.push(this.recheck);
    if (toTouch.length > 0) this.track(this.touch(toTouch));
    if (waits.length === 0) return lease;
    try {
      await Promise.all(waits);
    } catch (err) {
      lease.release();
      throw err;
    }
    return lease;
  }

  /** Every path this process holds (in use, lingering or entering): a prune here must not drop them. */
  heldPaths(): Set<string> {
    return new Set(this.held.keys());
  }

  /**
   * One refresh: forget paths whose linger ran out, rewrite the lease, and
   * re-check every root when the lease may have expired since the last write.
   */
  async refresh(): Promise<void> {
    const now = this.o.now();
    const lapsed = this.lastLeaseWriteMs !== undefined && now - this.lastLeaseWriteMs > this.ttlMs;
    for (const [path, h] of this.held) {
      if (h.refs === 0 && !h.entering && h.lingerUntil <= now) this.held.delete(path);
    }
    this.capHeld();
    if (!this.leaseWritten && this.held.size === 0) return;
    await this.flushLease();
    if (lapsed && !this.recheck) {
      this.o.logger.warn(
        { dir: this.o.dir, sinceLastWriteMs: now - this.lastLeaseWriteMs!, ttlMs: this.ttlMs },
        'GC-root lease was not refreshed within its ttl; a prune may have dropped roots in use; checking them all again',
      );
      this.recheck = this.recheckRoots().finally(() => {
        this.recheck = undefined;
      });
      await this.recheck;
    }
  }

  /** Resolves when background touches and refreshes started so far have finished (for tests and shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Stops the refresh and removes this process's lease. Call once in-flight actions have finished. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.settled();
    if (this.leaseWritten) {
      await removeLease(this.o.fs, this.o.dir, this.o.replica);
      this.leaseWritten = false;
    }
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  private async enter(fresh: Held[], now: number): Promise<void> {
    try {
      await this.flushLease();
      let created = 0;
      const limit = new Semaphore(ROOT_CONCURRENCY);
      await Promise.all(
        fresh.map((h) =>
          limit.use(async () => {
            const r = await ensureRoot(this.o.fs, this.spec, h.path, now, this.o.touchIntervalMs);
            h.lastUsedMs = r.lastUsedMs;
            if (r.result === 'created') created++;
          }),
        ),
      );
      await this.announce(fresh.map((h) => h.path));
      if (created > 0) {
        this.o.metrics.gcRoots({ added: created, dropped: 0 });
        this.o.logger.debug({ created, entered: fresh.length }, 'GC roots created');
      }
      for (const h of fresh) h.entering = undefined;
    } catch (err) {
      // Forget these paths, so the next acquire starts over rather than trusting a root that may not exist.
      for (const h of fresh) if (this.held.get(h.path) === h) this.held.delete(h.path);
      throw err;
    }
  }

  /** Tells a GC that started before these roots existed about them (roots first, then this). */
  private async announce(paths: string[]): Promise<void> {
    if (!this.o.gcSocket) return;
    const answer = await tellRunningGc(this.o.gcSocket, paths, this.o.gcSocketTimeoutMs ?? 60_000);
    if (answer === 'told')
      this.o.logger.info({ paths: paths.length }, 'told the running garbage collector about new roots');
  }

  private async touch(list: Held[]): Promise<void> {
    const now = this.o.now();
    const recreated: string[] = [];
    for (const h of list) {
      try {
        if ((await touchRoot(this.o.fs, this.spec, h.path, now)) === 'created') recreated.push(h.path);
      } catch (err) {
        this.o.logger.warn({ err, path: h.path }, 'recording last use of a GC root failed');
      }
    }
    if (recreated.length > 0) {
      await this.announce(recreated).catch((err: unknown) =>
        this.o.logger.warn({ err }, 'announcing re-created roots failed'),
      );
      this.o.metrics.gcRoots({ added: recreated.length, dropped: 0 });
      this.o.logger.warn(
        { recreated: recreated.length },
        'GC roots of held paths were missing and have been made again',
      );
    }
  }

  private async recheckRoots(): Promise<void> {
    const now = this.o.now();
    const list = [...this.held.values()].filter((h) => !h.entering);
    let created = 0;
    const limit = new Semaphore(ROOT_CONCURRENCY);
    await Promise.all(
      list.map((h) =>
        limit.use(async () => {
          const r = await ensureRoot(this.o.fs, this.spec, h.path, now, this.o.touchIntervalMs);
          h.lastUsedMs = r.lastUsedMs;
          if (r.result === 'created') created++;
        }),
      ),
    );
    await this.announce(list.map((h) => h.path));
    if (created > 0) this.o.metrics.gcRoots({ added: created, dropped: 0 });
    this.o.logger.info({ checked: list.length, recreated: created }, 'GC roots of held paths checked again');
  }

  private capHeld(): void {
    if (this.held.size <= this.o.maxHeldPaths) return;
    const lingering = [...this.held.values()]
      .filter((h) => h.refs === 0 && !h.entering)
      .sort((a, b) => a.lingerUntil - b.lingerUntil);
    for (const h of lingering) {
      if (this.held.size <= this.o.maxHeldPaths) break;
      this.held.delete(h.path);
    }
  }

  /** Resolves after a lease write that started after this call has completed. */
  private flushLease(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.writing) void this.pumpWrites();
    });
  }

  private async pumpWrites(): Promise<void> {
    this.writing = true;
    try {
      while (this.waiters.length > 0) {
        const batch = this.waiters.splice(0);
        const writtenAtMs = this.o.now();
        try {
          await writeLease(this.o.fs, this.spec, {
            replica: this.o.replica,
            host: this.o.host,
            pid: this.o.pid,
            writtenAtMs,
            ttlMs: this.ttlMs,
            paths: [...this.held.keys()],
          });
          this.leaseWritten = true;
          this.lastLeaseWriteMs = writtenAtMs;
          for (const w of batch) w.resolve();
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.writing = false;
    }
  }
}

class HeldLease implements PathLease {
  private released = false;

  constructor(
    private readonly taken: Held[],
    private readonly now: () => number,
    private readonly lingerMs: number,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    const until = this.now() + this.lingerMs;
    for (const h of this.taken) {
      h.refs--;
      if (h.refs === 0) h.lingerUntil = until;
    }
  }
}
