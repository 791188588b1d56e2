import { patternSlice } from '../common/pattern-blob';

/** A stored blob: its bytes, or (for bench pattern blobs) only its size. */
export interface StoredBlob {
  size: number;
  data: Buffer | undefined;
}

/** Bytes the memory upstream keeps for arbitrary (non-pattern) blobs, all together. */
export const MAX_STORED_BYTES = 2 * 1024 * 1024 * 1024;
/** Above this, a written blob is kept only if it is the bench pattern (see pattern-blob.ts). */
export const MAX_ARBITRARY_BLOB_BYTES = 64 * 1024 * 1024;

/**
 * The memory upstream's CAS and action cache, keyed by `hash/size`. Not a
 * cache: nothing is evicted; the bounds above refuse writes instead.
 */
export class MemoryCas {
  private readonly blobs = new Map<string, StoredBlob>();
  private readonly actions = new Map<string, Buffer>();
  private storedBytes = 0;

  has(key: string): boolean {
    return this.blobs.has(key);
  }

  get(key: string): StoredBlob | undefined {
    return this.blobs.get(key);
  }

  /** Slice [offset, offset + length) of a stored blob. */
  read(blob: StoredBlob, offset: number, length: number): Buffer {
    if (blob.data) return blob.data.subarray(offset, offset + length);
    return patternSlice(offset, length);
  }

  /** Returns false when the memory bound would be exceeded. */
  put(key: string, data: Buffer): boolean {
    if (this.blobs.has(key)) return true;
    if (this.storedBytes + data.length > MAX_STORED_BYTES) return false;
    this.storedBytes += data.length;
    this.blobs.set(key, { size: data.length, data });
    return true;
  }

  putPattern(key: string, size: number): void {
    if (!this.blobs.has(key)) this.blobs.set(key, { size, data: undefined });
  }

  getAction(key: string): Buffer | undefined {
    return this.actions.get(key);
  }

  putAction(key: string, result: Buffer): void {
    this.actions.set(key, result);
  }

  stats(): { blobs: number; storedBytes: number; actions: number } {
    return { blobs: this.blobs.size, storedBytes: this.storedBytes, actions: this.actions.size };
  }
}

/** True when `data` equals the pattern bytes at `offset` (cheap: a memcmp per chunk). */
export function matchesPattern(data: Buffer, offset: number): boolean {
  return data.equals(patternSlice(offset, data.length));
}
