import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { Code } from '../../src/reapi/grpc-status';
import { messageType } from '../../src/reapi/protos';
import { bytesField, digestKey, fields } from '../common/grpc-wire';
import { readUnary, respondError, respondMessage } from './grpc-responder';
import type { MemoryCas } from './memory-cas';

export type Handler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

const V2 = 'build.bazel.remote.execution.v2';
const MAX_BATCH_BYTES = 4 * 1024 * 1024;

/** FindMissingBlobs: scans the request by hand (it is the hot unary call) and copies missing digests' bytes. */
export function findMissingBlobs(cas: MemoryCas): Handler {
  return (stream) =>
    readUnary(stream, (req) => {
      const missing: Buffer[] = [];
      for (const f of fields(req)) {
        if (f.field === 2 && f.bytes && !cas.has(digestKey(f.bytes))) missing.push(bytesField(2, f.bytes));
      }
      respondMessage(stream, missing.length === 1 ? missing[0]! : Buffer.concat(missing));
    });
}

export function getActionResult(cas: MemoryCas): Handler {
  return (stream) =>
    readUnary(stream, (req) => {
      const digest = fields(req).find((f) => f.field === 2)?.bytes;
      const result = digest ? cas.getAction(digestKey(digest)) : undefined;
      if (result) respondMessage(stream, result);
      else respondError(stream, Code.NOT_FOUND, 'no action result for this digest');
    });
}

export function updateActionResult(cas: MemoryCas): Handler {
  return (stream) =>
    readUnary(stream, (req) => {
      const fs = fields(req);
      const digest = fs.find((f) => f.field === 2)?.bytes;
      const result = fs.find((f) => f.field === 3)?.bytes ?? Buffer.alloc(0);
      if (!digest) return respondError(stream, Code.INVALID_ARGUMENT, 'action_digest is required');
      const copy = Buffer.from(result);
      cas.putAction(digestKey(digest), copy);
      respondMessage(stream, copy);
    });
}

interface DigestObj {
  hash: string;
  sizeBytes: number | { toNumber(): number };
}
const num = (v: DigestObj['sizeBytes']): number => (typeof v === 'number' ? v : v.toNumber());

export function batchUpdateBlobs(cas: MemoryCas): Handler {
  const Req = messageType(`${V2}.BatchUpdateBlobsRequest`);
  const Res = messageType(`${V2}.BatchUpdateBlobsResponse`);
  return (stream) =>
    readUnary(stream, (req) => {
      const decoded = Req.decode(req) as unknown as { requests: Array<{ digest: DigestObj; data: Uint8Array }> };
      const responses = decoded.requests.map((r) => {
        const size = num(r.digest.sizeBytes);
        const data = Buffer.from(r.data);
        const hash = createHash('sha256').update(data).digest('hex');
        let status: { code: number; message: string } = { code: Code.OK, message: '' };
        if (data.length !== size || hash !== r.digest.hash)
          status = { code: Code.INVALID_ARGUMENT, message: 'digest does not match data' };
        else if (!cas.put(`${hash}/${size}`, data))
          status = { code: Code.RESOURCE_EXHAUSTED, message: 'memory upstream is full' };
        return { digest: r.digest, status };
      });
      respondMessage(stream, Res.encode({ responses }).finish());
    });
}

export function batchReadBlobs(cas: MemoryCas): Handler {
  const Req = messageType(`${V2}.BatchReadBlobsRequest`);
  const Res = messageType(`${V2}.BatchReadBlobsResponse`);
  return (stream) =>
    readUnary(stream, (req) => {
      const decoded = Req.decode(req) as unknown as { digests: DigestObj[] };
      let total = 0;
      const responses = decoded.digests.map((d) => {
        const size = num(d.sizeBytes);
        const blob = cas.get(`${d.hash}/${size}`);
        if (!blob) return { digest: d, status: { code: Code.NOT_FOUND, message: 'not in the CAS' } };
        total += size;
        return { digest: d, data: cas.read(blob, 0, size), status: { code: Code.OK } };
      });
      if (total > MAX_BATCH_BYTES)
        return respondError(stream, Code.INVALID_ARGUMENT, `batch of ${total} bytes exceeds ${MAX_BATCH_BYTES}`);
      respondMessage(stream, Res.encode({ responses }).finish());
    });
}

export function getCapabilities(): Handler {
  const caps = messageType(`${V2}.ServerCapabilities`)
    .encode({
      cacheCapabilities: {
        digestFunctions: [1],
        actionCacheUpdateCapabilities: { updateEnabled: true },
        maxBatchTotalSizeBytes: MAX_BATCH_BYTES,
        symlinkAbsolutePathStrategy: 1,
      },
      executionCapabilities: { digestFunction: 1, execEnabled: true, digestFunctions: [1] },
      lowApiVersion: { major: 2 },
      highApiVersion: { major: 2, minor: 3 },
    })
    .finish();
  return (stream) => readUnary(stream, () => respondMessage(stream, caps));
}
