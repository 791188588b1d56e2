import type { ServerHttp2Stream } from 'node:http2';
import { Code, encodeGrpcMessage } from '../../src/reapi/grpc-status';
import { FRAME_HEADER_BYTES, framePrefix } from '../common/grpc-wire';

/** Largest unary request the memory upstream reads. */
export const MAX_UNARY_REQUEST_BYTES = 16 * 1024 * 1024;

const OK_TRAILERS = Object.freeze({ 'grpc-status': '0' });

/** Sends one response message and OK (plus `trailers`). */
export function respondMessage(
  stream: ServerHttp2Stream,
  message: Uint8Array,
  trailers?: Record<string, string>,
): void {
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.once('wantTrailers', () => {
    if (!stream.destroyed) stream.sendTrailers(trailers ? { ...OK_TRAILERS, ...trailers } : OK_TRAILERS);
  });
  stream.write(framePrefix(message.length));
  stream.end(message);
}

/** Trailers-only error response (or trailers after a body, when headers went out). */
export function respondError(stream: ServerHttp2Stream, code: number, message: string): void {
  if (stream.destroyed || stream.closed) return;
  const trailers = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message) };
  if (!stream.headersSent) {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
    return;
  }
  stream.once('wantTrailers', () => {
    if (!stream.destroyed) stream.sendTrailers(trailers);
  });
  stream.end();
}

/** Reads the single request message of a unary-request call; answers errors itself. */
export function readUnary(stream: ServerHttp2Stream, onMessage: (message: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let total = 0;
  let failed = false;
  stream.on('data', (chunk: Buffer) => {
    if (failed) return;
    total += chunk.length;
    if (total > MAX_UNARY_REQUEST_BYTES + FRAME_HEADER_BYTES) {
      failed = true;
      respondError(stream, Code.RESOURCE_EXHAUSTED, `request larger than ${MAX_UNARY_REQUEST_BYTES} bytes`);
      return;
    }
    chunks.push(chunk);
  });
  stream.on('end', () => {
    if (failed) return;
    const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    if (all.length < FRAME_HEADER_BYTES || all[0] !== 0 || all.readUInt32BE(1) !== all.length - FRAME_HEADER_BYTES) {
      respondError(stream, Code.INVALID_ARGUMENT, 'expected exactly one uncompressed request message');
      return;
    }
    try {
      onMessage(all.subarray(FRAME_HEADER_BYTES));
    } catch (err) {
      respondError(stream, Code.INVALID_ARGUMENT, `bad request: ${(err as Error).message}`);
    }
  });
  stream.on('error', () => {});
}
