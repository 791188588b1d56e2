/**
 * Nix creates a store or a binary cache wherever it is pointed: a chroot
 * store on an unmounted NFS path, or a file:// cache with a typo, silently
 * becomes a new empty one. Before Nix touches a store that lives in a local
 * directory, check the directory is really there.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import type { StoreUrl } from './store-url';

export type ExistsProbe = (path: string) => Promise<boolean>;

export const pathExists: ExistsProbe = async (path) => {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
};

/** Rejects UNAVAILABLE with `reason` when the store's local directory (or a file:// cache's nix-cache-info) is missing. */
export async function checkLocalDir(store: StoreUrl, role: string, reason: string, exists: ExistsProbe): Promise<void> {
  if (!store.localDir) return;
  if (store.kind === 'file') {
    const marker = join(store.localDir, 'nix-cache-info');
    if (!(await exists(marker))) {
      throw new ProxyError(
        Code.UNAVAILABLE,
        reason,
        `${role} ${store.url} is not a binary cache: ${marker} does not exist (Nix would silently create an empty cache there); fix the URL or mount the cache`,
      );
    }
    return;
  }
  if (!(await exists(store.localDir))) {
    throw new ProxyError(
      Code.UNAVAILABLE,
      reason,
      `${role} ${store.url} cannot be used: directory ${store.localDir} does not exist (Nix would create a new empty store there that nobody else sees); create or mount it, or fix the URL`,
    );
  }
}
