import { createHash } from 'node:crypto';

/**
 * Deterministic blob contents generated on the fly, so tests can move
 * gigabytes without holding them in memory. The content is a pseudo-random
 * block of prime length P, rotated by one more byte in each successive
 * P-byte segment: no two segments within P*P bytes (~4 GiB) are equal, so a
 * dropped, duplicated or reordered chunk changes the bytes and the digest.
 * Generation is memcpy-speed.
 */

const PERIOD = 65_521; // prime, so segment boundaries never line up with 64 KiB chunks

const bases = new Map<number, Buffer>();

/** The seed's block, twice over, so any rotation is one contiguous slice. */
function doubledBase(seed: number): Buffer {
  let base = bases.get(seed);
  if (!base) {
    const block = Buffer.alloc(PERIOD);
    for (let counter = 0, offset = 0; offset < PERIOD; counter++) {
      const digest = createHash('sha256').update(`synthetic-blob:${seed}:${counter}`).digest();
      offset += digest.copy(block, offset);
    }
    base = Buffer.concat([block, block]);
    bases.set(seed, base);
  }
  return base;
}

/** Bytes [offset, offset + length) of the synthetic blob of `seed`, written into `target` (or a new Buffer). */
export function syntheticBytes(seed: number, offset: number, length: number, target?: Buffer): Buffer {
  const out = target ?? Buffer.allocUnsafe(length);
  const doubled = doubledBase(seed);
  let written = 0;
  while (written < length) {
    const position = offset + written;
    const segment = Math.floor(position / PERIOD);
    const within = position % PERIOD;
    const rotation = segment % PERIOD;
    const take = Math.min(PERIOD - within, length - written);
    doubled.copy(out, written, rotation + within, rotation + within + take);
    written += take;
  }
  return out;
}

/** The blob in chunks of `chunkBytes` (the last may be shorter); each chunk is a fresh Buffer. */
export function* syntheticChunks(
  seed: number,
  size: number,
  chunkBytes = 64 * 1024,
  startOffset = 0,
): Generator<Buffer> {
  for (let offset = startOffset; offset < size; offset += chunkBytes) {
    yield syntheticBytes(seed, offset, Math.min(chunkBytes, size - offset));
  }
}

const digests = new Map<string, string>();

/** sha256 hex of the synthetic blob, computed once per (seed, size) by streaming through it. */
export function syntheticHash(seed: number, size: number): string {
  const memoKey = `${seed}/${size}`;
  let hex = digests.get(memoKey);
  if (!hex) {
    const hash = createHash('sha256');
    const scratch = Buffer.allocUnsafe(Math.min(size, 4 * 1024 * 1024));
    for (let offset = 0; offset < size; offset += scratch.length) {
      const length = Math.min(scratch.length, size - offset);
      hash.update(syntheticBytes(seed, offset, length, scratch).subarray(0, length));
    }
    hex = hash.digest('hex');
    digests.set(memoKey, hex);
  }
  return hex;
}

/** The (seed, size) of a synthetic blob with this digest, if one was hashed in this process. */
export function findSynthetic(hash: string, size: number): number | undefined {
  for (const [memoKey, hex] of digests) {
    const [seed, memoSize] = memoKey.split('/').map(Number);
    if (hex === hash && memoSize === size) return seed;
  }
  return undefined;
}
