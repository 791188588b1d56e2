/**
 * What memo entries cost in heap bytes, estimated from the strings they hold.
 * Pure. The figures are upper-ish bounds of V8's layout (a string of n
 * characters takes at most 2n bytes plus a header; a Map or Set slot about 40
 * bytes), so a memo bounded by them never holds more than it says.
 */

const STRING_HEADER = 24;
const SLOT = 40;
const CONTAINER = 64;

/** A where-found text is at most this long; longer ones end in "...". */
export const MAX_WHERE_CHARS = 256;

export function stringBytes(s: string): number {
  return STRING_HEADER + 2 * s.length;
}

/** Store path -> where-found map. */
export function referencesBytes(key: string, refs: ReadonlyMap<string, string>): number {
  let total = CONTAINER + stringBytes(key);
  for (const [path, where] of refs) total += SLOT + stringBytes(path) + stringBytes(where);
  return total;
}

/** A set of store paths (the strings may be shared with other entries; counted anyway). */
export function pathSetBytes(key: string, paths: ReadonlySet<string>): number {
  let total = CONTAINER + stringBytes(key);
  for (const path of paths) total += SLOT + stringBytes(path);
  return total;
}

/** `where`, cut to MAX_WHERE_CHARS: a client's names (an environment variable's, a file's) can be megabytes. */
export function capWhere(where: string): string {
  return where.length <= MAX_WHERE_CHARS ? where : `${where.slice(0, MAX_WHERE_CHARS - 3)}...`;
}

/** Settings for an lru-cache bounded in bytes: no single entry may take more than an eighth of it. */
export function byteBound(maxBytes: number): { maxSize: number; maxEntrySize: number } {
  const maxSize = Math.max(1024, Math.floor(maxBytes));
  return { maxSize, maxEntrySize: Math.max(1, Math.floor(maxSize / 8)) };
}
