import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

/**
 * A bare node:http2 server standing in for the upstream where a test must see
 * the HTTP/2 request itself (headers grpc-js would hide, such as grpc-timeout,
 * or paths no service defines). Each request is recorded with its raw header
 * list and body, then answered with a trailers-only gRPC status.
 */

export interface SeenRequest {
  path: string;
  /** Raw header list as name/value pairs, pseudo-headers included. */
  headers: Array<[string, string]>;
  body: Buffer;
  /** Resolves with the RST_STREAM code (0 if none) once the stream is closed. */
  closed: Promise<number>;
}

export interface RecordingUpstream {
  url: string;
  seen: SeenRequest[];
  /** Resolves with the next request (or the first already seen) whose path matches. */
  next(path: string): Promise<SeenRequest>;
  stop(): Promise<void>;
}

/**
 * Listens on 127.0.0.1, on `options.port` when given (to come up where an
 * upstream was expected), else on a free port. Calls to `options.hang` paths
 * are never answered: they stay open until the proxy cancels them (and, unlike
 * a grpc-js server, nothing here enforces grpc-timeout).
 */
export async function startRecordingUpstream(
  answer: { code: number; message: string },
  options: { port?: number; hang?: readonly string[] } = {},
): Promise<RecordingUpstream> {
  const seen: SeenRequest[] = [];
  const waiters: Array<{ path: string; resolve: (r: SeenRequest) => void }> = [];
  const sessions = new Set<http2.ServerHttp2Session>();
  const server = http2.createServer();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on(
    'stream',
    (stream: http2.ServerHttp2Stream, _headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
      const headers: Array<[string, string]> = [];
      for (let i = 0; i + 1 < raw.length; i += 2) headers.push([raw[i]!, raw[i + 1]!]);
      const path = headers.find(([k]) => k === ':path')?.[1] ?? '';
      const chunks: Buffer[] = [];
      const closed = new Promise<number>((resolve) => stream.on('close', () => resolve(stream.rstCode ?? 0)));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', () => undefined);
      stream.on('end', () => {
        const request = { path, headers, body: Buffer.concat(chunks), closed };
        seen.push(request);
        const i = waiters.findIndex((w) => w.path === path);
        if (i >= 0) waiters.splice(i, 1)[0]!.resolve(request);
        if (options.hang?.includes(path)) {
          if (!stream.destroyed) stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        } else if (!stream.destroyed) {
          stream.respond(
            {
              ':status': 200,
              'content-type': 'application/grpc',
              'grpc-status': String(answer.code),
              'grpc-message': encodeURIComponent(answer.message),
            },
            { endStream: true },
          );
        }
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `grpc://127.0.0.1:${port}`,
    seen,
    next(path) {
      const found = seen.find((r) => r.path === path);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ path, resolve }));
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Values of header `name` in a raw header list, in order. */
export function headerValues(request: SeenRequest, name: string): string[] {
  return request.headers.filter(([k]) => k === name).map(([, v]) => v);
}
