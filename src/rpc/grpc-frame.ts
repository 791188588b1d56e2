import { gunzipSync, inflateSync } from 'node:zlib';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';

/** gRPC length-prefixed message framing: 1 byte compressed flag, 4 bytes big-endian length, payload. */
export const FRAME_HEADER_BYTES = 5;

export function encodeFrame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, FRAME_HEADER_BYTES);
  return out;
}

export interface Frame {
  compressed: boolean;
  payload: Buffer;
}

/**
 * Splits a byte stream into gRPC frames. Bounded: a frame announcing more than
 * `maxMessageBytes` is rejected before its payload is buffered.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(
    private readonly maxMessageBytes: number,
    /** The setting or rule the limit comes from, for the refusal. */
    private readonly limitName = 'max_message_bytes',
  ) {}

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < FRAME_HEADER_BYTES) break;
      const head = this.peek(FRAME_HEADER_BYTES);
      const length = head.readUInt32BE(1);
      if (length > this.maxMessageBytes) {
        throw new ProxyError(
          Code.RESOURCE_EXHAUSTED,
          'MESSAGE_TOO_LARGE',
          `request message of ${length} bytes exceeds the proxy's limit of ${this.maxMessageBytes} bytes (${this.limitName})`,
        );
      }
      if (this.buffered < FRAME_HEADER_BYTES + length) break;
      const all = this.take(FRAME_HEADER_BYTES + length);
      frames.push({ compressed: all[0] === 1, payload: all.subarray(FRAME_HEADER_BYTES) });
    }
    return frames;
  }

  /** Bytes received that do not yet form a whole frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!.subarray(0, n);
    return Buffer.concat(this.chunks).subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

/** Returns the plain message bytes of a frame, decompressing per the call's grpc-encoding. */
export function framePayload(frame: Frame, encoding: string | undefined, maxMessageBytes: number): Buffer {
  if (!frame.compressed) return frame.payload;
  let out: Buffer;
  try {
    if (encoding === 'gzip') out = gunzipSync(frame.payload, { maxOutputLength: maxMessageBytes });
    else if (encoding === 'deflate') out = inflateSync(frame.payload, { maxOutputLength: maxMessageBytes });
    else
      throw new ProxyError(
        Code.UNIMPLEMENTED,
        'UNSUPPORTED_ENCODING',
        `compressed message with grpc-encoding '${encoding ?? 'identity'}' is not supported by the proxy`,
      );
  } catch (err) {
    if (err instanceof ProxyError) throw err;
    throw new ProxyError(Code.INVALID_ARGUMENT, 'BAD_COMPRESSION', `cannot decompress ${encoding} request message`, {
      cause: err,
    });
  }
  return out;
}
