import { blake3 } from '@noble/hashes/blake3';
import { bytesToHex } from '@noble/hashes/utils';
import { createHash } from 'node:crypto';
import { syntheticBytes, syntheticHash } from './synthetic-blob';

export interface Digest {
  hash: string;
  sizeBytes: number;
}

export const EMPTY_DIGEST: Digest = { hash: createHash('sha256').digest('hex'), sizeBytes: 0 };

/** A stored blob: real bytes, generated on demand, or only known to exist (a sunk write). */
export type BlobEntry =
  | { kind: 'bytes'; data: Buffer }
  | { kind: 'synthetic'; seed: number; sizeBytes: number }
  | { kind: 'sunk'; sizeBytes: number };

/** The BLAKE3 digest of `data` (for a fake that announces BLAKE3; its CAS keys blobs by hash and size whatever the function). */
export function blake3Digest(data: Uint8Array): Digest {
  return { hash: bytesToHex(blake3(data)), sizeBytes: data.length };
}

export function sha256Digest(data: Uint8Array): Digest {
  return { hash: createHash('sha256').update(data).digest('hex'), sizeBytes: data.length };
}

const keyOf = (d: Digest) => `${d.hash}/${d.sizeBytes}`;

/**
 * In-memory CAS and action cache with sha256 digests. With
 * `separateInstances` each instance name has its own stores (catches a proxy
 * that rewrites instance names); without, every name shares one.
 * The empty blob is always present.
 */
export class MemoryCas {
  private readonly blobs = new Map<string, Map<string, BlobEntry>>();
  private readonly actionResults = new Map<string, Map<string, Buffer>>();

  constructor(private readonly separateInstances: boolean) {}

  /** The name stores are kept under: the instance name, or '' when instances share. */
  instanceKey(instanceName: string): string {
    return this.separateInstances ? instanceName : '';
  }

  private scope<T>(maps: Map<string, Map<string, T>>, instanceName: string): Map<string, T> {
    const name = this.instanceKey(instanceName);
    let map = maps.get(name);
    if (!map) maps.set(name, (map = new Map()));
    return map;
  }

  put(data: Uint8Array, instanceName = ''): Digest {
    const digest = sha256Digest(data);
    this.scope(this.blobs, instanceName).set(keyOf(digest), { kind: 'bytes', data: Buffer.from(data) });
    return digest;
  }

  putEntry(digest: Digest, entry: BlobEntry, instanceName = ''): void {
    this.scope(this.blobs, instanceName).set(keyOf(digest), entry);
  }

  /** Registers a generated blob; hashing it costs one pass over its bytes (memoised per process). */
  putSynthetic(sizeBytes: number, seed: number, instanceName = ''): Digest {
    const digest = { hash: syntheticHash(seed, sizeBytes), sizeBytes };
    this.putEntry(digest, { kind: 'synthetic', seed, sizeBytes }, instanceName);
    return digest;
  }

  entry(digest: Digest, instanceName = ''): BlobEntry | undefined {
    if (digest.sizeBytes === 0 && digest.hash === EMPTY_DIGEST.hash) return { kind: 'bytes', data: Buffer.alloc(0) };
    return this.scope(this.blobs, instanceName).get(keyOf(digest));
  }

  has(digest: Digest, instanceName = ''): boolean {
    return this.entry(digest, instanceName) !== undefined;
  }

  /** Bytes [offset, offset + length) of a readable blob; undefined when absent or sunk. */
  read(digest: Digest, instanceName: string, offset = 0, length = digest.sizeBytes - offset): Buffer | undefined {
    const entry = this.entry(digest, instanceName);
    if (!entry || entry.kind === 'sunk') return undefined;
    if (entry.kind === 'bytes') return entry.data.subarray(offset, offset + length);
    return syntheticBytes(entry.seed, offset, length);
  }

  putActionResult(actionDigest: Digest, actionResult: Uint8Array, instanceName = ''): void {
    this.scope(this.actionResults, instanceName).set(keyOf(actionDigest), Buffer.from(actionResult));
  }

  getActionResult(actionDigest: Digest, instanceName = ''): Buffer | undefined {
    return this.scope(this.actionResults, instanceName).get(keyOf(actionDigest));
  }
}
