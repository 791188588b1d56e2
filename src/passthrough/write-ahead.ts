import type { Writable } from 'node:stream';

/** Per call and direction: whether this stream currently holds one of the write-ahead places. */
export interface WriteAheadSlot {
  held: boolean;
}

/**
 * Backpressure with bounded slack. Pausing the sending side the moment a
 * stream's write buffer passes Node's 16 KiB mark costs a pause/resume cycle,
 * with its flow-control updates, every few chunks of a large transfer: about
 * a third of the proxy's CPU per MiB of ByteStream data in the bench. Here a
 * stream may run up to `perStreamBytes` ahead of its reader instead, but only
 * while fewer than `maxStreams` streams do so; the others pause at Node's mark
 * as before. The extra memory is therefore at most maxStreams x perStreamBytes
 * (32 MiB by default) however many calls are open.
 *
 * Contract: `write` writes the chunk (always) and returns false when the
 * sender must pause until `stream` emits 'drain', which Node then guarantees.
 * Not shared across processes; safe because Node runs it on one thread.
 */
export class WriteAhead {
  private active = 0;

  constructor(
    private readonly maxStreams = 128,
    readonly perStreamBytes = 256 * 1024,
  ) {}

  write(stream: Writable, chunk: Buffer, slot: WriteAheadSlot): boolean {
    if (stream.write(chunk)) return true;
    if (!slot.held) {
      if (this.active >= this.maxStreams) return false;
      this.active++;
      slot.held = true;
      const release = (): void => {
        stream.off('drain', release);
        stream.off('close', release);
        if (!slot.held) return;
        slot.held = false;
        this.active--;
      };
      stream.once('drain', release);
      stream.once('close', release);
    }
    return stream.writableLength < this.perStreamBytes;
  }

  /** Streams running ahead right now (for tests). */
  get streamsAhead(): number {
    return this.active;
  }
}

/** The process-wide budget the forwarder uses. */
export const WRITE_AHEAD = new WriteAhead();
