import { once } from 'node:events';
import type http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';

/**
 * The three grpc-js call shapes behind one interface, so one runner can
 * script every method. Response sending respects backpressure; an aborted
 * `signal` (client gone) makes a pending send reject.
 */

export type AnyServerCall =
  | grpc.ServerUnaryCall<Buffer, Buffer>
  | grpc.ServerWritableStream<Buffer, Buffer>
  | grpc.ServerReadableStream<Buffer, Buffer>;

export interface CallTransport {
  /** Resolves once more may be sent (backpressure); rejects when the client went away. */
  send(message: Buffer): Promise<void>;
  /** Resolves once every sent message was handed to HTTP/2. */
  flush(): Promise<void>;
  finish(code: number, details: string, trailers: grpc.Metadata): void;
}

class AbortedError extends Error {
  constructor() {
    super('call ended by the client');
    this.name = 'AbortError';
  }
}

function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(new AbortedError());
    else signal.addEventListener('abort', () => reject(new AbortedError()), { once: true });
  });
}

/** Unary and client-streaming methods: one response message, through grpc-js's callback. */
export function singleResponseTransport(callback: grpc.sendUnaryData<Buffer>): CallTransport {
  let pending: Buffer | undefined;
  return {
    send: async (message) => {
      pending ??= message;
    },
    flush: async () => undefined,
    finish: (code, details, trailers) => {
      if (code === grpc.status.OK) callback(null, pending ?? Buffer.alloc(0), trailers);
      else callback({ code, details, metadata: trailers }, null);
    },
  };
}

/** Server-streaming methods: each message written in order; waits for 'drain' when write() says so. */
export function streamTransport(call: grpc.ServerWritableStream<Buffer, Buffer>, signal: AbortSignal): CallTransport {
  const aborted = untilAborted(signal);
  aborted.catch(() => undefined);
  let lastWrite: Promise<void> = Promise.resolve();
  return {
    send: async (message) => {
      let accepted = true;
      lastWrite = new Promise<void>((resolve) => {
        accepted = call.write(message, () => resolve());
      });
      if (!accepted) await Promise.race([once(call, 'drain'), aborted]);
    },
    // "N messages, then reset" waits for this, so the N are out before the reset.
    flush: () => Promise.race([lastWrite, aborted]),
    finish: (code, details, trailers) => {
      if (code === grpc.status.OK) call.end(trailers);
      else call.emit('error', { code, details, metadata: trailers });
    },
  };
}

/**
 * The HTTP/2 stream under a grpc-js server call. grpc-js does not expose it;
 * it sits on the call's internal `call` object (or deeper when interceptors
 * wrap it). Tests of the fake itself fail loudly if a grpc-js update moves it.
 */
export function http2StreamOf(call: AnyServerCall): http2.ServerHttp2Stream {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let inner: any = (call as any).call;
  for (let depth = 0; inner && depth < 8; depth++) {
    const stream = inner.stream;
    if (stream && typeof stream.close === 'function' && stream.session) return stream as http2.ServerHttp2Stream;
    inner = inner.nextCall;
  }
  throw new Error('fake upstream: cannot find the HTTP/2 stream under the grpc-js call (grpc-js internals changed)');
}
