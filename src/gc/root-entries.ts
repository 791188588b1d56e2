/**
 * Names in the roots directory. A root for `/nix/store/<hash>-<name>` is the
 * symlink `<dir>/<hash>-<name>` pointing at that logical path (for a chroot
 * store too: Nix resolves it inside the chroot), so one path has exactly one
 * root, whichever replica made it, and the name alone says which path it
 * keeps. Anything else in the directory is not ours to read or delete. Pure.
 */
import { STORE_PREFIX, STORE_PATH_RE, baseName } from '../nix/store-path';

/** Subdirectory holding one lease file per running replica; starts with '.', so no store path can collide with it. */
export const LEASES_SUBDIR = '.leases';

export function rootFileName(storePath: string): string {
  return baseName(storePath);
}

/** The store path a directory entry is the root of, if its name is a store path base name. */
export function storePathOfEntry(name: string): string | undefined {
  const path = STORE_PREFIX + name;
  return STORE_PATH_RE.test(path) ? path : undefined;
}

/** True when a symlink named `name` with target `target` is a root the proxy made. */
export function isOwnRoot(name: string, target: string): boolean {
  const path = storePathOfEntry(name);
  return path !== undefined && target === path;
}
