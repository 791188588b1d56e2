import { createHash } from 'node:crypto';
import { missingBlobsError, type CasReadContext, type CasReader } from '../../../src/execute/cas-reader';
import { digestKey, type BlobDigest } from '../../../src/execute/digests';
import { T } from '../../../src/reapi/protos';

/** Test builders for CAS content: sha256 digests, Directory blobs, and an in-memory CAS that counts reads. */

export function sha256Digest(data: Uint8Array): BlobDigest {
  return { hash: createHash('sha256').update(data).digest('hex'), sizeBytes: data.length };
}

export const H = {
  clang: '0c3y1v9zcgbl2xn8v7ns6hblkhsb3f1z',
  bash: 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz',
  glibc: '11111111111111111111111111111111',
  python: '22222222222222222222222222222222',
  zlib: '33333333333333333333333333333333',
};
export const P = {
  clang: `/nix/store/${H.clang}-clang-16`,
  bash: `/nix/store/${H.bash}-bash-5.2`,
  glibc: `/nix/store/${H.glibc}-glibc-2.38`,
  python: `/nix/store/${H.python}-python3-3.11`,
  zlib: `/nix/store/${H.zlib}-zlib-1.3`,
};

export interface DirSpec {
  files?: Array<{ name: string; digest: BlobDigest; executable?: boolean }>;
  dirs?: Array<{ name: string; digest: BlobDigest }>;
  symlinks?: Array<{ name: string; target: string }>;
}

export function directoryBytes(spec: DirSpec): Buffer {
  return Buffer.from(
    T.Directory.encode({
      files: (spec.files ?? []).map((f) => ({ name: f.name, digest: f.digest, isExecutable: f.executable ?? false })),
      directories: (spec.dirs ?? []).map((d) => ({ name: d.name, digest: d.digest })),
      symlinks: spec.symlinks ?? [],
    }).finish(),
  );
}

export class FakeCas {
  readonly blobs = new Map<string, Buffer>();
  /** Every digest key read, in order, duplicates kept. */
  readonly reads: string[] = [];
  calls = 0;

  put(data: Uint8Array | string): BlobDigest {
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    const digest = sha256Digest(bytes);
    this.blobs.set(digestKey(digest), bytes);
    return digest;
  }

  dir(spec: DirSpec): BlobDigest {
    return this.put(directoryBytes(spec));
  }

  file(text: string): BlobDigest {
    return this.put(text);
  }

  readsOf(d: BlobDigest): number {
    return this.reads.filter((k) => k === digestKey(d)).length;
  }

  readonly fetch = async (digests: readonly BlobDigest[]): Promise<Map<string, Buffer>> => {
    this.calls++;
    const out = new Map<string, Buffer>();
    const missing: BlobDigest[] = [];
    for (const d of digests) {
      const key = digestKey(d);
      this.reads.push(key);
      const data = this.blobs.get(key);
      if (data === undefined) missing.push(d);
      else out.set(key, data);
    }
    if (missing.length > 0) throw missingBlobsError(missing);
    return out;
  };

  /** As a CasReader that also records the contexts it was called with. */
  reader(contexts: CasReadContext[] = []): CasReader {
    return {
      readBlobs: (ctx, digests) => {
        contexts.push(ctx);
        if (ctx.signal.aborted) return Promise.reject(ctx.signal.reason);
        return this.fetch(digests);
      },
    };
  }
}
