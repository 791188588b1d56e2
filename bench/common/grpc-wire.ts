/**
 * Hand-rolled protobuf and gRPC framing for the bench processes' hot paths:
 * the upstream and the load generator build and read the few fields they need
 * without a protobuf library, so their own cost stays small next to the
 * proxy's. Pure.
 */
import { FRAME_HEADER_BYTES } from '../../src/rpc/grpc-frame';
import { readVarint, writeVarint } from '../../src/reapi/wire';

export { FRAME_HEADER_BYTES };

export function framePrefix(length: number, compressed = false): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(length, 1);
  return out;
}

export function frame(message: Uint8Array): Buffer {
  return Buffer.concat([framePrefix(message.length), message]);
}

export function varintField(field: number, value: number): Buffer {
  return Buffer.concat([writeVarint(field * 8), writeVarint(value)]);
}

export function bytesField(field: number, payload: Uint8Array | string): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([writeVarint(field * 8 + 2), writeVarint(bytes.length), bytes]);
}

/** Tag and length of a LEN field, to send before a payload written separately (no copy of the payload). */
export function lenPrefix(field: number, length: number): Buffer {
  return Buffer.concat([writeVarint(field * 8 + 2), writeVarint(length)]);
}

/** REAPI Digest {hash = 1, size_bytes = 2}. */
export function digestMessage(hash: string, size: number): Buffer {
  return size > 0 ? Buffer.concat([bytesField(1, hash), varintField(2, size)]) : bytesField(1, hash);
}

export interface Field {
  field: number;
  /** Varint value (wire type 0). */
  value: number;
  /** Payload (wire type 2), a view into the message. */
  bytes: Buffer | undefined;
}

/** Top-level fields of a message, in order. Throws on malformed input. */
export function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const tag = readVarint(buf, pos);
    pos = tag.next;
    const field = Math.floor(tag.value / 8);
    switch (tag.value & 7) {
      case 0: {
        const v = readVarint(buf, pos);
        out.push({ field, value: v.value, bytes: undefined });
        pos = v.next;
        break;
      }
      case 2: {
        const len = readVarint(buf, pos);
        const end = len.next + len.value;
        if (end > buf.length) throw new Error('truncated field');
        out.push({ field, value: 0, bytes: buf.subarray(len.next, end) });
        pos = end;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${tag.value & 7}`);
    }
    if (pos > buf.length) throw new Error('truncated field');
  }
  return out;
}

/** `hash/size` of an encoded Digest, the key the memory upstream stores blobs under. */
export function digestKey(digest: Buffer): string {
  let hash = '';
  let size = 0;
  for (const f of fields(digest)) {
    if (f.field === 1 && f.bytes) hash = f.bytes.toString('latin1');
    else if (f.field === 2) size = f.value;
  }
  return `${hash}/${size}`;
}

/**
 * Walks a gRPC byte stream frame by frame without copying payloads: counts
 * messages and payload bytes. The load generator uses it to consume large
 * responses at memcpy-free cost.
 */
export class FrameCounter {
  messages = 0;
  payloadBytes = 0;
  private remaining = 0;
  private header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - pos);
        this.remaining -= n;
        this.payloadBytes += n;
        pos += n;
        continue;
      }
      const n = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - pos);
      chunk.copy(this.header, this.headerFill, pos, pos + n);
      this.headerFill += n;
      pos += n;
      if (this.headerFill === FRAME_HEADER_BYTES) {
        this.headerFill = 0;
        this.messages++;
        this.remaining = this.header.readUInt32BE(1);
      }
    }
  }

  /** True when the stream ended on a frame boundary. */
  get complete(): boolean {
    return this.remaining === 0 && this.headerFill === 0;
  }
}

export const PATHS = {
  findMissingBlobs: '/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs',
  batchUpdateBlobs: '/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs',
  batchReadBlobs: '/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs',
  getTree: '/build.bazel.remote.execution.v2.ContentAddressableStorage/GetTree',
  getActionResult: '/build.bazel.remote.execution.v2.ActionCache/GetActionResult',
  updateActionResult: '/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult',
  getCapabilities: '/build.bazel.remote.execution.v2.Capabilities/GetCapabilities',
  execute: '/build.bazel.remote.execution.v2.Execution/Execute',
  waitExecution: '/build.bazel.remote.execution.v2.Execution/WaitExecution',
  read: '/google.bytestream.ByteStream/Read',
  write: '/google.bytestream.ByteStream/Write',
  queryWriteStatus: '/google.bytestream.ByteStream/QueryWriteStatus',
  /** The memory upstream's own counters, as a JSON message. */
  upstreamStats: '/bench.MemoryUpstream/Stats',
} as const;

/** Request metadata the memory upstream reads: how long Execute waits before answering done. */
export const EXECUTE_DELAY_HEADER = 'bench-execute-delay-ms';
/** Trailer the memory upstream adds to Execute: how many Execute calls were open when it answered. */
export const OPEN_EXECUTES_TRAILER = 'bench-open-executes';
