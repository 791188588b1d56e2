import http2, { type ClientHttp2Stream } from 'node:http2';
import { Code } from '../reapi/grpc-status';
import { formatGrpcTimeout, headersFromRaw, metadataFromHeaders, upstreamRequestHeaders } from './headers';
import type { UpstreamPool } from './upstream-pool';
import { WRITE_AHEAD, type WriteAheadSlot } from './write-ahead';

export type HeaderMap = Record<string, string | string[]>;

/** What a consumer of an upstream call is told, in this order: response once, data*, then end or fail once. */
export interface ExchangeHandlers {
  /** Response headers; `trailersOnly` when the upstream answered with a status and no body. */
  response(status: number, headers: HeaderMap, trailersOnly: boolean): void;
  /** A chunk of response body; return false to pause the upstream until `resume()`. */
  data(chunk: Buffer): boolean;
  /** The upstream finished with trailers (grpc-status among them). */
  end(trailers: HeaderMap): void;
  /** The upstream call failed without a gRPC status; `code` and `message` say how, for the client. */
  fail(code: number, message: string): void;
}

const {
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INADEQUATE_SECURITY,
  NGHTTP2_NO_ERROR,
} = http2.constants;

/**
 * One call to the upstream over a pooled HTTP/2 connection, reduced to the
 * events above. It never throws and always ends in exactly one of `response`
 * with trailersOnly, `end`, or `fail` (unless cancelled by us, which reports
 * nothing). Connection failures name the upstream so the user knows where to look.
 */
export class UpstreamExchange {
  private readonly stream: ClientHttp2Stream | undefined;
  private finished = false;
  private cancelled = false;
  private trailers: HeaderMap | undefined;
  private readonly writeSlot: WriteAheadSlot = { held: false };

  constructor(
    pool: UpstreamPool,
    path: string,
    metadata: Record<string, string | string[] | undefined>,
    deadline: number | undefined,
    private readonly handlers: ExchangeHandlers,
  ) {
    const target = pool.target;
    const headers = upstreamRequestHeaders(metadata, path, target.authority, target.tls ? 'https' : 'http');
    if (deadline !== undefined) headers['grpc-timeout'] = formatGrpcTimeout(deadline - Date.now());
    const session = pool.session();
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: false });
    } catch (err) {
      // The session died between the pool handing it out and this request.
      this.stream = undefined;
      queueMicrotask(() => this.failOnce(Code.UNAVAILABLE, `upstream ${target.url} unreachable: ${describe(err)}`));
      return;
    }
    this.stream = stream;
    stream.on('response', (h: http2.IncomingHttpHeaders, flags: number, raw?: string[]) => {
      const status = Number(h[':status'] ?? 0);
      const trailersOnly = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      if (trailersOnly) this.finished = true;
      this.handlers.response(status, raw ? headersFromRaw(raw) : {}, trailersOnly);
    });
    stream.on('data', (chunk: Buffer) => {
      if (this.finished) return;
      if (!this.handlers.data(chunk)) stream.pause();
    });
    stream.on('trailers', (t: http2.IncomingHttpHeaders, _flags: number, raw?: string[]) => {
      this.trailers = raw ? headersFromRaw(raw) : metadataFromHeaders(t);
    });
    stream.on('end', () => {
      if (this.finished || this.cancelled) return;
      // Without trailers the stream was cut; 'close', which comes next, tells how (a lost connection or not).
      if (this.trailers) {
        this.finished = true;
        this.handlers.end(this.trailers);
      }
    });
    stream.on('error', (err) => {
      if (this.cancelled) return;
      if (!pool.wasConnected(session)) {
        this.failOnce(
          Code.UNAVAILABLE,
          `upstream ${target.url} unreachable: ${describe(rootCause(err))}; check that it is running and that --upstream is right`,
        );
      } else {
        this.failOnce(
          Code.UNAVAILABLE,
          `upstream ${target.url} connection lost: ${describe(rootCause(err))}; the call may be retried`,
        );
      }
    });
    stream.on('close', () => {
      if (this.finished || this.cancelled) return;
      const rst = stream.rstCode ?? NGHTTP2_NO_ERROR;
      if (session.destroyed || session.closed) {
        this.failOnce(Code.UNAVAILABLE, `upstream ${target.url} connection lost before the call finished`);
      } else if (rst === NGHTTP2_NO_ERROR) {
        this.failOnce(Code.INTERNAL, `upstream ${target.url} ended the call without a gRPC status`);
      } else if (rst === NGHTTP2_REFUSED_STREAM) {
        this.failOnce(Code.UNAVAILABLE, `upstream ${target.url} refused the call (REFUSED_STREAM); retry`);
      } else if (rst === NGHTTP2_CANCEL) {
        this.failOnce(Code.CANCELLED, `upstream ${target.url} cancelled the call`);
      } else if (rst === NGHTTP2_ENHANCE_YOUR_CALM) {
        this.failOnce(Code.RESOURCE_EXHAUSTED, `upstream ${target.url} reset the call (ENHANCE_YOUR_CALM)`);
      } else if (rst === NGHTTP2_INADEQUATE_SECURITY) {
        this.failOnce(Code.PERMISSION_DENIED, `upstream ${target.url} reset the call (INADEQUATE_SECURITY)`);
      } else {
        this.failOnce(Code.INTERNAL, `upstream ${target.url} reset the call (HTTP/2 error ${rst})`);
      }
    });
  }

  /** Sends request body bytes; false means wait for `onDrain`. */
  write(chunk: Buffer): boolean {
    if (this.finished || this.cancelled || !this.stream) return true;
    return WRITE_AHEAD.write(this.stream, chunk, this.writeSlot);
  }

  onDrain(cb: () => void): void {
    this.stream?.once('drain', cb);
  }

  /** The client finished sending. */
  end(): void {
    if (!this.finished && !this.cancelled) this.stream?.end();
  }

  resume(): void {
    this.stream?.resume();
  }

  /** The client went away or its deadline passed: cancel upstream, report nothing. */
  cancel(): void {
    if (this.finished || this.cancelled) return;
    this.cancelled = true;
    this.stream?.close(NGHTTP2_CANCEL);
  }

  private failOnce(code: number, message: string): void {
    if (this.finished || this.cancelled) return;
    this.finished = true;
    this.handlers.fail(code, message);
  }
}

function rootCause(err: unknown): unknown {
  let e = err;
  for (let i = 0; i < 5 && e instanceof Error && e.cause !== undefined; i++) e = e.cause;
  return e;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
