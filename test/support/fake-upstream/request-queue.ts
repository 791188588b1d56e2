import type * as grpc from '@grpc/grpc-js';

/**
 * Incoming messages of a client-streaming call, recorded as they arrive and
 * handed to one consumer as an async iterable. Reading pauses the HTTP/2
 * stream while `highWater` messages wait, so a slow handler applies
 * backpressure to the client instead of buffering without bound.
 */
export class RequestQueue implements AsyncIterable<Buffer> {
  private readonly items: Buffer[] = [];
  private ended = false;
  private discarding = false;
  private wake: (() => void) | undefined;
  /** Resolves when the client half-closed or the call went away. */
  readonly finished: Promise<void>;

  constructor(
    private readonly call: grpc.ServerReadableStream<Buffer, Buffer>,
    onMessage: (message: Buffer) => void,
    private readonly highWater = 16,
  ) {
    let finish!: () => void;
    this.finished = new Promise((resolve) => (finish = resolve));
    const end = () => {
      this.ended = true;
      finish();
      this.notify();
    };
    call.on('data', (message: Buffer) => {
      onMessage(message);
      if (this.discarding) return;
      this.items.push(message);
      if (this.items.length >= this.highWater) call.pause();
      this.notify();
    });
    call.on('end', end);
    call.on('close', end);
    call.on('error', end);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const item = this.items.shift();
      if (item) {
        if (this.items.length < this.highWater / 2 && this.call.isPaused()) this.call.resume();
        yield item;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Stops queueing; later messages are still recorded, then dropped. */
  discardRest(): void {
    this.discarding = true;
    this.items.length = 0;
    if (this.call.isPaused()) this.call.resume();
  }
}
