import { HASH_LENGTH, MAX_NAME_LENGTH, STORE_PREFIX } from './store-path';

/**
 * Finds every store path mentioned in a string or a byte buffer: each
 * `/nix/store/<32 nixbase32>-<name>`, where the name runs until the first byte
 * that cannot be in a store path name, so `/nix/store/<h>-clang/bin/cc` yields
 * `/nix/store/<h>-clang`. Lookalikes (a wrong hash length, a character outside
 * the alphabet, an empty name or one starting with '.', a name longer than Nix
 * allows) yield nothing.
 *
 * Linear in the input: one indexOf pass over the prefix, and each candidate
 * inspects at most 32 + 1 + 211 bytes past it. Works on raw bytes, so binary
 * files (ELF, archives) are scanned as they are; strings are taken as UTF-8,
 * whose multi-byte sequences never contain ASCII bytes, so no match is invented.
 */

const PREFIX = Buffer.from(STORE_PREFIX, 'latin1');
const HASH_CHAR = new Uint8Array(256);
const NAME_CHAR = new Uint8Array(256);
for (const c of '0123456789abcdfghijklmnpqrsvwxyz') HASH_CHAR[c.charCodeAt(0)] = 1;
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-._?=') NAME_CHAR[c.charCodeAt(0)] = 1;
const DASH = 0x2d;
const DOT = 0x2e;

/**
 * Adds every store path found in `input` to `into`. Stops and returns false as
 * soon as `into` would grow beyond `maxDistinct` entries; returns true otherwise.
 */
export function scanStorePaths(input: string | Uint8Array, into: Set<string>, maxDistinct = Infinity): boolean {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : toBuffer(input);
  let from = 0;
  for (;;) {
    const at = buf.indexOf(PREFIX, from);
    if (at === -1) return true;
    const hashStart = at + PREFIX.length;
    const end = matchAfterPrefix(buf, hashStart);
    if (end === -1) {
      // The prefix's last '/' may begin the next one ('/nix/store/nix/store/<h>-x').
      from = hashStart - 1;
      continue;
    }
    const path = buf.toString('latin1', at, end);
    if (!into.has(path)) {
      if (into.size >= maxDistinct) return false;
      into.add(path);
    }
    from = end;
  }
}

/** Convenience for tests and small inputs. */
export function findStorePaths(input: string | Uint8Array): string[] {
  const out = new Set<string>();
  scanStorePaths(input, out);
  return [...out];
}

/** Returns the end offset of a valid `<hash>-<name>` starting at `start`, or -1. */
function matchAfterPrefix(buf: Buffer, start: number): number {
  const dash = start + HASH_LENGTH;
  if (dash >= buf.length) return -1;
  for (let i = start; i < dash; i++) if (HASH_CHAR[buf[i]!] === 0) return -1;
  if (buf[dash] !== DASH) return -1;
  const nameStart = dash + 1;
  if (nameStart >= buf.length || NAME_CHAR[buf[nameStart]!] === 0 || buf[nameStart] === DOT) return -1;
  let end = nameStart;
  const limit = Math.min(buf.length, nameStart + MAX_NAME_LENGTH + 1);
  while (end < limit && NAME_CHAR[buf[end]!] === 1) end++;
  if (end - nameStart > MAX_NAME_LENGTH) return -1;
  return end;
}

function toBuffer(input: Uint8Array): Buffer {
  return Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
}
