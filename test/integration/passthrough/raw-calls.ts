import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';

/**
 * A grpc-js client that sends and receives raw message bytes by method path
 * and records everything the caller sees of a call: response headers,
 * messages, status code, details and trailers. Proxied and direct answers are
 * compared as these records.
 */

const identity = (b: Buffer): Buffer => b;

export interface Answer {
  /** Initial metadata, if the server sent any before the status. */
  headers: grpc.Metadata | undefined;
  messages: Buffer[];
  code: number;
  details: string;
  trailers: grpc.Metadata;
}

export interface CallOptions {
  metadata?: grpc.Metadata;
  deadline?: number;
  /** Server streams: false to not keep response messages (a huge download is hashed by `onCall`, not held). */
  keepMessages?: boolean;
  /** Client streams: do not half-close after the last request (an upload still in progress). */
  keepOpen?: boolean;
  /** Sees the call object once it exists (to cancel it, watch data...). */
  onCall?: (call: ClientCall) => void;
}

export type Kind = 'unary' | 'serverStream' | 'clientStream';

/** What the three grpc-js client call objects have in common (their typings do not share one type). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (...args: any[]) => void;

export interface ClientCall {
  on(event: string, listener: Listener): unknown;
  once(event: string, listener: Listener): unknown;
  cancel(): void;
}

export function newClient(
  endpoint: string,
  credentials = grpc.credentials.createInsecure(),
  options: grpc.ClientOptions = {},
): grpc.Client {
  // No retries: a test must see the first failure, not a retried success.
  return new grpc.Client(endpoint, credentials, { 'grpc.enable_retries': 0, ...options });
}

function collect(call: ClientCall, messages: Buffer[]): Promise<Answer> {
  let headers: grpc.Metadata | undefined;
  call.on('metadata', (md: grpc.Metadata) => (headers = md));
  call.on('error', () => undefined);
  // 'status' can come before the unary callback; give the callback its turn.
  return new Promise((resolve) =>
    call.on('status', (s: grpc.StatusObject) =>
      setImmediate(() => resolve({ headers, messages, code: s.code, details: s.details, trailers: s.metadata })),
    ),
  );
}

function callOptions(options: CallOptions): grpc.CallOptions {
  return options.deadline === undefined ? {} : { deadline: options.deadline };
}

export function unary(client: grpc.Client, path: string, request: Buffer, options: CallOptions = {}): Promise<Answer> {
  const messages: Buffer[] = [];
  const call = client.makeUnaryRequest(
    path,
    identity,
    identity,
    request,
    options.metadata ?? new grpc.Metadata(),
    callOptions(options),
    (_e, v) => {
      if (v) messages.push(v);
    },
  );
  const answer = collect(call, messages);
  options.onCall?.(call);
  return answer;
}

export function serverStream(
  client: grpc.Client,
  path: string,
  request: Buffer,
  options: CallOptions = {},
): Promise<Answer> {
  const messages: Buffer[] = [];
  const call = client.makeServerStreamRequest(
    path,
    identity,
    identity,
    request,
    options.metadata ?? new grpc.Metadata(),
    callOptions(options),
  );
  if (options.keepMessages !== false) call.on('data', (m: Buffer) => messages.push(m));
  const answer = collect(call, messages);
  options.onCall?.(call);
  return answer;
}

/**
 * Sends `requests` (produced lazily, so a huge upload is never held) with
 * write() backpressure, then half-closes. Stops sending once the server has
 * answered, as real clients do after an early error.
 */
export function clientStream(
  client: grpc.Client,
  path: string,
  requests: Iterable<Buffer>,
  options: CallOptions = {},
): Promise<Answer> {
  const messages: Buffer[] = [];
  const call = client.makeClientStreamRequest(
    path,
    identity,
    identity,
    options.metadata ?? new grpc.Metadata(),
    callOptions(options),
    (_e, v) => {
      if (v) messages.push(v);
    },
  );
  const answer = collect(call, messages);
  options.onCall?.(call);
  let answered = false;
  void answer.then(() => (answered = true));
  void (async () => {
    for (const request of requests) {
      if (answered) return;
      if (!call.write(request)) await Promise.race([once(call, 'drain'), answer]);
    }
    if (!answered && !options.keepOpen) call.end();
  })();
  return answer;
}

/** One call of any shape; client streams send `requests`, the others the first of them. */
export function call(
  client: grpc.Client,
  kind: Kind,
  path: string,
  requests: Buffer[],
  options: CallOptions = {},
): Promise<Answer> {
  if (kind === 'clientStream') return clientStream(client, path, requests, options);
  if (kind === 'serverStream') return serverStream(client, path, requests[0]!, options);
  return unary(client, path, requests[0]!, options);
}

/** Metadata as a plain, comparable object. */
export function metadataObject(md: grpc.Metadata | undefined, drop: readonly string[] = []): Record<string, unknown[]> {
  if (!md) return {};
  const out: Record<string, unknown[]> = {};
  for (const [key, values] of Object.entries(md.toJSON())) if (!drop.includes(key)) out[key] = values as unknown[];
  return out;
}
