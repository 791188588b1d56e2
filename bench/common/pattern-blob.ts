import { createHash } from 'node:crypto';

/**
 * Blobs of any size whose bytes are a fixed 1 MiB pseudo-random block repeated.
 * The load generator sends them and the memory upstream keeps them as
 * "pattern of N bytes" instead of N bytes, so a 1 GiB transfer costs neither
 * process 1 GiB of memory, yet every byte is still hashed and compared.
 */
export const PATTERN_BYTES = 1024 * 1024;

let pattern: Buffer | undefined;

export function patternBlock(): Buffer {
  if (pattern) return pattern;
  const out = Buffer.allocUnsafe(PATTERN_BYTES);
  // xorshift32: deterministic, incompressible enough for transport.
  let x = 0x9e3779b9;
  for (let i = 0; i < PATTERN_BYTES; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  pattern = out;
  return out;
}

/** The pattern bytes [offset, offset + length), as a view when they do not wrap (no copy). */
export function patternSlice(offset: number, length: number): Buffer {
  const block = patternBlock();
  const start = offset % PATTERN_BYTES;
  if (start + length <= PATTERN_BYTES) return block.subarray(start, start + length);
  const out = Buffer.allocUnsafe(length);
  let filled = 0;
  let pos = start;
  while (filled < length) {
    const n = Math.min(length - filled, PATTERN_BYTES - pos);
    block.copy(out, filled, pos, pos + n);
    filled += n;
    pos = 0;
  }
  return out;
}

const digests = new Map<number, string>();

/** SHA-256 (hex) of the pattern blob of `size` bytes; memoised. */
export function patternHash(size: number): string {
  const known = digests.get(size);
  if (known) return known;
  const h = createHash('sha256');
  const block = patternBlock();
  let left = size;
  while (left > 0) {
    const n = Math.min(left, PATTERN_BYTES);
    h.update(block.subarray(0, n));
    left -= n;
  }
  const hex = h.digest('hex');
  digests.set(size, hex);
  return hex;
}
