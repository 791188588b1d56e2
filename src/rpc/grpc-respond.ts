import type { ServerHttp2Stream } from 'node:http2';
import { encodeGrpcMessage } from '../reapi/grpc-status';
import type { CallStatus } from './server-call';

/** Trailer fields for a status. */
export function statusTrailers(status: CallStatus): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = { ...(status.trailers ?? {}) };
  out['grpc-status'] = String(status.code);
  if (status.message) out['grpc-message'] = encodeGrpcMessage(status.message);
  if (status.details && status.details.length > 0) {
    out['grpc-status-details-bin'] = Buffer.from(status.details).toString('base64').replace(/=+$/, '');
  }
  return out;
}

/**
 * Ends a raw HTTP/2 stream with a gRPC status: as a trailers-only response when
 * no headers went out yet, otherwise as trailers after the body. Safe to call on
 * a stream that is already closed.
 */
export function endWithStatus(stream: ServerHttp2Stream, status: CallStatus): void {
  if (stream.destroyed || stream.closed) return;
  const trailers = statusTrailers(status);
  if (!stream.headersSent) {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, {
      endStream: true,
      sendDate: false,
    } as never);
    return;
  }
  if (stream.writableEnded) return;
  stream.once('wantTrailers', () => {
    if (!stream.destroyed) stream.sendTrailers(trailers);
  });
  stream.end();
}
