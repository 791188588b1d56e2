import type { ServerHttp2Stream } from 'node:http2';
import { FRAME_HEADER_BYTES, encodeFrame } from '../rpc/grpc-frame';
import { FrameSizeGuard } from '../rpc/frame-size-guard';
import { Code } from '../reapi/grpc-status';
import { onDeadline } from '../rpc/deadline-timer';
import { endWithStatus } from '../rpc/grpc-respond';
import { UpstreamExchange, type HeaderMap } from './upstream-exchange';
import type { UpstreamPool } from './upstream-pool';
import { WRITE_AHEAD, type WriteAheadSlot } from './write-ahead';

export interface IncomingCall {
  stream: ServerHttp2Stream;
  path: string;
  metadata: Record<string, string | string[]>;
  deadline: number | undefined;
}

export interface ForwardOptions {
  maxMessageBytes: number;
  /**
   * For unary calls whose single response message the proxy must adjust
   * (Capabilities): gets the plain message, returns the message to send.
   * Compressed responses are forwarded unchanged.
   */
  rewriteUnaryResponse?: (message: Buffer) => Buffer;
}

/**
 * Forwards one call to the upstream as bytes: request and response bodies are
 * piped chunk by chunk (never decoded), headers and trailers are copied field by
 * field, the deadline is carried as grpc-timeout, a client that goes away cancels
 * the upstream call, and each side's flow control pauses the other
 * (backpressure), so memory stays bounded whatever the blob size.
 * Calls `onDone` once with the gRPC status code the client was given.
 * (A callback, not a promise: this runs for every call, and the promise and
 * its reaction job showed up in profiles.)
 */
export function forwardCall(
  call: IncomingCall,
  pool: UpstreamPool,
  options: ForwardOptions,
  onDone: (code: number) => void,
): void {
  const { stream } = call;
  let settled = false;
  let cancelDeadline: (() => void) | undefined;
  const settle = (code: number): void => {
    if (settled) return;
    settled = true;
    cancelDeadline?.();
    // The request may be paused waiting for the upstream (backpressure) when the call ends early
    // (an early answer, a lost upstream): read and drop the rest, or the stream never sees its
    // end, is never destroyed, and holds the client's connection open after the client has gone.
    stream.resume();
    onDone(code);
  };
  const answer = (code: number, message: string): void => {
    endWithStatus(stream, { code: code as never, message });
    settle(code);
  };

  const responseSlot: WriteAheadSlot = { held: false };
  const rewrite = options.rewriteUnaryResponse;
  let held: Buffer[] | undefined = rewrite ? [] : undefined;
  let heldBytes = 0;

  const exchange = new UpstreamExchange(pool, call.path, call.metadata, call.deadline, {
    response(status, headers, trailersOnly) {
      if (stream.destroyed || stream.closed) return;
      // `headers` is a fresh object of our own: add the status to it rather than copy it.
      headers[':status'] = String(status);
      stream.respond(headers, trailersOnly ? TRAILERS_ONLY : WITH_TRAILERS);
      if (trailersOnly) settle(Number(headers['grpc-status'] ?? Code.UNKNOWN));
    },
    data(chunk) {
      if (stream.destroyed || stream.closed) return true;
      if (held) {
        heldBytes += chunk.length;
        if (heldBytes > options.maxMessageBytes + FRAME_HEADER_BYTES) {
          // Too large to adjust: stop holding and pass what we have through.
          for (const c of held) stream.write(c);
          held = undefined;
        } else {
          held.push(chunk);
          return true;
        }
      }
      const ok = WRITE_AHEAD.write(stream, chunk, responseSlot);
      if (!ok) stream.once('drain', () => exchange.resume());
      return ok;
    },
    end(trailers: HeaderMap) {
      if (stream.destroyed || stream.closed) return settle(Code.CANCELLED);
      if (held) {
        const body = Buffer.concat(held);
        held = undefined;
        stream.write(rewriteBody(body, rewrite!));
      }
      stream.once('wantTrailers', () => {
        if (!stream.destroyed) stream.sendTrailers(trailers);
      });
      stream.end();
      settle(Number(trailers['grpc-status'] ?? Code.UNKNOWN));
    },
    fail(code, message) {
      answer(code, message);
    },
  });

  const guard = new FrameSizeGuard(options.maxMessageBytes);
  stream.on('data', (chunk: Buffer) => {
    if (settled) return;
    const tooBig = guard.check(chunk);
    if (tooBig >= 0) {
      exchange.cancel();
      answer(
        Code.RESOURCE_EXHAUSTED,
        `request message of ${tooBig} bytes exceeds the proxy's limit of ${options.maxMessageBytes} bytes (max_message_bytes); lower the client's batch size or raise the limit`,
      );
      return;
    }
    if (!exchange.write(chunk)) {
      stream.pause();
      exchange.onDrain(() => stream.resume());
    }
  });
  stream.on('end', () => exchange.end());
  stream.on('error', () => {});
  stream.on('close', () => {
    if (!settled) {
      exchange.cancel();
      settle(Code.CANCELLED);
    }
  });
  if (call.deadline !== undefined) {
    cancelDeadline = onDeadline(call.deadline, () => {
      if (settled) return;
      exchange.cancel();
      answer(Code.DEADLINE_EXCEEDED, `deadline exceeded while waiting for upstream ${pool.target.url}`);
    });
  }
}

const TRAILERS_ONLY = { endStream: true, sendDate: false } as never;
const WITH_TRAILERS = { waitForTrailers: true, sendDate: false } as never;

function rewriteBody(body: Buffer, rewrite: (message: Buffer) => Buffer): Buffer {
  if (body.length < FRAME_HEADER_BYTES || body[0] !== 0) return body;
  const length = body.readUInt32BE(1);
  if (body.length !== FRAME_HEADER_BYTES + length) return body;
  try {
    return encodeFrame(rewrite(body.subarray(FRAME_HEADER_BYTES)));
  } catch {
    return body;
  }
}
