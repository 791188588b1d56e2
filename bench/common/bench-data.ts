/**
 * The bench's requests and the CAS content they refer to, built the same way
 * in every process (deterministic), encoded once. Pure apart from hashing.
 */
import { createHash } from 'node:crypto';
import { bytesField, digestMessage, varintField } from './grpc-wire';

export interface Blob {
  hash: string;
  size: number;
  data: Buffer;
}

export function blobOf(content: Buffer | string): Blob {
  const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  return { hash: createHash('sha256').update(data).digest('hex'), size: data.length, data };
}

export function digestOf(b: { hash: string; size: number }): Buffer {
  return digestMessage(b.hash, b.size);
}

/** Digests per FindMissingBlobs request, and how many of them the upstream holds. */
export const FIND_MISSING_DIGESTS = 100;
export const FIND_MISSING_PRESENT = 50;

export interface UnaryCorpus {
  present: Blob[];
  absent: Array<{ hash: string; size: number }>;
  command: Blob;
  inputRoot: Blob;
  action: Blob;
  actionResult: Buffer;
}

export function unaryCorpus(): UnaryCorpus {
  const present = Array.from({ length: FIND_MISSING_PRESENT }, (_, i) =>
    blobOf(`bench input file ${i}\n`.repeat(1 + (i % 7))),
  );
  const absent = Array.from({ length: FIND_MISSING_DIGESTS - FIND_MISSING_PRESENT }, (_, i) => {
    const b = blobOf(`never uploaded ${i}`);
    return { hash: b.hash, size: b.size };
  });
  const command = blobOf(
    Buffer.concat([
      bytesField(1, '/bin/sh'),
      bytesField(1, '-c'),
      bytesField(1, 'cat in/* > out/result'),
      bytesField(2, Buffer.concat([bytesField(1, 'PATH'), bytesField(2, '/bin:/usr/bin')])),
      bytesField(7, 'out/result'),
    ]),
  );
  // An input root holding the present blobs as files.
  const inputRoot = blobOf(
    Buffer.concat(
      present
        .slice(0, 10)
        .map((b, i) => bytesField(1, Buffer.concat([bytesField(1, `f${i}.txt`), bytesField(2, digestOf(b))]))),
    ),
  );
  const action = blobOf(Buffer.concat([bytesField(1, digestOf(command)), bytesField(2, digestOf(inputRoot))]));
  // A typical cached result: two outputs, exit code 0, a worker name.
  const actionResult = Buffer.concat([
    bytesField(
      2,
      Buffer.concat([bytesField(1, 'out/result'), bytesField(2, digestOf(present[0]!)), varintField(4, 1)]),
    ),
    bytesField(2, Buffer.concat([bytesField(1, 'out/result.d'), bytesField(2, digestOf(present[1]!))])),
    varintField(4, 0),
    bytesField(9, bytesField(1, 'bench-worker-0')),
  ]);
  return { present, absent, command, inputRoot, action, actionResult };
}

/** FindMissingBlobsRequest with present and absent digests interleaved. */
export function findMissingRequest(c: UnaryCorpus): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < FIND_MISSING_DIGESTS; i++) {
    const d = i % 2 === 0 ? c.present[i / 2]! : c.absent[(i - 1) / 2]!;
    parts.push(bytesField(2, digestOf(d)));
  }
  return Buffer.concat(parts);
}

export function getActionResultRequest(c: UnaryCorpus): Buffer {
  return bytesField(2, digestOf(c.action));
}

export function executeRequest(action: { hash: string; size: number }): Buffer {
  return Buffer.concat([varintField(3, 1), bytesField(6, digestOf(action))]);
}

/** BatchUpdateBlobsRequest {requests = 2: {digest = 1, data = 2}}. */
export function batchUpdateRequest(blobs: readonly Blob[]): Buffer {
  return Buffer.concat(
    blobs.map((b) => bytesField(2, Buffer.concat([bytesField(1, digestOf(b)), bytesField(2, b.data)]))),
  );
}

export function updateActionResultRequest(action: Blob, result: Buffer): Buffer {
  return Buffer.concat([bytesField(2, digestOf(action)), bytesField(3, result)]);
}

/** Metadata as Bazel sends it on every call (RequestMetadata as -bin, a deadline, a user agent). */
export function clientMetadata(actionId: string): Record<string, string> {
  const requestMetadata = Buffer.concat([
    bytesField(1, Buffer.concat([bytesField(1, 'bazel'), bytesField(2, '4.2.3')])),
    bytesField(2, actionId),
    bytesField(3, 'b9a5c0a4-2a5e-4f3e-9d0b-6f1d8c3e7a21'),
    bytesField(4, '0d4bd5a2-7a43-4c8e-b6a6-1f3c9d7e5b10'),
    bytesField(5, 'Genrule'),
    bytesField(6, '//bench:target'),
  ]);
  return {
    'build.bazel.remote.execution.v2.requestmetadata-bin': requestMetadata.toString('base64'),
    'user-agent': 'grpc-java-netty/1.38.0',
    'grpc-timeout': '60S',
  };
}
