import { LRUCache } from 'lru-cache';
import { ProxyError } from '../errors';
import { scanStorePaths } from '../nix/reference-scanner';
import { STORE_PREFIX } from '../nix/store-path';
import { Code } from '../reapi/grpc-status';
import { T } from '../reapi/protos';
import { decodeStrict } from '../reapi/strict-wire';
import { tooManyPaths, type References } from './action-references';
import { abortError } from './cas-reader';
import { digestFunctionName, digestKey, toBlobDigest, type BlobDigest } from './digests';
import { byteBound, capWhere, pathSetBytes } from './memo-size';
import { runLimited } from '../util/run-limited';

/**
 * Finds the store paths an input tree references: symlink targets, file
 * contents and node names, across the whole Merkle tree.
 *
 * The walk is breadth-first, one round of CAS reads per level (directories of
 * this level plus the files found one level up). Every distinct digest is
 * fetched and scanned at most once per walk, and a memo shared by all walks
 * maps a directory digest to the store paths of its whole subtree, so a tree
 * seen before costs no reads and a subtree shared by many directories is read
 * once. Nodes are counted as the executor would materialise them (every
 * reference), computed bottom-up per distinct digest: a "zip bomb" whose one
 * subtree is referenced exponentially often is counted in linear time and
 * refused by limits.treeNodes, not expanded.
 */

export interface TreeWalkLimits {
  treeNodes: number;
  treeDepth: number;
  storePathsPerAction: number;
  /** Files larger than this are not scanned (skipped, not failed). */
  scanFileBytes: number;
  /** File bytes scanned per walk; files past it are skipped, logged, and their directories not memoised. */
  scanTotalBytes: number;
  /** A Directory blob larger than this is refused (RESOURCE_EXHAUSTED). */
  maxDirectoryBytes: number;
}

/** What one digest contributes; for a directory, its whole subtree. */
export interface MemoEntry {
  paths: ReadonlySet<string>;
  /** Nodes counted per reference, the directory itself included. */
  nodes: number;
  /** Levels of directories below this one (0 for a directory without subdirectories). */
  height: number;
}

export type WalkMemo = LRUCache<string, MemoEntry>;

/**
 * The digest -> store paths memo, keyed by instance name, digest function and
 * digest, bounded in entries and in heap bytes (path strings are counted per
 * entry even where entries share them).
 */
export function createWalkMemo(maxEntries: number, maxBytes = 64 * 1024 * 1024): WalkMemo {
  return new LRUCache<string, MemoEntry>({
    max: Math.max(1, maxEntries),
    ...byteBound(maxBytes),
    sizeCalculation: (entry, key) => pathSetBytes(key, entry.paths),
  });
}

/** Reads blobs by digest (already bound to the client's instance, metadata and signal). */
export type FetchBlobs = (digests: readonly BlobDigest[]) => Promise<Map<string, Buffer>>;

export interface WalkOptions {
  fetch: FetchBlobs;
  /** The client's instance: what one instance's trees reference is not told to another's clients. */
  instanceName?: string;
  digestFunction: number;
  limits: TreeWalkLimits;
  signal: AbortSignal;
  /** Largest total of declared blob sizes requested at once (bounds memory). */
  chunkBytes?: number;
}

export interface TreeWalkStats {
  rounds: number;
  directoriesFetched: number;
  filesFetched: number;
  bytesScanned: number;
  memoHits: number;
  filesSkippedLarge: number;
  filesSkippedBudget: number;
}

export interface TreeWalkResult {
  /** Store path -> where in the tree it was first found. */
  references: References;
  /** Nodes of the tree counted per reference (directories, files, symlinks). */
  nodes: number;
  /** Deepest directory level below the root. */
  height: number;
  /** False when some files were skipped because limits.scanTotalBytes ran out. */
  complete: boolean;
  stats: TreeWalkStats;
}

interface ChildRef {
  name: string;
  key: string;
  digest: BlobDigest;
}

interface Decoded {
  files: ChildRef[];
  dirs: ChildRef[];
  symlinks: number;
  /** Paths in this directory's own names and symlink targets -> what held them. */
  own: Map<string, string>;
}

interface DirRec {
  key: string;
  digest: BlobDigest;
  parent: DirRec | undefined;
  name: string;
  depth: number;
  decoded?: Decoded;
  memo?: MemoEntry;
}

type FileState = 'pending' | 'scanned' | 'memo' | 'large' | 'budget';

interface FileRec {
  key: string;
  digest: BlobDigest;
  /** Where it was first seen, for messages. */
  dir: DirRec;
  name: string;
  state: FileState;
  paths: ReadonlySet<string>;
}

interface DirResult extends MemoEntry {
  complete: boolean;
}

const EMPTY: ReadonlySet<string> = new Set<string>();
const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024;
const CHUNK_DIGESTS = 4096;
const CHUNKS_IN_FLIGHT = 2;
const YIELD_EVERY = 1024;

export class TreeWalker {
  constructor(private readonly memo: WalkMemo) {}

  async walk(root: BlobDigest, options: WalkOptions): Promise<TreeWalkResult> {
    return new Walk(this.memo, options).run(root);
  }
}

class Walk {
  private readonly dirs = new Map<string, DirRec>();
  private readonly files = new Map<string, FileRec>();
  /** One key string and digest object per distinct digest: a tree of a million entries sharing a few digests holds them once. */
  private readonly interned = new Map<string, ChildRef>();
  private readonly fn: string;
  private readonly limits: TreeWalkLimits;
  private scanBudgetUsed = 0;
  private readonly stats: TreeWalkStats = {
    rounds: 0,
    directoriesFetched: 0,
    filesFetched: 0,
    bytesScanned: 0,
    memoHits: 0,
    filesSkippedLarge: 0,
    filesSkippedBudget: 0,
  };

  constructor(
    private readonly memo: WalkMemo,
    private readonly options: WalkOptions,
  ) {
    this.fn = digestFunctionName(options.digestFunction);
    this.limits = options.limits;
  }

  async run(rootDigest: BlobDigest): Promise<TreeWalkResult> {
    const root: DirRec = { key: digestKey(rootDigest), digest: rootDigest, parent: undefined, name: '', depth: 0 };
    this.dirs.set(root.key, root);
    await this.fetchLevels(root);
    const results = await this.combineBottomUp(root);
    const rootResult = results.get(root.key)!;
    if (rootResult.height > this.limits.treeDepth) throw this.depthError(undefined, rootResult.height);
    this.commit(results);
    return {
      references: this.locate(root, rootResult.paths),
      nodes: rootResult.nodes,
      height: rootResult.height,
      complete: rootResult.complete,
      stats: this.stats,
    };
  }

  /** Breadth-first: one round of reads per level; each distinct digest once. */
  private async fetchLevels(root: DirRec): Promise<void> {
    let level: DirRec[] = [root];
    let pendingFiles: FileRec[] = [];
    // A lower bound of the nodes the executor would create, to stop a huge tree early.
    let referenced = 1;
    while (level.length > 0 || pendingFiles.length > 0) {
      this.checkAbort();
      const toFetch: DirRec[] = [];
      for (const rec of level) {
        if (rec.depth > this.limits.treeDepth) throw this.depthError(rec, rec.depth);
        const hit = this.memo.get(this.memoKey('d', rec.key));
        if (hit !== undefined) {
          rec.memo = hit;
          this.stats.memoHits++;
          continue;
        }
        if (rec.digest.sizeBytes > this.limits.maxDirectoryBytes) {
          throw new ProxyError(
            Code.RESOURCE_EXHAUSTED,
            'DIRECTORY_TOO_LARGE',
            `input directory ${this.describe(rec)} (blob ${rec.key}) is ${rec.digest.sizeBytes} bytes, more than the proxy's limit of ${this.limits.maxDirectoryBytes} (max_message_bytes); split the directory or raise the limit`,
          );
        }
        toFetch.push(rec);
      }
      if (toFetch.length > 0 || pendingFiles.length > 0) {
        this.stats.rounds++;
        await this.fetchRound(toFetch, pendingFiles);
      }

      const next: DirRec[] = [];
      const nextFiles: FileRec[] = [];
      for (const rec of toFetch) {
        const decoded = rec.decoded!;
        referenced += decoded.files.length + decoded.dirs.length + decoded.symlinks;
        for (const f of decoded.files) {
          if (this.files.has(f.key)) continue;
          const file = this.newFile(rec, f);
          this.files.set(f.key, file);
          if (file.state === 'pending') nextFiles.push(file);
        }
        for (const c of decoded.dirs) {
          if (this.dirs.has(c.key)) continue;
          const child: DirRec = { key: c.key, digest: c.digest, parent: rec, name: c.name, depth: rec.depth + 1 };
          this.dirs.set(c.key, child);
          next.push(child);
        }
      }
      if (referenced > this.limits.treeNodes) throw this.nodesError(referenced);
      level = next;
      pendingFiles = nextFiles;
    }
  }

  private newFile(dir: DirRec, f: ChildRef): FileRec {
    const file: FileRec = { key: f.key, digest: f.digest, dir, name: f.name, state: 'pending', paths: EMPTY };
    const size = f.digest.sizeBytes;
    // Shorter than the shortest store path: nothing to find, nothing to read.
    if (size < STORE_PREFIX.length + 34) {
      file.state = 'scanned';
      return file;
    }
    const hit = this.memo.get(this.memoKey('f', f.key));
    if (hit !== undefined) {
      this.stats.memoHits++;
      file.state = 'memo';
      file.paths = hit.paths;
    } else if (size > this.limits.scanFileBytes) {
      this.stats.filesSkippedLarge++;
      file.state = 'large';
    } else if (this.scanBudgetUsed + size > this.limits.scanTotalBytes) {
      this.stats.filesSkippedBudget++;
      file.state = 'budget';
    } else {
      this.scanBudgetUsed += size;
    }
    return file;
  }

  /** Reads this round's blobs in bounded chunks and reduces each to what the walk keeps. */
  private async fetchRound(dirs: DirRec[], files: FileRec[]): Promise<void> {
    type Item = { dir: DirRec } | { file: FileRec };
    const items: Item[] = [...dirs.map((dir) => ({ dir })), ...files.map((file) => ({ file }))];
    const chunks: Item[][] = [];
    const chunkBytes = this.options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    let current: Item[] = [];
    let bytes = 0;
    for (const item of items) {
      const size = 'dir' in item ? item.dir.digest.sizeBytes : item.file.digest.sizeBytes;
      if (current.length > 0 && (bytes + size > chunkBytes || current.length >= CHUNK_DIGESTS)) {
        chunks.push(current);
        current = [];
        bytes = 0;
      }
      current.push(item);
      bytes += size;
    }
    if (current.length > 0) chunks.push(current);

    await runLimited(chunks, CHUNKS_IN_FLIGHT, async (chunk) => {
      const digests = chunk.map((item) => ('dir' in item ? item.dir.digest : item.file.digest));
      const blobs = await this.options.fetch(digests);
      this.checkAbort();
      for (const item of chunk) {
        const key = 'dir' in item ? item.dir.key : item.file.key;
        const blob = blobs.get(key);
        if (blob === undefined) {
          throw new ProxyError(Code.INTERNAL, 'CAS_READER_CONTRACT', `the CAS reader returned no data for ${key}`);
        }
        if ('dir' in item) {
          item.dir.decoded = this.decode(item.dir, blob);
          this.stats.directoriesFetched++;
        } else {
          item.file.paths = this.scanFile(blob);
          item.file.state = 'scanned';
          this.stats.filesFetched++;
          this.stats.bytesScanned += blob.length;
        }
      }
    });
  }

  private decode(rec: DirRec, blob: Buffer): Decoded {
    let dir: {
      files?: Array<{ name?: string; digest?: unknown }>;
      directories?: Array<{ name?: string; digest?: unknown }>;
      symlinks?: Array<{ name?: string; target?: string }>;
    };
    try {
      dir = decodeStrict(T.Directory, blob) as typeof dir;
    } catch (err) {
      throw new ProxyError(
        Code.INVALID_ARGUMENT,
        'BAD_DIRECTORY',
        `input directory ${this.describe(rec)} (blob ${rec.key}) is not a valid Directory message (${(err as Error).message}); the client uploaded a corrupt input tree`,
        { cause: err },
      );
    }
    const own = new Map<string, string>();
    const where = (name: string): string => joinPath(this.relPath(rec), name);
    const child = (n: { name?: string; digest?: unknown }, kind: string): ChildRef => {
      const name = n.name ?? '';
      const digest = toBlobDigest(
        n.digest as Parameters<typeof toBlobDigest>[0],
        this.options.digestFunction,
        `digest of ${kind} ${where(name)} in directory blob ${rec.key}`,
      );
      this.scanInto(name, `${kind} name`, own);
      const key = digestKey(digest);
      let shared = this.interned.get(key);
      if (shared === undefined) this.interned.set(key, (shared = { name: '', key, digest }));
      return { name, key: shared.key, digest: shared.digest };
    };
    const files = (dir.files ?? []).map((f) => child(f, 'input file'));
    const dirs = (dir.directories ?? []).map((d) => child(d, 'input directory'));
    for (const s of dir.symlinks ?? []) {
      this.scanInto(s.name ?? '', 'symlink name', own, s.name);
      this.scanInto(s.target ?? '', 'symlink', own, s.name);
    }
    return { files, dirs, symlinks: dir.symlinks?.length ?? 0, own };
  }

  /** Names and targets are short; most hold no store path, so test before scanning. */
  private scanInto(text: string, what: string, own: Map<string, string>, name?: string): void {
    if (!text.includes(STORE_PREFIX)) return;
    const found = new Set<string>();
    scanStorePaths(text, found);
    for (const path of found) {
      if (!own.has(path)) own.set(path, name === undefined ? what : `${what} ${name}`);
    }
    if (own.size > this.limits.storePathsPerAction) throw tooManyPaths(this.limits.storePathsPerAction);
  }

  private scanFile(blob: Buffer): ReadonlySet<string> {
    const found = new Set<string>();
    if (!scanStorePaths(blob, found, this.limits.storePathsPerAction))
      throw tooManyPaths(this.limits.storePathsPerAction);
    return found.size === 0 ? EMPTY : found;
  }

  /** Post-order over distinct directories, iterative (no recursion limit), yielding now and then. */
  private async combineBottomUp(root: DirRec): Promise<Map<string, DirResult>> {
    const results = new Map<string, DirResult>();
    const stack: Array<{ rec: DirRec; next: number }> = [{ rec: root, next: 0 }];
    const onStack = new Set<string>([root.key]);
    let steps = 0;
    while (stack.length > 0) {
      if (++steps % YIELD_EVERY === 0) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        this.checkAbort();
      }
      const top = stack[stack.length - 1]!;
      const rec = top.rec;
      if (rec.memo !== undefined) {
        results.set(rec.key, { ...rec.memo, complete: true });
        stack.pop();
        onStack.delete(rec.key);
        continue;
      }
      const children = rec.decoded!.dirs;
      let descended = false;
      while (top.next < children.length) {
        const c = children[top.next++]!;
        if (results.has(c.key)) continue;
        // Only possible when the digest function is not verified and the upstream lies.
        if (onStack.has(c.key)) {
          throw new ProxyError(
            Code.INVALID_ARGUMENT,
            'DIRECTORY_CYCLE',
            `input directory ${this.describe(rec)} contains itself (blob ${c.key}); the input tree is not a valid Merkle tree`,
          );
        }
        if (stack.length > this.limits.treeDepth) throw this.depthError(rec, stack.length);
        stack.push({ rec: this.dirs.get(c.key)!, next: 0 });
        onStack.add(c.key);
        descended = true;
        break;
      }
      if (descended) continue;
      results.set(rec.key, this.combine(rec, results));
      stack.pop();
      onStack.delete(rec.key);
    }
    return results;
  }

  private combine(rec: DirRec, results: Map<string, DirResult>): DirResult {
    const d = rec.decoded!;
    const parts: ReadonlySet<string>[] = [];
    if (d.own.size > 0) parts.push(new Set(d.own.keys()));
    let complete = true;
    let nodes = 1 + d.files.length + d.symlinks;
    let height = 0;
    for (const f of d.files) {
      const file = this.files.get(f.key)!;
      if (file.state === 'budget') complete = false;
      if (file.paths.size > 0) parts.push(file.paths);
    }
    for (const c of d.dirs) {
      const r = results.get(c.key)!;
      nodes += r.nodes;
      if (nodes > this.limits.treeNodes) throw this.nodesError(nodes);
      height = Math.max(height, r.height + 1);
      complete &&= r.complete;
      if (r.paths.size > 0) parts.push(r.paths);
    }
    if (nodes > this.limits.treeNodes) throw this.nodesError(nodes);
    return { paths: union(parts, this.limits.storePathsPerAction), nodes, height, complete };
  }

  /** Only what a finished walk fully scanned: skipped files leave their directories out. */
  private commit(results: Map<string, DirResult>): void {
    for (const rec of this.dirs.values()) {
      if (rec.decoded === undefined) continue;
      const r = results.get(rec.key);
      if (r === undefined || !r.complete) continue;
      this.memo.set(this.memoKey('d', rec.key), { paths: r.paths, nodes: r.nodes, height: r.height });
    }
    for (const file of this.files.values()) {
      if (file.state === 'scanned' && file.digest.sizeBytes >= STORE_PREFIX.length + 34) {
        this.memo.set(this.memoKey('f', file.key), { paths: file.paths, nodes: 1, height: 0 });
      }
    }
  }

  /** For each path of the tree, the shallowest place that showed it. */
  private locate(root: DirRec, all: ReadonlySet<string>): References {
    const refs: References = new Map();
    if (all.size === 0) return refs;
    if (root.memo !== undefined) {
      for (const p of all) refs.set(p, 'input tree (scanned by an earlier action)');
      return refs;
    }
    const add = (paths: Iterable<string>, where: string): void => {
      for (const p of paths) if (!refs.has(p)) refs.set(p, capWhere(where));
    };
    for (const rec of this.dirs.values()) {
      const d = rec.decoded;
      if (d === undefined) continue;
      const base = this.relPath(rec);
      for (const [p, what] of d.own) if (!refs.has(p)) refs.set(p, capWhere(`${what} in ${base || '.'}`));
      for (const f of d.files) add(this.files.get(f.key)!.paths, `input file ${joinPath(base, f.name)}`);
      for (const c of d.dirs) {
        const child = this.dirs.get(c.key)!;
        if (child.memo !== undefined) add(child.memo.paths, `input directory ${joinPath(base, c.name)}`);
      }
      if (refs.size === all.size) break;
    }
    return refs;
  }

  private relPath(rec: DirRec): string {
    const names: string[] = [];
    for (let r: DirRec | undefined = rec; r?.parent !== undefined; r = r.parent) names.push(r.name);
    return names.reverse().join('/');
  }

  private describe(rec: DirRec): string {
    const p = this.relPath(rec);
    return p === '' ? 'the input root' : `'${p}'`;
  }

  private memoKey(kind: 'd' | 'f', key: string): string {
    return `${this.fn}:${kind}:${key}:${this.options.instanceName ?? ''}`;
  }

  private checkAbort(): void {
    if (this.options.signal.aborted) throw abortError(this.options.signal, 'walking the input tree');
  }

  private nodesError(count: number): ProxyError {
    return new ProxyError(
      Code.RESOURCE_EXHAUSTED,
      'TREE_TOO_LARGE',
      `the action's input tree has more than ${this.limits.treeNodes} nodes (counted ${count} so far; limits.treeNodes); ` +
        'shrink the action inputs or raise the limit in the proxy configuration',
    );
  }

  private depthError(rec: DirRec | undefined, depth: number): ProxyError {
    const at = rec === undefined ? '' : ` (at ${this.describe(rec)})`;
    return new ProxyError(
      Code.RESOURCE_EXHAUSTED,
      'TREE_TOO_DEEP',
      `the action's input tree is deeper than ${this.limits.treeDepth} directory levels (reached ${depth}${at}; limits.treeDepth); ` +
        'flatten the action inputs or raise the limit in the proxy configuration',
    );
  }
}

/** Union that reuses the largest set when the others add nothing (the common case up a chain of directories). */
function union(parts: readonly ReadonlySet<string>[], max: number): ReadonlySet<string> {
  if (parts.length === 0) return EMPTY;
  let largest = parts[0]!;
  for (const p of parts) if (p.size > largest.size) largest = p;
  let out: Set<string> | undefined;
  for (const p of parts) {
    if (p === largest) continue;
    for (const path of p) {
      if ((out ?? largest).has(path)) continue;
      out ??= new Set(largest);
      out.add(path);
    }
  }
  const result = out ?? largest;
  if (result.size > max) throw tooManyPaths(max);
  return result;
}

function joinPath(base: string, name: string): string {
  return base === '' ? name : `${base}/${name}`;
}
