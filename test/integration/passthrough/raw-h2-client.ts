import http2 from 'node:http2';

/**
 * A bare node:http2 client for what grpc-js will not send: malformed frames,
 * odd headers, a deadline header without the client enforcing it. Reports
 * how the server ended the stream.
 */

export interface RawOutcome {
  /** Response headers (with :status), or undefined if none came. */
  headers: http2.IncomingHttpHeaders | undefined;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
  /** RST_STREAM code if the stream was reset, else 0. */
  rstCode: number;
  /** grpc-status from trailers or a trailers-only response; undefined when the stream ended without one. */
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
}

export function connect(endpoint: string): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${endpoint}`);
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

export interface RawRequest {
  path: string;
  /** Extra headers; content-type defaults to application/grpc. */
  headers?: http2.OutgoingHttpHeaders;
  method?: string;
  /** Body chunks, written in order; the request ends after them unless `keepOpen`. */
  body?: Buffer[];
  keepOpen?: boolean;
  /** Called with each response body chunk. */
  onData?: (chunk: Buffer) => void;
  /** Aborting resets the stream with CANCEL, as a client giving up does. */
  signal?: AbortSignal;
}

export function rawCall(session: http2.ClientHttp2Session, request: RawRequest): Promise<RawOutcome> {
  const stream = session.request({
    ':method': request.method ?? 'POST',
    ':path': request.path,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...request.headers,
  });
  let headers: http2.IncomingHttpHeaders | undefined;
  let trailers: http2.IncomingHttpHeaders | undefined;
  const chunks: Buffer[] = [];
  stream.on('response', (h) => (headers = h));
  stream.on('trailers', (t) => (trailers = t));
  stream.on('data', (c: Buffer) => {
    chunks.push(c);
    request.onData?.(c);
  });
  request.signal?.addEventListener('abort', () => stream.close(http2.constants.NGHTTP2_CANCEL), { once: true });
  stream.on('error', () => undefined);
  for (const chunk of request.body ?? []) stream.write(chunk);
  if (!request.keepOpen) stream.end();
  return new Promise((resolve) =>
    stream.on('close', () => {
      const statusFrom = trailers ?? headers;
      const status = statusFrom?.['grpc-status'];
      const message = statusFrom?.['grpc-message'];
      resolve({
        headers,
        trailers,
        body: Buffer.concat(chunks),
        rstCode: stream.rstCode ?? 0,
        grpcStatus: status === undefined ? undefined : Number(status),
        grpcMessage: typeof message === 'string' ? percentDecoded(message) : undefined,
      });
    }),
  );
}

function percentDecoded(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** One gRPC frame around `message`. */
export function frame(message: Buffer, compressed = false): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressed ? 1 : 0;
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

export function closeSession(session: http2.ClientHttp2Session): Promise<void> {
  if (session.closed || session.destroyed) return Promise.resolve();
  return new Promise((resolve) => session.close(() => resolve()));
}
