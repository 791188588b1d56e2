import type { ServerCall } from '../rpc/server-call';

/**
 * Relays one call to the upstream on behalf of a handler that already read the
 * request (Execute, WaitExecution).
 *
 * Contract: sends `call.metadata` unchanged (grpc-timeout recomputed from
 * `call.deadline`, so time spent in the proxy is not given twice) and
 * `requestFrame` (one framed message, as received) to `path`, ends the request,
 * then streams every response message to `call` and ends `call` with the
 * upstream's status, message, details and trailers. If `call` has not sent
 * headers yet, the upstream's response headers are forwarded as headers.
 * `call.signal` aborting cancels the upstream call. Upstream failures (refused,
 * reset, GOAWAY) end `call` with UNAVAILABLE naming the upstream. Never rejects:
 * resolves once `call` has ended.
 */
export interface UpstreamCaller {
  relay(call: ServerCall, path: string, requestFrame: Buffer, options?: RelayOptions): Promise<RelayOutcome>;
}

export interface RelayOptions {
  /**
   * Sees each response message (decompressed) before it is forwarded. Lets the
   * Execute handler learn upstream Operation names without changing any bytes.
   */
  onMessage?: (message: Buffer) => void;
}

export interface RelayOutcome {
  /** gRPC status the call ended with. */
  code: number;
  messages: number;
}
