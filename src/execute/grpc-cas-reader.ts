import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ProxyError } from '../errors';
import { Code, codeName, type CodeValue } from '../reapi/grpc-status';
import { T } from '../reapi/protos';
import { planBatches } from './batch-plan';
import { abortError, missingBlobsError, type CasReadContext, type CasReader } from './cas-reader';
import { forwardableMetadata } from './client-metadata';
import {
  byteStreamReadName,
  digestFunctionName,
  digestKey,
  isVerifiable,
  verifyBlob,
  type BlobDigest,
} from './digests';
import { runLimited } from '../util/run-limited';

const BATCH_READ = '/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs';
const BYTESTREAM_READ = '/google.bytestream.ByteStream/Read';

/** Upstream codes passed on as they are; anything else becomes UNAVAILABLE. */
const PASSED_ON = new Set<number>([
  Code.DEADLINE_EXCEEDED,
  Code.PERMISSION_DENIED,
  Code.UNAUTHENTICATED,
  Code.RESOURCE_EXHAUSTED,
  Code.INVALID_ARGUMENT,
  Code.UNAVAILABLE,
]);

export interface GrpcCasReaderOptions {
  /**
   * A client for the upstream, built by the composition root. Its
   * grpc.max_receive_message_length must be at least `maxResponseBytes`.
   */
  client: grpc.Client;
  /** The upstream as the user configured it, for messages. */
  upstreamLabel: string;
  /** Largest response one BatchReadBlobs may produce (the upstream's and our message limit). */
  maxResponseBytes: number;
  /** BatchReadBlobs calls in flight per readBlobs. */
  batchConcurrency?: number;
  /** ByteStream.Read calls in flight per readBlobs. */
  streamConcurrency?: number;
  /**
   * Longest wait for the upstream to finish the HTTP/2 handshake before a
   * read (connectTimeoutMs). grpc-js itself waits without a bound, so an
   * upstream that accepts connections and never answers would hold each
   * Execute until its deadline. Unset = no bound.
   */
  connectTimeoutMs?: number;
  logger: Logger;
}

type ServiceError = grpc.ServiceError;

/**
 * CasReader over gRPC: BatchReadBlobs for blobs that fit a response,
 * ByteStream.Read for the rest, and for everything once the upstream has
 * answered BatchReadBlobs with UNIMPLEMENTED (Bazel's own worker has none).
 * That answer is remembered for the life of this reader, i.e. per upstream.
 */
export class GrpcCasReader implements CasReader {
  private batchUnsupported = false;
  /** Digest functions whose blobs were read unverified (size checked only), logged once each. */
  private readonly unverifiedLogged = new Set<number>();

  constructor(private readonly options: GrpcCasReaderOptions) {}

  async readBlobs(ctx: CasReadContext, digests: readonly BlobDigest[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    const wanted = new Map<string, BlobDigest>();
    for (const d of digests) {
      // The empty blob is always present (REAPI): clients need not upload it.
      if (d.sizeBytes === 0 && verifyBlob(ctx.digestFunction, d, Buffer.alloc(0)) === undefined) {
        out.set(digestKey(d), Buffer.alloc(0));
      } else {
        wanted.set(digestKey(d), d);
      }
    }
    if (wanted.size === 0) return out;
    if (ctx.signal.aborted) throw abortError(ctx.signal, 'reading from the CAS');
    await this.untilConnectedOrFailed();

    // First failure cancels the other reads of this call.
    const local = new AbortController();
    const signal = AbortSignal.any([ctx.signal, local.signal]);
    const scoped: CasReadContext = { ...ctx, signal };
    const metadata = toGrpcMetadata(ctx);
    const missing: BlobDigest[] = [];
    const plan = planBatches([...wanted.values()], this.options.maxResponseBytes);
    const streamed = [...plan.streamed];

    const readStreamed = (list: readonly BlobDigest[]): Promise<void> =>
      runLimited(list, this.options.streamConcurrency ?? 8, async (d) => {
        const data = await this.byteStreamRead(scoped, metadata, d);
        if (data === undefined) missing.push(d);
        else out.set(digestKey(d), data);
      });

    try {
      await runLimited(plan.batches, this.options.batchConcurrency ?? 4, async (batch) => {
        if (this.batchUnsupported) {
          streamed.push(...batch);
          return;
        }
        const result = await this.batchRead(scoped, metadata, batch);
        if (result === 'use-bytestream') {
          streamed.push(...batch);
          return;
        }
        for (const [key, data] of result.found) out.set(key, data);
        missing.push(...result.missing);
        streamed.push(...result.omitted);
      });
      await readStreamed(streamed);
    } catch (err) {
      local.abort();
      if (ctx.signal.aborted) throw abortError(ctx.signal, 'reading from the CAS');
      throw err;
    }
    if (missing.length > 0) throw missingBlobsError(missing);
    return out;
  }

  /**
   * Returns once the channel is READY or has failed (calls then fail fast with
   * UNAVAILABLE as before); throws UNAVAILABLE when it is still connecting
   * after connectTimeoutMs.
   */
  private async untilConnectedOrFailed(): Promise<void> {
    const timeoutMs = this.options.connectTimeoutMs;
    if (timeoutMs === undefined) return;
    const channel = this.options.client.getChannel();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = channel.getConnectivityState(true);
      if (state !== grpc.connectivityState.IDLE && state !== grpc.connectivityState.CONNECTING) return;
      const changed = await new Promise<boolean>((resolve) =>
        channel.watchConnectivityState(state, deadline, (err) => resolve(!err)),
      );
      if (!changed) {
        throw new ProxyError(
          Code.UNAVAILABLE,
          'UPSTREAM_UNREACHABLE',
          `the upstream CAS ${this.options.upstreamLabel} accepted no HTTP/2 connection within ${timeoutMs} ms (connectTimeoutMs); check that it is up and that the URL points at a gRPC server`,
        );
      }
    }
  }

  private async batchRead(
    ctx: CasReadContext,
    metadata: grpc.Metadata,
    batch: readonly BlobDigest[],
  ): Promise<'use-bytestream' | { found: Map<string, Buffer>; missing: BlobDigest[]; omitted: BlobDigest[] }> {
    const request = Buffer.from(
      T.BatchReadBlobsRequest.encode({
        instanceName: ctx.instanceName,
        digests: batch.map((d) => ({ hash: d.hash, sizeBytes: d.sizeBytes })),
        digestFunction: ctx.requestedDigestFunction,
      }).finish(),
    );
    let response: Buffer;
    try {
      response = await this.unary(ctx, BATCH_READ, request, metadata);
    } catch (err) {
      const e = err as ServiceError;
      if (e.code === grpc.status.UNIMPLEMENTED) {
        if (!this.batchUnsupported) {
          this.batchUnsupported = true;
          this.options.logger.info(
            { upstream: this.options.upstreamLabel },
            'upstream CAS has no BatchReadBlobs; reading blobs with ByteStream.Read from now on',
          );
        }
        return 'use-bytestream';
      }
      // The upstream's own batch limit may be below ours (Buildbarn often runs 2 MiB): read
      // these one by one instead. A request it refuses for another reason fails there too.
      if (e.code === grpc.status.RESOURCE_EXHAUSTED || e.code === grpc.status.INVALID_ARGUMENT) {
        this.options.logger.debug(
          { upstream: this.options.upstreamLabel, code: e.code, blobs: batch.length },
          'BatchReadBlobs refused; reading this batch with ByteStream.Read',
        );
        return 'use-bytestream';
      }
      throw this.upstreamError(ctx, e, `BatchReadBlobs of ${batch.length} blobs`);
    }

    let decoded: {
      responses?: Array<{
        digest?: { hash?: string; sizeBytes?: unknown };
        data?: Uint8Array;
        status?: { code?: number; message?: string };
        compressor?: number;
      }>;
    };
    try {
      decoded = T.BatchReadBlobsResponse.decode(response) as typeof decoded;
    } catch (err) {
      throw new ProxyError(
        Code.UNAVAILABLE,
        'UPSTREAM_BAD_RESPONSE',
        `the upstream CAS ${this.options.upstreamLabel} sent a BatchReadBlobs response that does not decode; check that it is a REAPI v2 server`,
        { cause: err },
      );
    }
    const byKey = new Map(batch.map((d) => [digestKey(d), d]));
    const found = new Map<string, Buffer>();
    const missing: BlobDigest[] = [];
    for (const r of decoded.responses ?? []) {
      const key = `${r.digest?.hash ?? ''}/${String(r.digest?.sizeBytes ?? 0)}`;
      const d = byKey.get(key);
      if (d === undefined) continue;
      byKey.delete(key);
      const code = r.status?.code ?? 0;
      if (code === Code.NOT_FOUND) {
        missing.push(d);
        continue;
      }
      if (code !== Code.OK) {
        throw this.upstreamError(ctx, { code, details: r.status?.message ?? '' }, `reading blob ${key}`);
      }
      if ((r.compressor ?? 0) !== 0) {
        throw new ProxyError(
          Code.UNAVAILABLE,
          'UPSTREAM_BAD_RESPONSE',
          `the upstream CAS ${this.options.upstreamLabel} returned blob ${key} compressed although the proxy accepts none`,
        );
      }
      const data = toBuffer(r.data ?? new Uint8Array(0));
      this.verify(ctx, d, data);
      found.set(key, data);
    }
    // Left out of the response entirely: a protocol slip; read them one by one.
    return { found, missing, omitted: [...byKey.values()] };
  }

  /** Resolves undefined when the blob is not in the CAS. */
  private byteStreamRead(ctx: CasReadContext, metadata: grpc.Metadata, d: BlobDigest): Promise<Buffer | undefined> {
    const resourceName = byteStreamReadName(ctx.instanceName, ctx.digestFunction, d);
    const request = Buffer.from(T.ReadRequest.encode({ resourceName, readOffset: 0, readLimit: 0 }).finish());
    return new Promise<Buffer | undefined>((resolve, reject) => {
      if (ctx.signal.aborted) {
        reject(abortError(ctx.signal, 'reading from the CAS'));
        return;
      }
      const stream = this.options.client.makeServerStreamRequest<Buffer, Buffer>(
        BYTESTREAM_READ,
        identity,
        identity,
        request,
        metadata,
        callOptions(ctx),
      );
      const chunks: Buffer[] = [];
      let received = 0;
      let settled = false;
      const onAbort = (): void => stream.cancel();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        ctx.signal.removeEventListener('abort', onAbort);
        fn();
      };
      stream.on('data', (message: Buffer) => {
        if (settled) return;
        let data: Uint8Array;
        try {
          data = (T.ReadResponse.decode(message) as unknown as { data?: Uint8Array }).data ?? new Uint8Array(0);
        } catch (err) {
          stream.cancel();
          settle(() =>
            reject(
              new ProxyError(
                Code.UNAVAILABLE,
                'UPSTREAM_BAD_RESPONSE',
                `the upstream CAS ${this.options.upstreamLabel} sent a ByteStream.Read response that does not decode`,
                { cause: err },
              ),
            ),
          );
          return;
        }
        received += data.length;
        if (received > d.sizeBytes) {
          stream.cancel();
          settle(() => reject(this.dataLoss(d, `got more than ${d.sizeBytes} bytes`)));
          return;
        }
        chunks.push(toBuffer(data));
      });
      stream.on('error', (err: ServiceError) => {
        settle(() => {
          if (ctx.signal.aborted) reject(abortError(ctx.signal, 'reading from the CAS'));
          else if (err.code === grpc.status.NOT_FOUND) resolve(undefined);
          else reject(this.upstreamError(ctx, err, `ByteStream.Read of ${resourceName}`));
        });
      });
      stream.on('end', () => {
        settle(() => {
          const data = Buffer.concat(chunks, received);
          try {
            this.verify(ctx, d, data);
            resolve(data);
          } catch (err) {
            reject(err);
          }
        });
      });
    });
  }

  private unary(ctx: CasReadContext, method: string, request: Buffer, metadata: grpc.Metadata): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (ctx.signal.aborted) {
        reject(abortError(ctx.signal, 'reading from the CAS'));
        return;
      }
      const onAbort = (): void => call.cancel();
      const call = this.options.client.makeUnaryRequest<Buffer, Buffer>(
        method,
        identity,
        identity,
        request,
        metadata,
        callOptions(ctx),
        (err, value) => {
          ctx.signal.removeEventListener('abort', onAbort);
          if (ctx.signal.aborted) reject(abortError(ctx.signal, 'reading from the CAS'));
          else if (err) reject(err);
          else resolve(value ?? Buffer.alloc(0));
        },
      );
      ctx.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private verify(ctx: CasReadContext, d: BlobDigest, data: Buffer): void {
    if (!isVerifiable(ctx.digestFunction) && !this.unverifiedLogged.has(ctx.digestFunction)) {
      // Bounded: DigestFunction values are validated before any read.
      this.unverifiedLogged.add(ctx.digestFunction);
      this.options.logger.info(
        { digestFunction: digestFunctionName(ctx.digestFunction), upstream: this.options.upstreamLabel },
        'the proxy cannot compute this digest function; its blobs are read with their sizes checked and their hashes trusted to the upstream',
      );
    }
    const problem = verifyBlob(ctx.digestFunction, d, data);
    if (problem !== undefined) throw this.dataLoss(d, problem);
  }

  private dataLoss(d: BlobDigest, problem: string): ProxyError {
    return new ProxyError(
      Code.DATA_LOSS,
      'CAS_DIGEST_MISMATCH',
      `the upstream CAS ${this.options.upstreamLabel} returned wrong content for blob ${digestKey(d)} (${problem}); its storage may be corrupt: check the upstream's logs`,
    );
  }

  private upstreamError(ctx: CasReadContext, err: { code?: number; details?: string }, what: string): ProxyError {
    if (ctx.signal.aborted) return abortError(ctx.signal, 'reading from the CAS');
    const upstreamCode = err.code ?? Code.UNKNOWN;
    const code = (PASSED_ON.has(upstreamCode) ? upstreamCode : Code.UNAVAILABLE) as CodeValue;
    const hint =
      code === Code.UNAVAILABLE || code === Code.DEADLINE_EXCEEDED
        ? 'retry; if it persists, check that the upstream is up and reachable from the proxy'
        : code === Code.PERMISSION_DENIED || code === Code.UNAUTHENTICATED
          ? "the client's credentials were refused by the upstream for a CAS read"
          : 'check the request and the upstream configuration';
    return new ProxyError(
      code,
      'UPSTREAM_CAS_READ_FAILED',
      `${what} from the upstream CAS ${this.options.upstreamLabel} failed with ${codeName(upstreamCode)}: ${err.details ?? ''}; ${hint}`,
      { cause: err },
    );
  }
}

function toGrpcMetadata(ctx: CasReadContext): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [key, value] of forwardableMetadata(ctx.metadata)) {
    try {
      md.add(key, value);
    } catch {
      // grpc-js refuses keys HTTP/2 allowed but gRPC does not; such a header cannot matter to the CAS.
    }
  }
  return md;
}

function callOptions(ctx: CasReadContext): grpc.CallOptions {
  return ctx.deadline === undefined ? {} : { deadline: ctx.deadline };
}

function identity(b: Buffer): Buffer {
  return b;
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
