import http2, { type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { framePrefix } from '../common/grpc-wire';

/**
 * The load generator's gRPC client: node:http2 directly, requests framed once
 * and reused, responses only counted. It does far less per call than grpc-js
 * (no message objects, interceptors or per-call promise chains), so a ratio of
 * proxied to direct throughput is about the proxy, not the client.
 */
export function connect(target: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${target}`, {
      settings: { initialWindowSize: 1024 * 1024, enablePush: false },
      maxSessionMemory: 1024,
      peerMaxConcurrentStreams: 100_000,
    });
    session.once('connect', () => {
      session.setLocalWindowSize(16 * 1024 * 1024);
      session.off('error', reject);
      session.on('error', () => {});
      resolve(session);
    });
    session.once('error', reject);
  });
}

export interface CallResult {
  /** grpc-status as a number; -1 when the call failed below gRPC (reset, connection lost). */
  code: number;
  message: string;
  responseBytes: number;
  trailers: Record<string, string>;
}

export function requestHeaders(path: string, metadata: Record<string, string>): OutgoingHttpHeaders {
  return {
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...metadata,
  };
}

/** One call with a single request message already framed; resolves when the stream closed. */
export function call(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  framedRequest: Buffer,
): Promise<CallResult> {
  return new Promise((resolve) => {
    const result: CallResult = { code: -1, message: '', responseBytes: 0, trailers: {} };
    const stream = session.request(headers);
    const onFields = (h: http2.IncomingHttpHeaders): void => {
      const s = h['grpc-status'];
      if (s !== undefined) {
        result.code = Number(s);
        result.message = String(h['grpc-message'] ?? '');
        for (const [k, v] of Object.entries(h)) if (typeof v === 'string' && !k.startsWith(':')) result.trailers[k] = v;
      }
    };
    stream.on('response', onFields);
    stream.on('trailers', onFields);
    stream.on('data', (chunk: Buffer) => {
      result.responseBytes += chunk.length;
    });
    stream.on('error', (err) => {
      if (result.code < 0) result.message = err.message;
    });
    stream.on('close', () => {
      if (result.code < 0 && !result.message)
        result.message = `stream closed without a gRPC status (HTTP/2 code ${stream.rstCode})`;
      resolve(result);
    });
    stream.end(framedRequest);
  });
}

export function framed(message: Buffer): Buffer {
  return Buffer.concat([framePrefix(message.length), message]);
}

/**
 * Tells the harness (a line on stdout) that set-up and warm-up are over and
 * the measured part starts now, so it counts the proxy's CPU and memory from here.
 */
export function announceMeasuring(): Promise<void> {
  return new Promise((resolve) => process.stdout.write(JSON.stringify({ phase: 'measuring' }) + '\n', () => resolve()));
}
