/**
 * Nix's base-32 encoding of hashes (the `sha256:<52 chars>` of narinfo files
 * and the hash part of store paths): its own alphabet, and characters taken
 * from the end of the byte string first. Pure.
 */
import { NIXBASE32_ALPHABET } from '../nix/store-path';

const DIGIT = new Map([...NIXBASE32_ALPHABET].map((c, i) => [c, i]));

export function nixBase32Length(bytes: number): number {
  return Math.floor((bytes * 8 - 1) / 5) + 1;
}

export function encodeNixBase32(bytes: Uint8Array): string {
  const len = nixBase32Length(bytes.length);
  let out = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const c = (bytes[i]! >> j) | (i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0);
    out += NIXBASE32_ALPHABET[c & 0x1f];
  }
  return out;
}

/** The `bytes`-long byte string `text` encodes; undefined for a wrong length, a foreign character or stray high bits. */
export function decodeNixBase32(text: string, bytes: number): Buffer | undefined {
  if (text.length !== nixBase32Length(bytes)) return undefined;
  const out = Buffer.alloc(bytes);
  for (let n = 0; n < text.length; n++) {
    const digit = DIGIT.get(text[text.length - n - 1]!);
    if (digit === undefined) return undefined;
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < bytes) out[i + 1]! |= carry;
    else if (carry !== 0) return undefined;
  }
  return out;
}
