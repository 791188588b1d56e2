import { createHash, randomUUID, type Hash } from 'node:crypto';
import protobuf from 'protobufjs';
import { Code } from '../../../src/reapi/grpc-status';
import { GrpcStatusError } from './grpc-status-error';
import { MemoryCas, type Digest } from './memory-cas';
import { MSG, any, decode, encode, rawField, writeRawMessages, type Obj } from './messages';
import { parseResourceName } from './resource-name';
import { findSynthetic } from './synthetic-blob';

/**
 * Default behaviour of every method the fake upstream serves: a small but
 * real REAPI server (CAS, action cache, execution, operations, remote asset).
 * Handlers take raw request bytes and yield raw response messages; scripting
 * and transport live in the runner.
 */

export type MethodKind = 'unary' | 'serverStream' | 'clientStream';

export interface HandlerContext {
  /** The single request message (unary and server-streaming methods). */
  request: Buffer;
  /** Request messages as they arrive (client-streaming methods). */
  requests: AsyncIterable<Buffer> | Iterable<Buffer>;
  signal: AbortSignal;
}

export interface MethodDef {
  path: string;
  kind: MethodKind;
  handle(ctx: HandlerContext): Iterable<Buffer> | AsyncIterable<Buffer>;
}

const RE = 'build.bazel.remote.execution.v2';
const ASSET = 'build.bazel.remote.asset.v1';

/** Full method paths of everything the fake serves. */
export const PATHS = {
  Execute: `/${RE}.Execution/Execute`,
  WaitExecution: `/${RE}.Execution/WaitExecution`,
  GetActionResult: `/${RE}.ActionCache/GetActionResult`,
  UpdateActionResult: `/${RE}.ActionCache/UpdateActionResult`,
  FindMissingBlobs: `/${RE}.ContentAddressableStorage/FindMissingBlobs`,
  BatchUpdateBlobs: `/${RE}.ContentAddressableStorage/BatchUpdateBlobs`,
  BatchReadBlobs: `/${RE}.ContentAddressableStorage/BatchReadBlobs`,
  GetTree: `/${RE}.ContentAddressableStorage/GetTree`,
  GetCapabilities: `/${RE}.Capabilities/GetCapabilities`,
  Read: '/google.bytestream.ByteStream/Read',
  Write: '/google.bytestream.ByteStream/Write',
  QueryWriteStatus: '/google.bytestream.ByteStream/QueryWriteStatus',
  ListOperations: '/google.longrunning.Operations/ListOperations',
  GetOperation: '/google.longrunning.Operations/GetOperation',
  DeleteOperation: '/google.longrunning.Operations/DeleteOperation',
  CancelOperation: '/google.longrunning.Operations/CancelOperation',
  WaitOperation: '/google.longrunning.Operations/WaitOperation',
  FetchBlob: `/${ASSET}.Fetch/FetchBlob`,
  FetchDirectory: `/${ASSET}.Fetch/FetchDirectory`,
  PushBlob: `/${ASSET}.Push/PushBlob`,
  PushDirectory: `/${ASSET}.Push/PushDirectory`,
} as const;

export type MethodPath = (typeof PATHS)[keyof typeof PATHS];

/** Like Bazel's remote worker: SHA256, the old single execution digest_function, API 2.0-2.2. */
export const DEFAULT_CAPABILITIES: Obj = {
  cacheCapabilities: {
    digestFunctions: [1],
    actionCacheUpdateCapabilities: { updateEnabled: true },
    maxBatchTotalSizeBytes: 4 * 1024 * 1024,
  },
  executionCapabilities: { digestFunction: 1, execEnabled: true },
  lowApiVersion: { major: 2 },
  highApiVersion: { major: 2, minor: 2 },
};

export interface ServiceOptions {
  capabilities: Obj;
  /** true: every ByteStream write is hashed, not stored; a number: only blobs at least this large. */
  sinkWrites: boolean | number;
  readChunkBytes: number;
  treePageSize: number;
  /** The ActionResult (protobufjs object) an Execute finishes with. */
  actionResult: (request: Obj) => Obj;
}

export interface CompletedWrite {
  resourceName: string;
  instanceName: string;
  digest: Digest;
  /** The bytes were hashed and dropped (sinkWrites). */
  sunk: boolean;
}

interface Upload {
  instanceName: string;
  digest: Digest;
  received: number;
  hash: Hash;
  /** null when sinking. */
  chunks: Buffer[] | null;
  complete: boolean;
}

const EMPTY = Buffer.alloc(0);
const STAGE = { EXECUTING: 3, COMPLETED: 4 };

function digestOf(obj: Obj | undefined): Digest {
  return { hash: String(obj?.hash ?? ''), sizeBytes: Number(obj?.sizeBytes ?? 0) };
}

function notFound(what: string): GrpcStatusError {
  return new GrpcStatusError(Code.NOT_FOUND, `${what} not found in the fake upstream`);
}

export class FakeServices {
  readonly operations = new Map<string, Buffer>();
  readonly uploads = new Map<string, Upload>();
  readonly completedWrites: CompletedWrite[] = [];
  private readonly assets = new Map<string, Digest>();

  constructor(
    readonly cas: MemoryCas,
    private readonly options: ServiceOptions,
  ) {}

  methods(): MethodDef[] {
    const unary = (path: string, fn: (request: Buffer) => Buffer): MethodDef => ({
      path,
      kind: 'unary',
      handle: (ctx) => [fn(ctx.request)],
    });
    return [
      { path: PATHS.Execute, kind: 'serverStream', handle: (ctx) => this.execute(ctx.request) },
      { path: PATHS.WaitExecution, kind: 'serverStream', handle: (ctx) => this.waitExecution(ctx.request) },
      unary(PATHS.GetActionResult, (r) => this.getActionResult(r)),
      unary(PATHS.UpdateActionResult, (r) => this.updateActionResult(r)),
      unary(PATHS.FindMissingBlobs, (r) => this.findMissingBlobs(r)),
      unary(PATHS.BatchUpdateBlobs, (r) => this.batchUpdateBlobs(r)),
      unary(PATHS.BatchReadBlobs, (r) => this.batchReadBlobs(r)),
      { path: PATHS.GetTree, kind: 'serverStream', handle: (ctx) => this.getTree(ctx.request) },
      unary(PATHS.GetCapabilities, () => encode(MSG.ServerCapabilities, this.options.capabilities)),
      { path: PATHS.Read, kind: 'serverStream', handle: (ctx) => this.read(ctx.request) },
      { path: PATHS.Write, kind: 'clientStream', handle: (ctx) => this.write(ctx.requests) },
      unary(PATHS.QueryWriteStatus, (r) => this.queryWriteStatus(r)),
      unary(PATHS.ListOperations, (r) => this.listOperations(r)),
      unary(PATHS.GetOperation, (r) => this.operation(decode(MSG.GetOperationRequest, r).name)),
      unary(PATHS.DeleteOperation, (r) => {
        const name = String(decode(MSG.DeleteOperationRequest, r).name ?? '');
        if (!this.operations.delete(name)) throw notFound(`operation ${name}`);
        return EMPTY;
      }),
      unary(PATHS.CancelOperation, (r) => {
        this.operation(decode(MSG.CancelOperationRequest, r).name);
        return EMPTY;
      }),
      unary(PATHS.WaitOperation, (r) => this.operation(decode(MSG.WaitOperationRequest, r).name)),
      unary(PATHS.FetchBlob, (r) => this.fetch(r, 'blob')),
      unary(PATHS.FetchDirectory, (r) => this.fetch(r, 'directory')),
      unary(PATHS.PushBlob, (r) => this.push(r, 'blob')),
      unary(PATHS.PushDirectory, (r) => this.push(r, 'directory')),
    ];
  }

  // --- Execution ---------------------------------------------------------

  private *execute(request: Buffer): Generator<Buffer> {
    const req = decode(MSG.ExecuteRequest, request);
    const instanceName = String(req.instanceName ?? '');
    const name = `${instanceName ? `${instanceName}/` : ''}operations/${randomUUID()}`;
    const metadata = (stage: number) =>
      any(MSG.ExecuteOperationMetadata, { stage, actionDigest: req.actionDigest ?? {} });
    const final = encode(MSG.Operation, {
      name,
      metadata: metadata(STAGE.COMPLETED),
      done: true,
      response: any(MSG.ExecuteResponse, { result: this.options.actionResult(req), status: { code: 0 } }),
    });
    // Known before the client sees the name, so a WaitExecution right after it works.
    this.operations.set(name, final);
    yield encode(MSG.Operation, { name, metadata: metadata(STAGE.EXECUTING), done: false });
    yield final;
  }

  private *waitExecution(request: Buffer): Generator<Buffer> {
    yield this.operation(decode(MSG.WaitExecutionRequest, request).name);
  }

  private operation(name: unknown): Buffer {
    const op = this.operations.get(String(name ?? ''));
    if (!op) throw notFound(`operation ${JSON.stringify(name)}`);
    return op;
  }

  private listOperations(request: Buffer): Buffer {
    const prefix = String(decode(MSG.ListOperationsRequest, request).name ?? '');
    const ops = [...this.operations].filter(([name]) => name.startsWith(prefix)).map(([, op]) => op);
    return Buffer.from(writeRawMessages(protobuf.Writer.create(), 1, ops).finish());
  }

  // --- Action cache ------------------------------------------------------

  private getActionResult(request: Buffer): Buffer {
    const req = decode(MSG.GetActionResultRequest, request);
    const digest = digestOf(req.actionDigest);
    const result = this.cas.getActionResult(digest, req.instanceName ?? '');
    if (!result) throw notFound(`action result for ${digest.hash}/${digest.sizeBytes}`);
    return result;
  }

  private updateActionResult(request: Buffer): Buffer {
    const req = decode(MSG.UpdateActionResultRequest, request);
    const result = rawField(request, 3) ?? EMPTY;
    this.cas.putActionResult(digestOf(req.actionDigest), result, req.instanceName ?? '');
    return result;
  }

  // --- CAS ---------------------------------------------------------------

  private findMissingBlobs(request: Buffer): Buffer {
    const req = decode(MSG.FindMissingBlobsRequest, request);
    const missing = ((req.blobDigests ?? []) as Obj[]).filter(
      (d) => !this.cas.has(digestOf(d), req.instanceName ?? ''),
    );
    return encode(MSG.FindMissingBlobsResponse, { missingBlobDigests: missing });
  }

  private batchUpdateBlobs(request: Buffer): Buffer {
    const req = decode(MSG.BatchUpdateBlobsRequest, request);
    const responses = ((req.requests ?? []) as Obj[]).map((item) => {
      const digest = digestOf(item.digest);
      const data: Buffer = item.data ?? EMPTY;
      if ((item.compressor ?? 0) !== 0) {
        return {
          digest: item.digest,
          status: { code: Code.INVALID_ARGUMENT, message: 'compressed uploads are not supported' },
        };
      }
      const actual = createHash('sha256').update(data).digest('hex');
      if (actual !== digest.hash || data.length !== digest.sizeBytes) {
        return {
          digest: item.digest,
          status: {
            code: Code.INVALID_ARGUMENT,
            message: `data is ${actual}/${data.length}, not ${digest.hash}/${digest.sizeBytes}`,
          },
        };
      }
      this.cas.put(data, req.instanceName ?? '');
      return { digest: item.digest, status: { code: 0 } };
    });
    return encode(MSG.BatchUpdateBlobsResponse, { responses });
  }

  private batchReadBlobs(request: Buffer): Buffer {
    const req = decode(MSG.BatchReadBlobsRequest, request);
    const responses = ((req.digests ?? []) as Obj[]).map((d) => {
      const data = this.cas.read(digestOf(d), req.instanceName ?? '');
      return data
        ? { digest: d, data, status: { code: 0 } }
        : { digest: d, status: { code: Code.NOT_FOUND, message: 'blob not found in the fake upstream' } };
    });
    return encode(MSG.BatchReadBlobsResponse, { responses });
  }

  private *getTree(request: Buffer): Generator<Buffer> {
    const req = decode(MSG.GetTreeRequest, request);
    const instanceName = req.instanceName ?? '';
    const root = digestOf(req.rootDigest);
    if (!this.cas.read(root, instanceName)) throw notFound(`root directory ${root.hash}/${root.sizeBytes}`);
    // Breadth first; subtrees missing from the CAS are left out, as the API allows.
    const found: Buffer[] = [];
    const seen = new Set<string>();
    const queue = [root];
    while (queue.length > 0) {
      const digest = queue.shift()!;
      const key = `${digest.hash}/${digest.sizeBytes}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const bytes = this.cas.read(digest, instanceName);
      if (!bytes) continue;
      found.push(Buffer.from(bytes));
      for (const child of (decode(MSG.Directory, bytes).directories ?? []) as Obj[]) queue.push(digestOf(child.digest));
    }
    const pageSize = req.pageSize > 0 ? req.pageSize : this.options.treePageSize;
    let start = 0;
    if (req.pageToken) {
      start = Number(req.pageToken);
      if (!Number.isInteger(start) || start < 0 || start > found.length) {
        throw new GrpcStatusError(Code.INVALID_ARGUMENT, `bad page_token ${JSON.stringify(req.pageToken)}`);
      }
    }
    do {
      const end = Math.min(start + pageSize, found.length);
      const writer = writeRawMessages(protobuf.Writer.create(), 1, found.slice(start, end));
      if (end < found.length) writer.uint32((2 << 3) | 2).string(String(end));
      yield Buffer.from(writer.finish());
      start = end;
    } while (start < found.length);
  }

  // --- ByteStream --------------------------------------------------------

  private *read(request: Buffer): Generator<Buffer> {
    const req = decode(MSG.ReadRequest, request);
    const parsed = parseResourceName(String(req.resourceName ?? ''), 'read');
    if ('error' in parsed) throw new GrpcStatusError(Code.INVALID_ARGUMENT, parsed.error);
    if (parsed.compressor) throw new GrpcStatusError(Code.UNIMPLEMENTED, 'the fake upstream does not compress');
    const digest = { hash: parsed.hash, sizeBytes: parsed.sizeBytes };
    const entry = this.cas.entry(digest, parsed.instanceName);
    if (!entry) throw notFound(`blob ${parsed.hash}/${parsed.sizeBytes}`);
    if (entry.kind === 'sunk')
      throw new GrpcStatusError(Code.NOT_FOUND, 'blob was written with sinkWrites; its bytes were not kept');
    const offset = Number(req.readOffset ?? 0);
    const limit = Number(req.readLimit ?? 0);
    if (offset < 0 || offset > digest.sizeBytes) {
      throw new GrpcStatusError(Code.OUT_OF_RANGE, `read_offset ${offset} is outside 0..${digest.sizeBytes}`);
    }
    if (limit < 0) throw new GrpcStatusError(Code.INVALID_ARGUMENT, `read_limit ${limit} is negative`);
    const end = limit === 0 ? digest.sizeBytes : Math.min(digest.sizeBytes, offset + limit);
    for (let at = offset; at < end; at += this.options.readChunkBytes) {
      const chunk = this.cas.read(digest, parsed.instanceName, at, Math.min(this.options.readChunkBytes, end - at))!;
      yield Buffer.from(
        protobuf.Writer.create()
          .uint32((10 << 3) | 2)
          .bytes(chunk)
          .finish(),
      );
    }
  }

  private sinks(sizeBytes: number): boolean {
    const sink = this.options.sinkWrites;
    return sink === true || (typeof sink === 'number' && sizeBytes >= sink);
  }

  private async *write(requests: AsyncIterable<Buffer> | Iterable<Buffer>): AsyncGenerator<Buffer> {
    let resourceName: string | undefined;
    let upload: Upload | undefined;
    for await (const message of requests) {
      const req = decode(MSG.WriteRequest, message);
      const offset = Number(req.writeOffset ?? 0);
      if (!upload) {
        resourceName = String(req.resourceName ?? '');
        const parsed = parseResourceName(resourceName, 'write');
        if ('error' in parsed) throw new GrpcStatusError(Code.INVALID_ARGUMENT, parsed.error);
        if (parsed.compressor) throw new GrpcStatusError(Code.UNIMPLEMENTED, 'the fake upstream does not compress');
        upload = this.uploads.get(resourceName);
        if (!upload || offset === 0) {
          const digest = { hash: parsed.hash, sizeBytes: parsed.sizeBytes };
          upload = {
            instanceName: parsed.instanceName,
            digest,
            received: 0,
            hash: createHash('sha256'),
            chunks: this.sinks(digest.sizeBytes) ? null : [],
            complete: false,
          };
          this.uploads.set(resourceName, upload);
        }
      } else if (req.resourceName && req.resourceName !== resourceName) {
        throw new GrpcStatusError(Code.INVALID_ARGUMENT, `resource_name changed mid-stream to ${req.resourceName}`);
      }
      if (offset !== upload.received) {
        throw new GrpcStatusError(
          Code.INVALID_ARGUMENT,
          `write_offset ${offset} but ${upload.received} bytes were committed`,
        );
      }
      const data: Buffer = req.data ?? EMPTY;
      upload.received += data.length;
      if (upload.received > upload.digest.sizeBytes) {
        throw new GrpcStatusError(
          Code.INVALID_ARGUMENT,
          `more than the ${upload.digest.sizeBytes} bytes the resource name declares`,
        );
      }
      upload.hash.update(data);
      upload.chunks?.push(data);
      if (req.finishWrite) {
        yield this.finishUpload(resourceName!, upload);
        return;
      }
    }
    throw new GrpcStatusError(Code.INVALID_ARGUMENT, 'the client ended the stream without finish_write');
  }

  private finishUpload(resourceName: string, upload: Upload): Buffer {
    const { digest, instanceName } = upload;
    const actual = upload.hash.digest('hex');
    if (actual !== digest.hash || upload.received !== digest.sizeBytes) {
      this.uploads.delete(resourceName);
      throw new GrpcStatusError(
        Code.INVALID_ARGUMENT,
        `data is ${actual}/${upload.received}, not ${digest.hash}/${digest.sizeBytes}`,
      );
    }
    if (upload.chunks) {
      this.cas.put(Buffer.concat(upload.chunks), instanceName);
      upload.chunks = [];
    } else {
      const seed = findSynthetic(digest.hash, digest.sizeBytes);
      this.cas.putEntry(
        digest,
        seed === undefined
          ? { kind: 'sunk', sizeBytes: digest.sizeBytes }
          : { kind: 'synthetic', seed, sizeBytes: digest.sizeBytes },
        instanceName,
      );
    }
    upload.complete = true;
    this.completedWrites.push({ resourceName, instanceName, digest, sunk: upload.chunks === null });
    return encode(MSG.WriteResponse, { committedSize: digest.sizeBytes });
  }

  private queryWriteStatus(request: Buffer): Buffer {
    const name = String(decode(MSG.QueryWriteStatusRequest, request).resourceName ?? '');
    const upload = this.uploads.get(name);
    if (upload)
      return encode(MSG.QueryWriteStatusResponse, { committedSize: upload.received, complete: upload.complete });
    const parsed = parseResourceName(name, 'write');
    if ('error' in parsed) throw new GrpcStatusError(Code.INVALID_ARGUMENT, parsed.error);
    const digest = { hash: parsed.hash, sizeBytes: parsed.sizeBytes };
    if (this.cas.has(digest, parsed.instanceName)) {
      return encode(MSG.QueryWriteStatusResponse, { committedSize: digest.sizeBytes, complete: true });
    }
    throw notFound(`upload ${name}`);
  }

  // --- Remote Asset ------------------------------------------------------

  private assetKey(kind: 'blob' | 'directory', instanceName: string, uri: string): string {
    return `${kind}\n${this.cas.instanceKey(instanceName)}\n${uri}`;
  }

  private fetch(request: Buffer, kind: 'blob' | 'directory'): Buffer {
    const req = decode(kind === 'blob' ? MSG.FetchBlobRequest : MSG.FetchDirectoryRequest, request);
    for (const uri of (req.uris ?? []) as string[]) {
      const digest = this.assets.get(this.assetKey(kind, req.instanceName ?? '', uri));
      if (!digest) continue;
      return kind === 'blob'
        ? encode(MSG.FetchBlobResponse, { status: { code: 0 }, uri, blobDigest: digest })
        : encode(MSG.FetchDirectoryResponse, { status: { code: 0 }, uri, rootDirectoryDigest: digest });
    }
    throw notFound(`asset ${JSON.stringify(req.uris ?? [])}`);
  }

  private push(request: Buffer, kind: 'blob' | 'directory'): Buffer {
    const req = decode(kind === 'blob' ? MSG.PushBlobRequest : MSG.PushDirectoryRequest, request);
    const digest = digestOf(kind === 'blob' ? req.blobDigest : req.rootDirectoryDigest);
    for (const uri of (req.uris ?? []) as string[])
      this.assets.set(this.assetKey(kind, req.instanceName ?? '', uri), digest);
    return EMPTY;
  }
}
