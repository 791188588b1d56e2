/**
 * An in-memory RootFs: records every call (tests assert the warm path makes
 * none), can fail or pause chosen operations, and behaves like POSIX for the
 * cases the roots code relies on (EEXIST, ENOENT, rename replacing).
 */
import { dirname } from 'node:path';
import type { FileStat, RootFs } from '../../../src/gc/root-fs';

type Node =
  | { kind: 'dir'; mtimeMs: number }
  | { kind: 'link'; target: string; mtimeMs: number }
  | { kind: 'file'; data: string; mtimeMs: number };

export type Op =
  'symlink' | 'lstat' | 'lutimes' | 'readlink' | 'readdir' | 'readFile' | 'writeFile' | 'rename' | 'unlink' | 'mkdirp';

function fsErr(code: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${path}`), { code });
}

export class MemoryRootFs implements RootFs {
  readonly nodes = new Map<string, Node>();
  readonly calls: Array<{ op: Op; path: string }> = [];
  /** Throw this error code for an op (optionally only for paths containing `match`). */
  failures: Array<{ op: Op; code: string; match?: string }> = [];
  /** Awaited before an op runs (to interleave with other work). */
  before?: (op: Op, path: string) => Promise<void> | void;

  constructor(public clock: () => number = () => 0) {
    this.nodes.set('/', { kind: 'dir', mtimeMs: 0 });
  }

  /** Creates a directory and its parents (setup helper, not recorded). */
  addDir(path: string): void {
    for (let p = path; p !== '/' && !this.nodes.has(p); p = dirname(p)) this.nodes.set(p, { kind: 'dir', mtimeMs: 0 });
  }

  link(path: string): { target: string; mtimeMs: number } | undefined {
    const n = this.nodes.get(path);
    return n?.kind === 'link' ? n : undefined;
  }

  count(op?: Op): number {
    return op ? this.calls.filter((c) => c.op === op).length : this.calls.length;
  }

  private async enter(op: Op, path: string): Promise<void> {
    this.calls.push({ op, path });
    await this.before?.(op, path);
    const f = this.failures.find((x) => x.op === op && (x.match === undefined || path.includes(x.match)));
    if (f) throw fsErr(f.code, path);
  }

  private parentMustExist(path: string): void {
    if (this.nodes.get(dirname(path))?.kind !== 'dir') throw fsErr('ENOENT', path);
  }

  async symlink(target: string, path: string): Promise<void> {
    await this.enter('symlink', path);
    this.parentMustExist(path);
    if (this.nodes.has(path)) throw fsErr('EEXIST', path);
    this.nodes.set(path, { kind: 'link', target, mtimeMs: this.clock() });
  }

  async lstat(path: string): Promise<FileStat> {
    await this.enter('lstat', path);
    const n = this.nodes.get(path);
    if (!n) throw fsErr('ENOENT', path);
    return { mtimeMs: n.mtimeMs, isSymbolicLink: () => n.kind === 'link' };
  }

  async lutimes(path: string, timeMs: number): Promise<void> {
    await this.enter('lutimes', path);
    const n = this.nodes.get(path);
    if (!n) throw fsErr('ENOENT', path);
    n.mtimeMs = timeMs;
  }

  async readlink(path: string): Promise<string> {
    await this.enter('readlink', path);
    const n = this.nodes.get(path);
    if (!n) throw fsErr('ENOENT', path);
    if (n.kind !== 'link') throw fsErr('EINVAL', path);
    return n.target;
  }

  async readdir(dir: string): Promise<string[]> {
    await this.enter('readdir', dir);
    if (this.nodes.get(dir)?.kind !== 'dir') throw fsErr('ENOENT', dir);
    const prefix = dir.endsWith('/') ? dir : dir + '/';
    return [...this.nodes.keys()]
      .filter((p) => p.startsWith(prefix) && p !== dir && !p.slice(prefix.length).includes('/'))
      .map((p) => p.slice(prefix.length));
  }

  async readFile(path: string, maxBytes: number): Promise<string> {
    await this.enter('readFile', path);
    const n = this.nodes.get(path);
    if (!n) throw fsErr('ENOENT', path);
    if (n.kind !== 'file') throw fsErr('EISDIR', path);
    if (n.data.length > maxBytes) throw fsErr('EFBIG', path);
    return n.data;
  }

  async writeFile(path: string, data: string): Promise<void> {
    await this.enter('writeFile', path);
    this.parentMustExist(path);
    this.nodes.set(path, { kind: 'file', data, mtimeMs: this.clock() });
  }

  async rename(from: string, to: string): Promise<void> {
    await this.enter('rename', to);
    const n = this.nodes.get(from);
    if (!n) throw fsErr('ENOENT', from);
    this.parentMustExist(to);
    this.nodes.delete(from);
    this.nodes.set(to, n);
  }

  async unlink(path: string): Promise<void> {
    await this.enter('unlink', path);
    const n = this.nodes.get(path);
    if (!n) throw fsErr('ENOENT', path);
    if (n.kind === 'dir') throw fsErr('EISDIR', path);
    this.nodes.delete(path);
  }

  async mkdirp(path: string): Promise<void> {
    await this.enter('mkdirp', path);
    this.addDir(path);
  }
}
