/**
 * Nix store paths: `/nix/store/<hash>-<name>`, where hash is 32 characters of
 * Nix's base-32 alphabet (digits and lower-case letters without e, o, t, u) and
 * name is 1 to 211 characters of [A-Za-z0-9+._?=-], not starting with '.'.
 * Everything here is pure and strict: a string that passes `parseStorePath` is
 * safe to hand to a Nix command as one argument.
 */
export const STORE_DIR = '/nix/store';
export const STORE_PREFIX = `${STORE_DIR}/`;
export const HASH_LENGTH = 32;
export const MAX_NAME_LENGTH = 211;
export const NIXBASE32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

export const STORE_PATH_RE = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,210}$/;

export interface StorePath {
  /** The whole path, `/nix/store/<hash>-<name>`. */
  path: string;
  hash: string;
  name: string;
}

/** Parses a store path exactly (no sub-path, no trailing slash); undefined if it is not one. */
export function parseStorePath(input: string): StorePath | undefined {
  if (input.length > STORE_PREFIX.length + HASH_LENGTH + 1 + MAX_NAME_LENGTH) return undefined;
  if (!STORE_PATH_RE.test(input)) return undefined;
  const hash = input.slice(STORE_PREFIX.length, STORE_PREFIX.length + HASH_LENGTH);
  return { path: input, hash, name: input.slice(STORE_PREFIX.length + HASH_LENGTH + 1) };
}

export function isStorePath(input: string): boolean {
  return parseStorePath(input) !== undefined;
}

/**
 * Maps a path inside a store path (`/nix/store/<hash>-clang/bin/cc`) to the store
 * path itself; undefined if the input does not start with a valid store path
 * followed by '/' or its end.
 */
export function storePathOf(input: string): string | undefined {
  if (!input.startsWith(STORE_PREFIX)) return undefined;
  const slash = input.indexOf('/', STORE_PREFIX.length);
  const candidate = slash === -1 ? input : input.slice(0, slash);
  return isStorePath(candidate) ? candidate : undefined;
}

/** The directory entry name of a store path (`<hash>-<name>`). */
export function baseName(storePath: string): string {
  return storePath.slice(STORE_PREFIX.length);
}
