/**
 * Operations on the roots directory shared by the proxy's replicas and the
 * prune command: making, touching, listing and dropping root symlinks, and
 * writing and reading lease files.
 *
 * Last use is the root symlink's own mtime, always set explicitly (lutimes)
 * from the writer's clock, so every replica and every prune compares times
 * from proxy clocks rather than a file server's. Nothing here keeps state.
 */
import { join } from 'node:path';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { Semaphore } from '../util/semaphore';
import {
  decodeLease,
  encodeLease,
  leaseFileName,
  leaseIsLive,
  LEASE_SUFFIX,
  MAX_LEASE_TTL_MS,
  type LeaseRecord,
} from './lease-file';
import { isOwnRoot, LEASES_SUBDIR, rootFileName, storePathOfEntry } from './root-entries';
import { errorCode, type RootFs } from './root-fs';
import type { RootRecord } from './prune-plan';

export const GC_REASONS = {
  ROOTS_UNAVAILABLE: 'GC_ROOTS_UNAVAILABLE',
  ROOTS_OFF: 'GC_ROOTS_OFF',
  LEASE_UNREADABLE: 'GC_LEASE_UNREADABLE',
  TOO_MANY_ROOTS: 'GC_TOO_MANY_ROOTS',
} as const;

/** Lease files larger than this are refused (a million paths is about 80 MB; no replica leases that many). */
const MAX_LEASE_FILE_BYTES = 128 * 1024 * 1024;
/** Lease files in the directory; more means something is writing junk there. */
const MAX_LEASE_FILES = 10_000;
/** Filesystem calls in flight while listing (NFS latency adds up otherwise). */
const LIST_CONCURRENCY = 32;

export function leasesDirOf(rootsDir: string): string {
  return join(rootsDir, LEASES_SUBDIR);
}

/** The roots directory and what must exist before it may be created (see RootLocation). */
export interface RootsDirSpec {
  dir: string;
  mustExist: string;
}

/** Creates `sub` (the roots directory or its leases subdirectory) after checking `mustExist` is there. */
async function makeDir(fs: RootFs, spec: RootsDirSpec, sub: string): Promise<void> {
  try {
    await fs.lstat(spec.mustExist);
  } catch (err) {
    throw new ProxyError(
      Code.UNAVAILABLE,
      GC_REASONS.ROOTS_UNAVAILABLE,
      `cannot create GC roots in ${spec.dir}: ${spec.mustExist} does not exist (${errorCode(err) ?? 'error'}); mount or create the store, or fix sharedStore/gcRootsDir`,
    );
  }
  await fs.mkdirp(sub);
}

function fsError(what: string, path: string, err: unknown): ProxyError {
  const code = errorCode(err);
  const hint =
    code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
      ? 'the proxy user may not write there; fix the permissions or set gcRootsDir'
      : code === 'ENOSPC'
        ? 'the filesystem is full'
        : 'check that the directory exists and is writable';
  return new ProxyError(
    Code.UNAVAILABLE,
    GC_REASONS.ROOTS_UNAVAILABLE,
    `${what} ${path} failed (${code ?? (err as Error)?.message ?? 'error'}): ${hint}`,
    { cause: err },
  );
}

export type RootResult = 'created' | 'touched' | 'recent';

/**
 * Makes sure `storePath` has a root and records a use at `nowMs`: creates the
 * symlink, or (when it exists) moves its mtime to `nowMs` unless it was set
 * less than `touchIntervalMs` ago. Returns which happened and the root's
 * last-use time afterwards. Rejects UNAVAILABLE.
 */
export async function ensureRoot(
  fs: RootFs,
  spec: RootsDirSpec,
  storePath: string,
  nowMs: number,
  touchIntervalMs: number,
): Promise<{ result: RootResult; lastUsedMs: number }> {
  const rootsDir = spec.dir;
  const file = join(rootsDir, rootFileName(storePath));
  // A prune may drop the root between our symlink() and lstat(); then simply make it again.
  for (let attempt = 1; ; attempt++) {
    try {
      try {
        await fs.symlink(storePath, file);
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') throw err;
        // First root on this store, or an operator cleaned up: make the directory.
        await makeDir(fs, spec, rootsDir);
        await fs.symlink(storePath, file);
      }
      await fs.lutimes(file, nowMs);
      return { result: 'created', lastUsedMs: nowMs };
    } catch (err) {
      if (err instanceof ProxyError) throw err;
      if (errorCode(err) !== 'EEXIST') throw fsError('creating GC root', file, err);
    }
    try {
      const st = await fs.lstat(file);
      if (!st.isSymbolicLink()) {
        throw new ProxyError(
          Code.UNAVAILABLE,
          GC_REASONS.ROOTS_UNAVAILABLE,
          `${file} exists but is not a symlink, so it cannot root ${storePath}; remove it (the proxy owns ${rootsDir})`,
        );
      }
      if (nowMs - st.mtimeMs < touchIntervalMs) return { result: 'recent', lastUsedMs: st.mtimeMs };
      await fs.lutimes(file, nowMs);
      return { result: 'touched', lastUsedMs: nowMs };
    } catch (err) {
      if (err instanceof ProxyError) throw err;
      if (errorCode(err) !== 'ENOENT' || attempt >= 3) throw fsError('touching GC root', file, err);
    }
  }
}

/** Records a use of an existing root; re-creates it when it is gone. */
export async function touchRoot(fs: RootFs, spec: RootsDirSpec, storePath: string, nowMs: number): Promise<RootResult> {
  const file = join(spec.dir, rootFileName(storePath));
  try {
    await fs.lutimes(file, nowMs);
    return 'touched';
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw fsError('touching GC root', file, err);
  }
  return (await ensureRoot(fs, spec, storePath, nowMs, 0)).result;
}

export type DropResult = 'dropped' | 'gone' | 'used-meanwhile';

/**
 * Unlinks the root of `storePath` unless it was used after `listedLastUsedMs`
 * (a replica touched it since the prune listed it).
 */
export async function dropRoot(
  fs: RootFs,
  rootsDir: string,
  storePath: string,
  listedLastUsedMs: number,
): Promise<DropResult> {
  const file = join(rootsDir, rootFileName(storePath));
  try {
    const st = await fs.lstat(file);
    if (!st.isSymbolicLink()) return 'gone';
    if (st.mtimeMs > listedLastUsedMs) return 'used-meanwhile';
    await fs.unlink(file);
    return 'dropped';
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return 'gone';
    throw fsError('dropping GC root', file, err);
  }
}

export interface RootListing {
  roots: RootRecord[];
  /** Entries that are not roots the proxy made (left alone). */
  foreign: string[];
}

/** The roots in the directory with their last-use times. Rejects UNAVAILABLE, RESOURCE_EXHAUSTED over `maxRoots`. */
export async function listRoots(fs: RootFs, rootsDir: string, maxRoots: number): Promise<RootListing> {
  let names: string[];
  try {
    names = await fs.readdir(rootsDir);
  } catch (err) {
    // Made with the first root: until then there is nothing to list.
    if (errorCode(err) === 'ENOENT') return { roots: [], foreign: [] };
    throw fsError('listing GC roots in', rootsDir, err);
  }
  if (names.length > maxRoots + 1) {
    throw new ProxyError(
      Code.RESOURCE_EXHAUSTED,
      GC_REASONS.TOO_MANY_ROOTS,
      `${rootsDir} holds ${names.length} entries, more than the ${maxRoots} a prune handles; prune with a shorter --unused-for from a shell loop, or remove entries by hand`,
    );
  }
  const roots: RootRecord[] = [];
  const foreign: string[] = [];
  const limit = new Semaphore(LIST_CONCURRENCY);
  await Promise.all(
    names.map((name) =>
      limit.use(async () => {
        if (name === LEASES_SUBDIR || name.startsWith('.')) return;
        const path = storePathOfEntry(name);
        if (path === undefined) {
          foreign.push(name);
          return;
        }
        const file = join(rootsDir, name);
        try {
          const st = await fs.lstat(file);
          if (!st.isSymbolicLink() || !isOwnRoot(name, await fs.readlink(file))) {
            foreign.push(name);
            return;
          }
          roots.push({ path, lastUsedMs: st.mtimeMs });
        } catch (err) {
          if (errorCode(err) === 'ENOENT') return; // dropped meanwhile
          throw fsError('reading GC root', file, err);
        }
      }),
    ),
  );
  roots.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { roots, foreign: foreign.sort() };
}

export interface LeaseReading {
  /** Paths held by live leases. */
  leased: Set<string>;
  live: string[];
  /** Lease files past their ttl (their replica stopped or hangs), with age. */
  stale: Array<{ file: string; ageMs: number }>;
}

/**
 * Reads every replica's lease. A lease file that cannot be read or parsed
 * could be protecting anything, so it stops the prune (UNAVAILABLE), unless
 * its mtime is older than the longest lease ttl: then it is stale.
 */
export async function readLeases(fs: RootFs, rootsDir: string, nowMs: number): Promise<LeaseReading> {
  const dir = leasesDirOf(rootsDir);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return { leased: new Set(), live: [], stale: [] };
    throw fsError('listing leases in', dir, err);
  }
  const files = names.filter((n) => n.endsWith(LEASE_SUFFIX));
  const reading: LeaseReading = { leased: new Set(), live: [], stale: [] };
  // Half-written leases of replicas that crashed mid-write: never read, removed once old.
  for (const name of names.filter((n) => n.endsWith(`${LEASE_SUFFIX}.tmp`)).slice(0, MAX_LEASE_FILES)) {
    const file = join(dir, name);
    if (await olderThanAnyLease(fs, file, nowMs)) reading.stale.push({ file, ageMs: Number.NaN });
  }
  if (files.length > MAX_LEASE_FILES) {
    throw new ProxyError(
      Code.RESOURCE_EXHAUSTED,
      GC_REASONS.LEASE_UNREADABLE,
      `${dir} holds ${files.length} lease files, more than ${MAX_LEASE_FILES}; remove stale ones`,
    );
  }
  for (const name of files) {
    const file = join(dir, name);
    let text: string;
    try {
      text = await fs.readFile(file, MAX_LEASE_FILE_BYTES);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') continue; // its replica shut down meanwhile
      if (await olderThanAnyLease(fs, file, nowMs)) {
        reading.stale.push({ file, ageMs: Number.NaN });
        continue;
      }
      throw new ProxyError(
        Code.UNAVAILABLE,
        GC_REASONS.LEASE_UNREADABLE,
        `cannot read lease ${file} (${errorCode(err) ?? 'error'}); fix or remove it`,
        {
          cause: err,
        },
      );
    }
    const decoded = decodeLease(text);
    if (!decoded.ok) {
      if (await olderThanAnyLease(fs, file, nowMs)) {
        reading.stale.push({ file, ageMs: Number.NaN });
        continue;
      }
      throw new ProxyError(
        Code.UNAVAILABLE,
        GC_REASONS.LEASE_UNREADABLE,
        `lease ${file} ${decoded.problem}; it may protect paths a running action needs, so nothing is dropped. Remove it if no proxy writes it`,
      );
    }
    if (leaseIsLive(decoded.lease, nowMs)) {
      reading.live.push(decoded.lease.replica);
      for (const p of decoded.lease.paths) reading.leased.add(p);
    } else {
      reading.stale.push({ file, ageMs: nowMs - decoded.lease.writtenAtMs });
    }
  }
  return reading;
}

async function olderThanAnyLease(fs: RootFs, file: string, nowMs: number): Promise<boolean> {
  try {
    return nowMs - (await fs.lstat(file)).mtimeMs > MAX_LEASE_TTL_MS;
  } catch {
    return false;
  }
}

/** Replaces a replica's lease file atomically (write, then rename). Rejects UNAVAILABLE. */
export async function writeLease(fs: RootFs, spec: RootsDirSpec, lease: LeaseRecord): Promise<void> {
  const dir = leasesDirOf(spec.dir);
  const file = join(dir, leaseFileName(lease.replica));
  const tmp = `${file}.tmp`;
  try {
    try {
      await fs.writeFile(tmp, encodeLease(lease));
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      await makeDir(fs, spec, dir);
      await fs.writeFile(tmp, encodeLease(lease));
    }
    await fs.rename(tmp, file);
  } catch (err) {
    if (err instanceof ProxyError) throw err;
    throw fsError('writing lease', file, err);
  }
}

export async function removeLease(fs: RootFs, rootsDir: string, replica: string): Promise<void> {
  try {
    await fs.unlink(join(leasesDirOf(rootsDir), leaseFileName(replica)));
  } catch (err) {
    if (errorCode(err) !== 'ENOENT')
      throw fsError('removing lease', join(leasesDirOf(rootsDir), leaseFileName(replica)), err);
  }
}
