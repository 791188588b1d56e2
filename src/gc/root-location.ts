/**
 * Where the proxy keeps its GC roots for a shared store, or why it cannot.
 *
 * Nix treats every symlink to a store path anywhere under `<state>/gcroots/`
 * as a root (it recurses into real directories, not into symlinked ones), so
 * the proxy's roots live in one directory of its own there:
 * `<state>/gcroots/nix-reapi-proxy/`. The state directory is derived from the
 * store URL the way Nix derives it; `gcRootsDir` overrides that, for a store
 * on another host whose gcroots directory is mounted here. Pure: no I/O (the
 * start-up check that the directory is usable is in create-gc-roots.ts).
 */
import type { StoreUrl } from '../store/store-url';

export const ROOTS_SUBDIR = 'nix-reapi-proxy';
const DEFAULT_STATE_DIR = '/nix/var/nix';
const DEFAULT_DAEMON_SOCKET = `${DEFAULT_STATE_DIR}/daemon-socket/socket`;

export type RootLocation =
  | {
      on: true;
      /** The directory holding the root symlinks. */
      dir: string;
      /**
       * A directory that must exist before the proxy creates `dir` (with its
       * missing parents): the store's root or state directory, or the parent
       * of gcRootsDir. Creating directories under an unmounted mount point
       * would make Nix start an empty store there.
       */
      mustExist: string;
      /**
       * The store's GC socket (Nix >= 2.4), when it is on this host and its
       * path is short enough to connect to: how a running GC learns of new roots.
       */
      gcSocket?: string;
      /** The GC socket's path when it is too long to connect to (sun_path); then `gcSocket` is unset. */
      gcSocketTooLong?: string;
      /** For the start-up log: where the directory came from. */
      basis: string;
    }
  | { on: false; why: string };

function join(a: string, b: string): string {
  return a.endsWith('/') ? a + b : `${a}/${b}`;
}

/** Unix socket paths longer than this cannot be connected to (sun_path). */
export const MAX_SOCKET_PATH_BYTES = 107;

function underState(stateDir: string, basis: string, mustExist: string): RootLocation {
  const socket = join(stateDir, 'gc-socket/socket');
  const fits = Buffer.byteLength(socket) <= MAX_SOCKET_PATH_BYTES;
  return {
    on: true,
    dir: join(join(stateDir, 'gcroots'), ROOTS_SUBDIR),
    mustExist,
    ...(fits ? { gcSocket: socket } : { gcSocketTooLong: socket }),
    basis,
  };
}

function parentOf(dir: string): string {
  const i = dir.lastIndexOf('/');
  return i <= 0 ? '/' : dir.slice(0, i);
}

export function rootLocation(store: StoreUrl, override?: string): RootLocation {
  if (override !== undefined) {
    const dir = override.length > 1 ? override.replace(/\/+$/, '') : override;
    return { on: true, dir, mustExist: parentOf(dir), basis: 'gcRootsDir setting' };
  }
  const mountHint =
    "mount the store host's gcroots directory (e.g. /nix/var/nix/gcroots/nix-reapi-proxy) on this host and set gcRootsDir to it";
  switch (store.kind) {
    case 'chroot':
      return underState(join(store.localDir!, 'nix/var/nix'), `chroot store ${store.url}`, store.localDir!);
    case 'local': {
      const { state, root } = store.params;
      if (state !== undefined) return underState(state, `state directory of ${store.url}`, state);
      if (root !== undefined) return underState(join(root, 'nix/var/nix'), `root of ${store.url}`, root);
      return underState(DEFAULT_STATE_DIR, "this host's store", DEFAULT_STATE_DIR);
    }
    case 'daemon':
      if (
        store.url === 'daemon' ||
        store.url.startsWith('daemon?') ||
        store.url === `unix://${DEFAULT_DAEMON_SOCKET}`
      ) {
        return underState(
          DEFAULT_STATE_DIR,
          "the local nix-daemon's store (default state directory)",
          DEFAULT_STATE_DIR,
        );
      }
      return {
        on: false,
        why: `${store.url} is a daemon on a non-default socket, whose state directory the proxy cannot know; set gcRootsDir to <its state dir>/gcroots/${ROOTS_SUBDIR}`,
      };
    case 'ssh':
    case 'ssh-ng':
      return {
        on: false,
        why: `${store.url} is on another host, whose gcroots directory the proxy cannot write; ${mountHint}`,
      };
    default:
      return { on: false, why: `${store.url} is a ${store.kind} store, which has no GC roots` };
  }
}
