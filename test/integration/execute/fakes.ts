import { EventEmitter } from 'node:events';
import type { RelayOptions, RelayOutcome, UpstreamCaller } from '../../../src/passthrough/upstream-caller';
import { encodeFrame } from '../../../src/rpc/grpc-frame';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import type { CallStatus, Metadata, ServerCall, UnaryRequest } from '../../../src/rpc/server-call';
import type { ClosureEnsurer, EnsureReport } from '../../../src/store/closure-ensurer';

/** A ServerCall driven by the test: records what the handler sends; `cancel()` plays a client going away. */
export class FakeServerCall implements ServerCall {
  readonly messages: Buffer[] = [];
  status: CallStatus | undefined;
  ended = false;
  headersSent = false;
  readonly peer = '127.0.0.1:1';
  readonly deadline: number | undefined = undefined;
  readonly frame: Buffer;
  private readonly controller = new AbortController();
  private readonly events = new EventEmitter();

  constructor(
    readonly path: string,
    readonly message: Buffer,
    readonly metadata: Metadata = { authorization: 'Bearer client-token' },
  ) {
    this.frame = encodeFrame(message);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  readUnaryRequest(): Promise<UnaryRequest> {
    return Promise.resolve({ frame: this.frame, message: this.message });
  }

  sendHeaders(): void {
    this.headersSent = true;
  }

  sendMessage(message: Uint8Array): Promise<void> {
    if (!this.ended) {
      this.headersSent = true;
      this.messages.push(Buffer.from(message));
      this.events.emit('change');
    }
    return Promise.resolve();
  }

  end(status: CallStatus): void {
    if (this.ended) return;
    this.ended = true;
    this.status = status;
    this.events.emit('change');
  }

  /** The client goes away: the call counts as answered with CANCELLED, as the server does it. */
  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    this.status = { code: Code.CANCELLED, message: 'cancelled by the client' };
    this.controller.abort();
    this.events.emit('change');
  }

  /** Resolves once `predicate` holds (checked now and after every message or end). */
  until(predicate: (call: FakeServerCall) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!predicate(this)) return;
        this.events.off('change', check);
        resolve();
      };
      this.events.on('change', check);
      check();
    });
  }

  operations(): Array<{ name: string; done: boolean; response?: { type_url: string; value: Uint8Array } }> {
    return this.messages.map((m) => T.Operation.toObject(T.Operation.decode(m)) as never);
  }
}

export interface RelayedCall {
  call: ServerCall;
  path: string;
  frame: Buffer;
  /** Resolve to let the relay answer. */
  release: (answer: RelayAnswer) => void;
}

export interface RelayAnswer {
  messages: Buffer[];
  code?: number;
}

/**
 * An UpstreamCaller whose answers the test gives per relay. Each relay waits
 * until the test releases it (or the call aborts), then streams the messages
 * through onMessage and the call, and ends the call.
 */
export class FakeUpstreamCaller implements UpstreamCaller {
  readonly relays: RelayedCall[] = [];
  private readonly events = new EventEmitter();

  relay(call: ServerCall, path: string, requestFrame: Buffer, options: RelayOptions = {}): Promise<RelayOutcome> {
    return new Promise<RelayOutcome>((resolve) => {
      let released = false;
      const onAbort = (): void => {
        if (released) return;
        released = true;
        resolve({ code: Code.CANCELLED, messages: 0 });
      };
      call.signal.addEventListener('abort', onAbort, { once: true });
      const release = (answer: RelayAnswer): void => {
        if (released) return;
        released = true;
        call.signal.removeEventListener('abort', onAbort);
        void (async () => {
          for (const m of answer.messages) {
            options.onMessage?.(m);
            await call.sendMessage(m);
          }
          const code = answer.code ?? Code.OK;
          call.end({ code: code as never });
          resolve({ code, messages: answer.messages.length });
        })();
      };
      this.relays.push({ call, path, frame: Buffer.from(requestFrame), release });
      this.events.emit('relay');
    });
  }

  /** The n-th relay (0-based), once it has been made. */
  nth(n: number): Promise<RelayedCall> {
    return new Promise((resolve) => {
      const check = (): void => {
        const r = this.relays[n];
        if (r === undefined) return;
        this.events.off('relay', check);
        resolve(r);
      };
      this.events.on('relay', check);
      check();
    });
  }
}

export function upstreamOperation(name: string, done: boolean): Buffer {
  const response = done
    ? {
        type_url: 'type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse',
        value: T.ExecuteResponse.encode({ result: { exitCode: 0 } }).finish(),
      }
    : undefined;
  return Buffer.from(T.Operation.encode({ name, done, ...(response ? { response } : {}) }).finish());
}

/**
 * A ClosureEnsurer the test controls: each call is recorded and waits until
 * the test settles it (or its signal aborts, which rejects like the real one).
 */
export class FakeEnsurer implements ClosureEnsurer {
  readonly calls: Array<{
    paths: readonly string[];
    signal: AbortSignal;
    resolve: (report?: Partial<EnsureReport>) => void;
    reject: (err: unknown) => void;
  }> = [];
  /** When set, calls settle at once with this outcome. */
  auto: { report?: Partial<EnsureReport>; error?: unknown } | undefined;
  private readonly events = new EventEmitter();

  ensure(paths: readonly string[], signal: AbortSignal): Promise<EnsureReport> {
    return new Promise<EnsureReport>((resolve, reject) => {
      const full = (r: Partial<EnsureReport> = {}): EnsureReport => ({
        requested: new Set(paths).size,
        cachedValid: 0,
        missing: [],
        realised: [],
        joined: 0,
        checkMs: 1,
        realiseMs: 0,
        visibleWaitMs: 0,
        ...r,
      });
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      this.calls.push({ paths: [...paths], signal, resolve: (r) => resolve(full(r)), reject });
      this.events.emit('call');
      if (this.auto?.error !== undefined) reject(this.auto.error);
      else if (this.auto) resolve(full(this.auto.report));
    });
  }

  nth(n: number): Promise<FakeEnsurer['calls'][number]> {
    return new Promise((resolve) => {
      const check = (): void => {
        const c = this.calls[n];
        if (c === undefined) return;
        this.events.off('call', check);
        resolve(c);
      };
      this.events.on('call', check);
      check();
    });
  }
}
