import { setTimeout as sleep } from 'node:timers/promises';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import {
  http2StreamOf,
  singleResponseTransport,
  streamTransport,
  type AnyServerCall,
  type CallTransport,
} from './fake-upstream/call-transport';
import { GrpcStatusError } from './fake-upstream/grpc-status-error';
import { blake3Digest, MemoryCas, type Digest } from './fake-upstream/memory-cas';
import { MSG, encode, type Obj } from './fake-upstream/messages';
import { RequestQueue } from './fake-upstream/request-queue';
import {
  DEFAULT_CAPABILITIES,
  FakeServices,
  PATHS,
  type CompletedWrite,
  type MethodDef,
  type MethodPath,
} from './fake-upstream/services';

/**
 * An in-process REAPI server (grpc-js, 127.0.0.1:0) standing in for
 * Buildbarn/NativeLink in integration tests. It serves every method the
 * proxy forwards (Execution, ActionCache, CAS, Capabilities, ByteStream,
 * longrunning Operations, Remote Asset Fetch/Push) with identity
 * (de)serializers, so it records exactly the bytes and metadata that arrive
 * and can be scripted to answer with any status, details, headers and
 * trailers, or to misbehave (delay, hang, reset the stream, drop the
 * connection).
 *
 * Usage:
 *   const fake = new FakeUpstream();
 *   const { address, stop } = await fake.start();   // address = '127.0.0.1:PORT'
 *   const digest = fake.putBlob(Buffer.from('hello'));
 *   fake.script(PATHS.Execute, { messages: 1, status: { code: 14, message: 'worker lost' } });
 *   ... point the proxy at grpc://address, drive a client ...
 *   const call = await fake.waitForCall(PATHS.Execute);
 *   await stop();
 */

export { DEFAULT_CAPABILITIES, PATHS, type CompletedWrite, type Digest, type MethodPath };
export { GrpcStatusError } from './fake-upstream/grpc-status-error';
export { EMPTY_DIGEST, blake3Digest, sha256Digest } from './fake-upstream/memory-cas';
export { MSG, any, decode, encode, statusDetails } from './fake-upstream/messages';
export { parseResourceName } from './fake-upstream/resource-name';
export { syntheticBytes, syntheticChunks, syntheticHash } from './fake-upstream/synthetic-blob';

export type MetadataInit = grpc.Metadata | Record<string, string | Buffer | ReadonlyArray<string | Buffer>>;

/** How the fake answers one call. Every field is optional; `{}` answers normally. */
export interface Behaviour {
  /** Initial metadata, sent before anything else. */
  headers?: MetadataInit;
  /** Wait this long before answering; the wait ends early if the client goes away. */
  delayMs?: number;
  /** Response messages to send instead of the default ones (unary methods send the first). */
  responses?: Buffer[];
  /**
   * Send at most this many response messages. Default: all of them; none when
   * `status` is an error or `then` is not 'status' and `responses` is unset.
   */
  messages?: number;
  /**
   * After the messages: end the call with `status` ('status', the default),
   * send nothing more until the client cancels ('hang'), reset the HTTP/2
   * stream with `resetCode` ('reset'), or drop the TCP connection ('destroy').
   */
  then?: 'status' | 'hang' | 'reset' | 'destroy';
  /** The final status. Default: OK, or whatever the default handler ended with. */
  status?: { code: number; message?: string; details?: Uint8Array };
  /** Extra trailing metadata (sent with the status). */
  trailers?: MetadataInit;
  /** HTTP/2 error code for then: 'reset'. Default NGHTTP2_INTERNAL_ERROR. */
  resetCode?: number;
  /**
   * Client-streaming methods answered by `responses`/`status` reply only after
   * the client half-closes, unless this is set. (The default Write handler
   * always replies as soon as it sees finish_write.)
   */
  answerEarly?: boolean;
}

/** One call as the fake saw it. Request and response bytes beyond `recordBytesPerCall` are counted, not kept. */
export interface RecordedCall {
  readonly path: string;
  /** Incoming metadata exactly as grpc-js parsed it; '-bin' values are Buffers. */
  readonly metadata: grpc.Metadata;
  readonly peer: string;
  readonly requests: Buffer[];
  requestCount: number;
  requestBytes: number;
  readonly responses: Buffer[];
  responseCount: number;
  responseBytes: number;
  /** The client cancelled (or its connection went away) before the call ended. */
  cancelled: boolean;
  /** How the fake ended the call; undefined while it runs. */
  outcome?: 'status' | 'cancelled' | 'reset' | 'destroyed';
  /** The status the fake sent, when outcome is 'status'. */
  status?: { code: number; details: string };
  /** Resolves when the call is over, however it ended. */
  readonly ended: Promise<void>;
}

export interface FakeUpstreamOptions {
  /** Keep each instance name's CAS, action cache and assets apart (default true) or share one store. */
  separateInstances?: boolean;
  /** ServerCapabilities as a protobufjs object; default DEFAULT_CAPABILITIES. */
  capabilities?: Obj;
  /** ByteStream writes are hashed and verified but not stored: true for all, a number for blobs at least that large. */
  sinkWrites?: boolean | number;
  /** grpc.max_receive_message_length (grpc-js default 4 MiB); Buildbarn deployments often use 2 MiB. */
  maxReceiveMessageBytes?: number;
  /** ByteStream.Read chunk size; default 64 KiB. */
  readChunkBytes?: number;
  /** GetTree page size when the request sets none; default 1000. */
  treePageSize?: number;
  /** The ActionResult an Execute finishes with; default exit code 0 with execution metadata. */
  actionResult?: (request: Obj) => Obj;
  /** Request/response bytes kept per call and direction (default 8 MiB); the rest is only counted. */
  recordBytesPerCall?: number;
  /** Serve TLS instead of plaintext. */
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer };
  /** Listen on this port instead of a free one (to play an upstream restarting on its address). */
  port?: number;
}

export interface StartedFake {
  port: number;
  /** 127.0.0.1:PORT */
  address: string;
  /** grpc://127.0.0.1:PORT (grpcs:// with tls). */
  url: string;
  stop(graceMs?: number): Promise<void>;
}

interface Script {
  behaviour: Behaviour;
  remaining: number;
}

const identity = (b: Buffer) => b;

function toMetadata(init: MetadataInit | undefined): grpc.Metadata {
  if (init instanceof grpc.Metadata) return init.clone();
  const md = new grpc.Metadata();
  for (const [key, value] of Object.entries(init ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) md.add(key, item as grpc.MetadataValue);
  }
  return md;
}

export class FakeUpstream {
  readonly cas: MemoryCas;
  private readonly services: FakeServices;
  private readonly recorded: RecordedCall[] = [];
  private readonly waiters: Array<{ match: (c: RecordedCall) => boolean; resolve: (c: RecordedCall) => void }> = [];
  private readonly scripts = new Map<string, Script[]>();
  private readonly recordLimit: number;
  private server: grpc.Server | undefined;
  private started: StartedFake | undefined;
  /** The port of the last start: a start after stop() listens there again, keeping the CAS (an upstream restart). */
  private lastPort: number | undefined;

  constructor(private readonly options: FakeUpstreamOptions = {}) {
    this.cas = new MemoryCas(options.separateInstances ?? true);
    this.recordLimit = options.recordBytesPerCall ?? 8 * 1024 * 1024;
    this.services = new FakeServices(this.cas, {
      capabilities: options.capabilities ?? DEFAULT_CAPABILITIES,
      sinkWrites: options.sinkWrites ?? false,
      readChunkBytes: options.readChunkBytes ?? 64 * 1024,
      treePageSize: options.treePageSize ?? 1000,
      actionResult: options.actionResult ?? (() => ({ exitCode: 0, executionMetadata: { worker: 'fake-upstream' } })),
    });
  }

  // --- lifecycle -----------------------------------------------------------

  async start(): Promise<StartedFake> {
    if (this.started) return this.started;
    const server = new grpc.Server({
      ...(this.options.maxReceiveMessageBytes
        ? { 'grpc.max_receive_message_length': this.options.maxReceiveMessageBytes }
        : {}),
    });
    for (const def of this.services.methods()) this.register(server, def);
    const tls = this.options.tls;
    const credentials = tls
      ? grpc.ServerCredentials.createSsl(
          tls.clientCa ?? null,
          [{ private_key: tls.key, cert_chain: tls.cert }],
          Boolean(tls.clientCa),
        )
      : grpc.ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${this.options.port ?? this.lastPort ?? 0}`, credentials, (err, boundPort) =>
        err ? reject(err) : resolve(boundPort),
      ),
    );
    this.server = server;
    this.lastPort = port;
    this.started = {
      port,
      address: `127.0.0.1:${port}`,
      url: `${tls ? 'grpcs' : 'grpc'}://127.0.0.1:${port}`,
      stop: (graceMs) => this.stop(graceMs),
    };
    return this.started;
  }

  /** Lets calls finish for up to `graceMs` (default 250), then drops every connection. Idempotent. */
  async stop(graceMs = 250): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.started = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  // --- store ---------------------------------------------------------------

  putBlob(data: Uint8Array | string, instanceName = ''): Digest {
    return this.cas.put(typeof data === 'string' ? Buffer.from(data) : data, instanceName);
  }

  /** Encodes `value` as `typeName` (a full proto name or a key of MSG) and stores it. */
  putMessage(typeName: string, value: Obj, instanceName = ''): Digest {
    return this.putBlob(encode((MSG as Record<string, string>)[typeName] ?? typeName, value), instanceName);
  }

  /** Stores `data` under its BLAKE3 digest (reads find it by hash and size, with or without blake3/ in the name). */
  putBlake3Blob(data: Uint8Array | string, instanceName = ''): Digest {
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    const digest = blake3Digest(bytes);
    this.cas.putEntry(digest, { kind: 'bytes', data: bytes }, instanceName);
    return digest;
  }

  /** putMessage under the BLAKE3 digest. */
  putBlake3Message(typeName: string, value: Obj, instanceName = ''): Digest {
    return this.putBlake3Blob(encode((MSG as Record<string, string>)[typeName] ?? typeName, value), instanceName);
  }

  /**
   * A blob of `sizeBytes` whose bytes are generated when read (syntheticBytes(seed, ...)).
   * Hashing it streams through it once per (seed, size) per process: ~1-3 s per GiB.
   */
  addSyntheticBlob(sizeBytes: number, options: { seed?: number; instanceName?: string } = {}): Digest {
    return this.cas.putSynthetic(sizeBytes, options.seed ?? 0, options.instanceName ?? '');
  }

  hasBlob(digest: Digest, instanceName = ''): boolean {
    return this.cas.has(digest, instanceName);
  }

  /** The stored bytes; undefined when absent or sunk. */
  getBlob(digest: Digest, instanceName = ''): Buffer | undefined {
    return this.cas.read(digest, instanceName);
  }

  putActionResult(actionDigest: Digest, actionResult: Obj | Uint8Array, instanceName = ''): void {
    const bytes = actionResult instanceof Uint8Array ? actionResult : encode(MSG.ActionResult, actionResult);
    this.cas.putActionResult(actionDigest, bytes, instanceName);
  }

  /** ByteStream writes that completed with a verified digest, in order. */
  writes(): readonly CompletedWrite[] {
    return this.services.completedWrites;
  }

  /** Names of Operations handed out by Execute (still known to WaitExecution). */
  operationNames(): string[] {
    return [...this.services.operations.keys()];
  }

  // --- scripting -----------------------------------------------------------

  /** The next `times` calls of `path` (default: every call until clearScripts) follow `behaviour`. */
  script(path: MethodPath | string, behaviour: Behaviour, times = Infinity): void {
    const list = this.scripts.get(path) ?? [];
    list.push({ behaviour, remaining: times });
    this.scripts.set(path, list);
  }

  clearScripts(): void {
    this.scripts.clear();
  }

  private takeScript(path: string): Behaviour {
    const list = this.scripts.get(path);
    const script = list?.find((s) => s.remaining > 0);
    if (!script) return {};
    script.remaining -= 1;
    return script.behaviour;
  }

  // --- recording -----------------------------------------------------------

  calls(path?: MethodPath | string): RecordedCall[] {
    return path === undefined ? [...this.recorded] : this.recorded.filter((c) => c.path === path);
  }

  clearCalls(): void {
    this.recorded.length = 0;
  }

  /** The first call (already made or still to come) of `path` that `match` accepts. */
  waitForCall(path: MethodPath | string, match: (call: RecordedCall) => boolean = () => true): Promise<RecordedCall> {
    const accept = (c: RecordedCall) => c.path === path && match(c);
    const seen = this.recorded.find((c) => {
      try {
        return accept(c);
      } catch {
        return false;
      }
    });
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ match: accept, resolve }));
  }

  private record(path: string, call: AnyServerCall): { record: RecordedCall; end: () => void } {
    let end!: () => void;
    const ended = new Promise<void>((resolve) => (end = resolve));
    const record: RecordedCall = {
      path,
      metadata: call.metadata.clone(),
      peer: call.getPeer(),
      requests: [],
      requestCount: 0,
      requestBytes: 0,
      responses: [],
      responseCount: 0,
      responseBytes: 0,
      cancelled: false,
      ended,
    };
    this.recorded.push(record);
    return { record, end };
  }

  /** Wakes waitForCall promises; called once the call's first request (if any) is recorded. */
  private announce(record: RecordedCall): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      let matches = false;
      try {
        matches = this.waiters[i]!.match(record);
      } catch {
        // A predicate that throws on this call does not match it.
      }
      if (matches) {
        this.waiters[i]!.resolve(record);
        this.waiters.splice(i, 1);
      }
    }
  }

  private keep(list: Buffer[], counted: number, message: Buffer): void {
    if (counted + message.length <= this.recordLimit) list.push(message);
  }

  // --- serving -------------------------------------------------------------

  private register(server: grpc.Server, def: MethodDef): void {
    switch (def.kind) {
      case 'unary':
        server.register(
          def.path,
          (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) =>
            void this.run(def, call, singleResponseTransport(callback), [call.request]),
          identity,
          identity,
          'unary',
        );
        return;
      case 'serverStream':
        server.register(
          def.path,
          (call: grpc.ServerWritableStream<Buffer, Buffer>) => void this.run(def, call, undefined, [call.request]),
          identity,
          identity,
          'serverStream',
        );
        return;
      case 'clientStream':
        server.register(
          def.path,
          (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) =>
            void this.run(def, call, singleResponseTransport(callback), undefined),
          identity,
          identity,
          'clientStream',
        );
        return;
    }
  }

  /**
   * Runs one call: default handler or script, then the ending the script
   * asks for. Never rejects; every path resolves `record.ended`.
   */
  private async run(
    def: MethodDef,
    call: AnyServerCall,
    single: CallTransport | undefined,
    request: Buffer[] | undefined,
  ): Promise<void> {
    const { record, end } = this.record(def.path, call);
    const abort = new AbortController();
    (call as grpc.ServerUnaryCall<Buffer, Buffer>).on('cancelled', () => {
      // grpc-js also reports a stream this fake reset or dropped itself as cancelled.
      if (record.outcome === undefined) record.cancelled = true;
      abort.abort();
    });
    // The stream also closes when grpc-js itself ends the call (deadline) or the connection drops.
    const h2 = http2StreamOf(call);
    h2.once('close', () => abort.abort());

    let queue: RequestQueue | undefined;
    if (request) {
      for (const message of request) this.addRequest(record, message);
    } else {
      queue = new RequestQueue(call as grpc.ServerReadableStream<Buffer, Buffer>, (m) => this.addRequest(record, m));
    }
    this.announce(record);
    const transport = single ?? streamTransport(call as grpc.ServerWritableStream<Buffer, Buffer>, abort.signal);
    const behaviour = this.takeScript(def.path);
    const then = behaviour.then ?? 'status';
    const scriptedError = behaviour.status !== undefined && behaviour.status.code !== grpc.status.OK;
    const useDefault =
      behaviour.responses === undefined && !((scriptedError || then !== 'status') && behaviour.messages === undefined);

    try {
      if (behaviour.headers) (call as grpc.ServerUnaryCall<Buffer, Buffer>).sendMetadata(toMetadata(behaviour.headers));
      if (queue && !useDefault && !behaviour.answerEarly)
        await Promise.race([queue.finished, this.aborted(abort.signal)]);
      if (behaviour.delayMs) await sleep(behaviour.delayMs, undefined, { signal: abort.signal });

      const limit = Math.min(behaviour.messages ?? Infinity, def.kind === 'serverStream' ? Infinity : 1);
      let handlerError: GrpcStatusError | undefined;
      let sent = 0;
      try {
        const source: Iterable<Buffer> | AsyncIterable<Buffer> = useDefault
          ? def.handle({ request: request?.[0] ?? Buffer.alloc(0), requests: queue ?? [], signal: abort.signal })
          : (behaviour.responses ?? []);
        for await (const message of source) {
          if (sent >= limit || abort.signal.aborted) break;
          await transport.send(message);
          sent += 1;
          record.responseCount += 1;
          this.keep(record.responses, record.responseBytes, message);
          record.responseBytes += message.length;
        }
      } catch (err) {
        if (abort.signal.aborted) throw err;
        handlerError =
          err instanceof GrpcStatusError
            ? err
            : new GrpcStatusError(grpc.status.INTERNAL, `fake upstream handler failed: ${(err as Error).message}`);
      }
      queue?.discardRest();
      if (abort.signal.aborted) return;

      if (then === 'hang') {
        await this.aborted(abort.signal);
      } else if (then === 'reset') {
        await transport.flush();
        h2.close(behaviour.resetCode ?? http2.constants.NGHTTP2_INTERNAL_ERROR);
        record.outcome = 'reset';
      } else if (then === 'destroy') {
        await transport.flush();
        h2.session?.destroy();
        record.outcome = 'destroyed';
      } else {
        const status = behaviour.status ?? handlerError ?? { code: grpc.status.OK, message: 'OK' };
        const details = behaviour.status ? behaviour.status.details : handlerError?.details;
        const trailers = toMetadata(behaviour.trailers);
        if (details) trailers.set('grpc-status-details-bin', Buffer.from(details));
        const message = 'message' in status ? (status.message ?? '') : '';
        record.status = { code: status.code, details: message };
        record.outcome = 'status';
        transport.finish(status.code, message, trailers);
      }
    } catch (err) {
      // The client went away mid-answer: nothing to send. Anything else is a bug in the fake; say so.
      if (!abort.signal.aborted) {
        record.outcome = 'status';
        record.status = { code: grpc.status.INTERNAL, details: `fake upstream failed: ${(err as Error).message}` };
        transport.finish(grpc.status.INTERNAL, record.status.details, new grpc.Metadata());
      }
    } finally {
      queue?.discardRest();
      if (record.cancelled || (abort.signal.aborted && record.outcome === undefined)) record.outcome = 'cancelled';
      end();
    }
  }

  private addRequest(record: RecordedCall, message: Buffer): void {
    record.requestCount += 1;
    this.keep(record.requests, record.requestBytes, message);
    record.requestBytes += message.length;
  }

  private aborted(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }
}
