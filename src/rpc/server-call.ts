import type { CodeValue } from '../reapi/grpc-status';

/** gRPC metadata as it arrived in HTTP/2 headers: names lower-case, '-bin' values still base64. */
export type Metadata = Record<string, string | string[] | undefined>;

export interface UnaryRequest {
  /** The request exactly as received: one gRPC frame, 5-byte prefix included (possibly compressed). */
  frame: Buffer;
  /** The decompressed message bytes. */
  message: Buffer;
}

export interface CallStatus {
  code: CodeValue;
  message?: string;
  /** Encoded google.rpc.Status, sent as grpc-status-details-bin. */
  details?: Uint8Array;
  /** Extra trailers to send, e.g. forwarded from the upstream. */
  trailers?: Record<string, string | string[]>;
}

/**
 * One incoming gRPC call the proxy answers itself (Health, Execute, WaitExecution).
 *
 * Contract: methods may be called in any order after the call ended; they then do
 * nothing. `signal` aborts when the client cancels, the connection drops, or the
 * call's deadline passes; a handler must stop its work then (the call is already
 * answered with CANCELLED or DEADLINE_EXCEEDED).
 */
export interface ServerCall {
  /** '/package.Service/Method' */
  readonly path: string;
  /** The client's metadata (pseudo-headers and HTTP/2 connection headers removed). */
  readonly metadata: Metadata;
  /** Absolute deadline in epoch ms from grpc-timeout, if the client set one. */
  readonly deadline: number | undefined;
  readonly signal: AbortSignal;
  /** Address of the client, for logs. */
  readonly peer: string;
  /** Who the call is for, as the admission check named it (token name, certificate subject, address); unset without one. */
  readonly client?: string;
  readonly ended: boolean;
  /** Whether response headers went out (after that, upstream headers can no longer be forwarded as headers). */
  readonly headersSent: boolean;

  /** Reads the single request message of a unary-request call. Rejects with a ProxyError on bad framing or size. */
  readUnaryRequest(): Promise<UnaryRequest>;
  /** Sends response headers now if not sent yet. */
  sendHeaders(headers?: Record<string, string | string[]>): void;
  /** Sends one response message; resolves once more may be written (backpressure). */
  sendMessage(message: Uint8Array): Promise<void>;
  /** Ends the call with this status (and trailers). */
  end(status: CallStatus): void;
}
