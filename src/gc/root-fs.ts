/**
 * The few filesystem operations GC roots need, behind an interface so tests
 * can count them (the warm Execute path must make none) and inject failures.
 * `nodeRootFs` is the real one.
 */
import { constants } from 'node:fs';
import { lstat, lutimes, mkdir, open, readdir, readlink, rename, symlink, unlink, writeFile } from 'node:fs/promises';

export interface FileStat {
  mtimeMs: number;
  isSymbolicLink(): boolean;
}

/** Errors are Node's (with `code`: ENOENT, EEXIST, EACCES, ...). */
export interface RootFs {
  symlink(target: string, path: string): Promise<void>;
  lstat(path: string): Promise<FileStat>;
  /** Sets a symlink's own times (not its target's). */
  lutimes(path: string, timeMs: number): Promise<void>;
  readlink(path: string): Promise<string>;
  readdir(dir: string): Promise<string[]>;
  /** Rejects with code EFBIG when the file is larger than `maxBytes`. */
  readFile(path: string, maxBytes: number): Promise<string>;
  writeFile(path: string, data: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Creates the directory and missing parents; fine when it exists. */
  mkdirp(path: string): Promise<void>;
}

export function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

export const nodeRootFs: RootFs = {
  symlink: (target, path) => symlink(target, path),
  lstat: (path) => lstat(path),
  lutimes: (path, timeMs) => lutimes(path, new Date(timeMs), new Date(timeMs)),
  readlink: (path) => readlink(path),
  readdir: (dir) => readdir(dir),
  async readFile(path, maxBytes) {
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const { size } = await handle.stat();
      if (size > maxBytes) {
        throw Object.assign(new Error(`${path} is ${size} bytes, more than ${maxBytes}`), { code: 'EFBIG' });
      }
      return await handle.readFile({ encoding: 'utf8' });
    } finally {
      await handle.close();
    }
  },
  writeFile: (path, data) => writeFile(path, data, { mode: 0o644 }),
  rename: (from, to) => rename(from, to),
  unlink: (path) => unlink(path),
  mkdirp: async (path) => {
    await mkdir(path, { recursive: true });
  },
};
