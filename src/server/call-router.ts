import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Logger } from 'pino';
import { toProxyError } from '../errors';
import { Code, codeName } from '../reapi/grpc-status';
import { clampMaxBatchSize } from '../passthrough/capabilities-clamp';
import { forwardCall, type ForwardOptions } from '../passthrough/forward-call';
import { headersFromRaw, metadataFromHeaders, parseGrpcTimeout } from '../passthrough/headers';
import type { UpstreamPool } from '../passthrough/upstream-pool';
import type { CallObserver } from '../rpc/call-observer';
import { ByteBudget } from '../util/byte-budget';
import { runAsClient } from './auth/client-scope';
import { endWithStatus } from '../rpc/grpc-respond';
import { HEALTH_CHECK, HEALTH_WATCH, type HealthService } from './health-service';
import { Http2ServerCall } from './http2-server-call';
import type { CallStatus, Metadata, ServerCall } from '../rpc/server-call';

/** Largest Health request read (a HealthCheckRequest is one service name). */
const HEALTH_MAX_REQUEST_BYTES = 16 * 1024;
/** Characters a gRPC method path never has; see route(). */
const NOT_PLAIN_PATH = /[?#%]/;
export const EXECUTE = '/build.bazel.remote.execution.v2.Execution/Execute';
export const WAIT_EXECUTION = '/build.bazel.remote.execution.v2.Execution/WaitExecution';
export const GET_CAPABILITIES = '/build.bazel.remote.execution.v2.Capabilities/GetCapabilities';

/** The Nix-aware handlers; absent when no shared store is configured (pure pass-through). */
export interface ExecuteService {
  /** /build.bazel.remote.execution.v2.Execution/Execute. Resolves once the call has ended; never rejects. */
  execute(call: ServerCall): Promise<void>;
  /** /build.bazel.remote.execution.v2.Execution/WaitExecution. Resolves once the call has ended; never rejects. */
  waitExecution(call: ServerCall): Promise<void>;
}

export interface RouterDeps {
  pool: UpstreamPool;
  health: HealthService;
  execute?: ExecuteService;
  maxMessageBytes: number;
  /** Longest wait for the request message of a call answered here (limits.requestReadTimeoutMs). */
  requestReadTimeoutMs?: number;
  /** Bytes of request messages being read at once across all calls answered here (limits.requestBufferBytes). */
  requestBufferBytes?: number;
  logger: Logger;
  observer?: CallObserver;
  /** Who is calling and may they (src/server/auth); absent = everyone, unnamed. */
  admission?: { admit(stream: ServerHttp2Stream, path: string, metadata: Metadata, peer: string): string | CallStatus };
}

/**
 * Decides who answers each incoming call: Health and (with a shared store)
 * Execute/WaitExecution are answered here; Capabilities is forwarded with its
 * batch limit clamped; everything else, known or not, is forwarded as bytes.
 */
export class CallRouter {
  // Built once: routing runs on every call, so it allocates as little as it can.
  private readonly plainForward: ForwardOptions;
  private readonly capabilitiesForward: ForwardOptions;

  private readonly readBudget: ByteBudget | undefined;

  constructor(private readonly deps: RouterDeps) {
    this.readBudget = deps.requestBufferBytes !== undefined ? new ByteBudget(deps.requestBufferBytes) : undefined;
    this.plainForward = { maxMessageBytes: deps.maxMessageBytes };
    this.capabilitiesForward = {
      maxMessageBytes: deps.maxMessageBytes,
      rewriteUnaryResponse: (m) => clampMaxBatchSize(m, deps.maxMessageBytes),
    };
  }

  route(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[] | undefined, peer: string): void {
    const started = performance.now();
    const path = String(headers[':path'] ?? '');
    const metadata = rawHeaders ? headersFromRaw(rawHeaders) : metadataFromHeaders(headers);
    const timeoutMs = parseGrpcTimeout(headers['grpc-timeout']);
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    const done = (code: number): void => this.finished(path, code, started, peer);

    if (headers[':method'] !== 'POST' || !String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      endWithStatus(stream, { code: Code.UNIMPLEMENTED, message: `not a gRPC call: ${headers[':method']} ${path}` });
      return done(Code.UNIMPLEMENTED);
    }
    if (NOT_PLAIN_PATH.test(path)) {
      // A query, fragment or escape would let `/…Execution/Execute?x` skip Execute preparation here while an
      // upstream that normalises it runs the action: such a path is no gRPC method name and is never forwarded.
      endWithStatus(stream, {
        code: Code.UNIMPLEMENTED,
        message: `not a gRPC method path: ${JSON.stringify(path.slice(0, 200))} (a method path is /package.Service/Method, without '?', '#' or '%')`,
      });
      return done(Code.UNIMPLEMENTED);
    }
    const client = this.deps.admission?.admit(stream, path, metadata, peer);
    if (typeof client === 'object') {
      endWithStatus(stream, client);
      return done(client.code);
    }
    const { execute, health } = this.deps;
    if (path === HEALTH_CHECK || path === HEALTH_WATCH)
      return this.answer(stream, path, metadata, deadline, peer, client, (c) => health.handle(c), done);
    if (execute && path === EXECUTE)
      return this.answer(stream, path, metadata, deadline, peer, client, (c) => execute.execute(c), done);
    if (execute && path === WAIT_EXECUTION)
      return this.answer(stream, path, metadata, deadline, peer, client, (c) => execute.waitExecution(c), done);

    forwardCall(
      { stream, path, metadata, deadline },
      this.deps.pool,
      path === GET_CAPABILITIES ? this.capabilitiesForward : this.plainForward,
      done,
    );
  }

  private answer(
    stream: ServerHttp2Stream,
    path: string,
    metadata: Record<string, string | string[]>,
    deadline: number | undefined,
    peer: string,
    client: string | undefined,
    handler: (call: ServerCall) => Promise<void>,
    done: (code: number) => void,
  ): void {
    // A Health request is a service name: no reason to buffer megabytes for it before anything is checked.
    const health = path === HEALTH_CHECK || path === HEALTH_WATCH;
    const maxBytes = health ? Math.min(HEALTH_MAX_REQUEST_BYTES, this.deps.maxMessageBytes) : this.deps.maxMessageBytes;
    const limitName = health ? 'a Health request is one service name' : 'max_message_bytes';
    const call = new Http2ServerCall(
      stream,
      path,
      metadata,
      deadline,
      peer,
      maxBytes,
      client,
      this.deps.requestReadTimeoutMs,
      this.readBudget,
      limitName,
    );
    let code: number = Code.OK;
    // Everything the handler awaits knows whom it works for (per-client limits on the store side).
    runAsClient(client, () => handler(call))
      .catch((err: unknown) => {
        const e = toProxyError(err, path);
        code = e.code;
        if (e.code === Code.INTERNAL) this.deps.logger.error({ err, path, peer }, 'call failed with an internal error');
        else
          this.deps.logger.warn(
            { path, peer, code: codeName(e.code), reason: e.reason, msg: e.message },
            'call failed',
          );
        call.end({ code: e.code, message: e.message });
      })
      .finally(() => {
        if (!call.ended) call.end({ code: Code.OK });
        void call.whenDone().then(() => done(code));
      });
  }

  private finished(path: string, code: number, started: number, peer: string): void {
    const durationMs = performance.now() - started;
    this.deps.observer?.callDone(path, code, durationMs);
    const log = this.deps.logger;
    if (log.isLevelEnabled('debug'))
      log.debug(
        { method: path, status: codeName(code), durationMs: Math.round(durationMs * 1000) / 1000, peer },
        'call',
      );
  }
}
