import { FRAME_HEADER_BYTES } from './grpc-frame';

/**
 * Watches a gRPC byte stream for a message longer than the limit without
 * buffering or copying it: it reads only the 5-byte frame prefixes and skips
 * payloads by counting. Cost per chunk is O(frames in the chunk).
 */
export class FrameSizeGuard {
  private remaining = 0;
  // Only for a prefix split across chunks (rare); allocated then, not per call.
  private header: Buffer | undefined;
  private headerFill = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** Returns the announced size of the first frame over the limit, or -1 if all is well. */
  check(chunk: Buffer): number {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - pos);
        this.remaining -= n;
        pos += n;
        continue;
      }
      if (this.headerFill === 0 && chunk.length - pos >= FRAME_HEADER_BYTES) {
        const length = chunk.readUInt32BE(pos + 1);
        pos += FRAME_HEADER_BYTES;
        if (length > this.maxMessageBytes) return length;
        this.remaining = length;
        continue;
      }
      const header = (this.header ??= Buffer.alloc(FRAME_HEADER_BYTES));
      const n = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - pos);
      chunk.copy(header, this.headerFill, pos, pos + n);
      this.headerFill += n;
      pos += n;
      if (this.headerFill === FRAME_HEADER_BYTES) {
        this.headerFill = 0;
        const length = header.readUInt32BE(1);
        if (length > this.maxMessageBytes) return length;
        this.remaining = length;
      }
    }
    return -1;
  }
}
