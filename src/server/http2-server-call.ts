import type { ServerHttp2Stream } from 'node:http2';
import { ProxyError } from '../errors';
import type { ByteBudget } from '../util/byte-budget';
import { FrameDecoder, encodeFrame, framePayload } from '../rpc/grpc-frame';
import { Code } from '../reapi/grpc-status';
import { onDeadline } from '../rpc/deadline-timer';
import { endWithStatus } from '../rpc/grpc-respond';
import type { CallStatus, Metadata, ServerCall, UnaryRequest } from '../rpc/server-call';

/**
 * `ServerCall` over a node:http2 server stream, for the calls the proxy answers
 * itself. Cancellation: the client resetting the stream, the connection
 * dropping, or the deadline passing all abort `signal`; the deadline also
 * answers DEADLINE_EXCEEDED.
 */
export class Http2ServerCall implements ServerCall {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private finished = false;
  private cancelDeadline: (() => void) | undefined;
  private readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    private readonly stream: ServerHttp2Stream,
    readonly path: string,
    readonly metadata: Metadata,
    readonly deadline: number | undefined,
    readonly peer: string,
    private readonly maxMessageBytes: number,
    readonly client?: string,
    /** Longest wait for the request message (a stream that announces a message and never sends it holds memory). */
    private readonly readTimeoutMs = 60_000,
    /** Bytes of request messages being read, across all calls (limits.requestBufferBytes). */
    private readonly readBudget?: ByteBudget,
    /** Where `maxMessageBytes` comes from, for the refusal. */
    private readonly limitName = 'max_message_bytes',
  ) {
    this.signal = this.controller.signal;
    this.done = new Promise((r) => (this.resolveDone = r));
    stream.on('error', () => {});
    stream.on('close', () => {
      if (!this.finished) {
        this.finished = true;
        this.controller.abort(new ProxyError(Code.CANCELLED, 'CLIENT_CANCELLED', 'the client cancelled the call'));
      }
      this.cleanup();
    });
    if (deadline !== undefined) {
      this.cancelDeadline = onDeadline(deadline, () => {
        const err = new ProxyError(
          Code.DEADLINE_EXCEEDED,
          'DEADLINE_EXCEEDED',
          `deadline exceeded in the proxy (${path})`,
        );
        this.end({ code: Code.DEADLINE_EXCEEDED, message: err.message });
        this.controller.abort(err);
      });
    }
  }

  get ended(): boolean {
    return this.finished;
  }

  get headersSent(): boolean {
    return this.stream.headersSent;
  }

  /** Resolves when the call has ended, however it ended. */
  whenDone(): Promise<void> {
    return this.done;
  }

  readUnaryRequest(): Promise<UnaryRequest> {
    return new Promise((resolve, reject) => {
      const decoder = new FrameDecoder(this.maxMessageBytes, this.limitName);
      const frames: Buffer[] = [];
      let message: Buffer | undefined;
      let failed = false;
      const timer = setTimeout(
        () =>
          fail(
            new ProxyError(
              Code.DEADLINE_EXCEEDED,
              'REQUEST_READ_TIMEOUT',
              `the request message of ${this.path} did not arrive within ${this.readTimeoutMs} ms (limits.requestReadTimeoutMs)`,
            ),
          ),
        this.readTimeoutMs,
      );
      let held = 0;
      const giveBack = (): void => {
        this.readBudget?.give(held);
        held = 0;
      };
      const fail = (err: unknown): void => {
        clearTimeout(timer);
        giveBack();
        if (failed) return;
        failed = true;
        this.stream.removeAllListeners('data');
        this.stream.resume();
        reject(err);
      };
      this.stream.on('data', (chunk: Buffer) => {
        if (this.readBudget) {
          if (!this.readBudget.take(chunk.length)) {
            return fail(
              new ProxyError(
                Code.RESOURCE_EXHAUSTED,
                'REQUEST_BUFFER_FULL',
                `the proxy is reading ${this.readBudget.inUse} bytes of requests already (limits.requestBufferBytes is ${this.readBudget.limit}); retry shortly`,
              ),
            );
          }
          held += chunk.length;
        }
        try {
          for (const f of decoder.push(chunk)) {
            if (frames.length > 0)
              throw new ProxyError(
                Code.INVALID_ARGUMENT,
                'TOO_MANY_MESSAGES',
                `${this.path} takes one request message, got more`,
              );
            const header = Buffer.allocUnsafe(5);
            header[0] = f.compressed ? 1 : 0;
            header.writeUInt32BE(f.payload.length, 1);
            frames.push(Buffer.concat([header, f.payload]));
            const encoding = this.metadata['grpc-encoding'];
            message = framePayload(f, typeof encoding === 'string' ? encoding : undefined, this.maxMessageBytes);
          }
        } catch (err) {
          fail(err);
        }
      });
      this.stream.once('end', () => {
        if (failed) return;
        if (frames.length !== 1 || message === undefined || decoder.pendingBytes !== 0) {
          return fail(
            new ProxyError(
              Code.INVALID_ARGUMENT,
              'NO_REQUEST_MESSAGE',
              `${this.path} needs exactly one complete request message`,
            ),
          );
        }
        clearTimeout(timer);
        giveBack();
        resolve({ frame: frames[0]!, message });
      });
      this.signal.addEventListener('abort', () => fail(this.signal.reason), { once: true });
    });
  }

  sendHeaders(headers: Record<string, string | string[]> = {}): void {
    if (this.finished || this.stream.headersSent || this.stream.destroyed) return;
    this.stream.respond({ ...headers, ':status': 200, 'content-type': 'application/grpc' }, {
      waitForTrailers: true,
      sendDate: false,
    } as never);
  }

  sendMessage(message: Uint8Array): Promise<void> {
    if (this.finished || this.stream.destroyed) return Promise.resolve();
    this.sendHeaders();
    if (this.stream.write(encodeFrame(message))) return Promise.resolve();
    return new Promise((resolve) => {
      const go = (): void => {
        this.stream.off('drain', go);
        this.stream.off('close', go);
        resolve();
      };
      this.stream.on('drain', go);
      this.stream.on('close', go);
    });
  }

  end(status: CallStatus): void {
    if (this.finished) return;
    this.finished = true;
    endWithStatus(this.stream, status);
    this.cleanup();
  }

  private cleanup(): void {
    this.cancelDeadline?.();
    this.cancelDeadline = undefined;
    this.resolveDone();
  }
}
