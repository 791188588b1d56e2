import * as grpc from '@grpc/grpc-js';
import { T } from '../../../src/reapi/protos';

/**
 * A grpc-js client that moves raw message bytes, and what a test needs to
 * judge an Execute: the gRPC status, and the final Operation's
 * ExecuteResponse.status when the call ended with one.
 */

const identity = (b: Buffer): Buffer => b;

export const EXECUTE = '/build.bazel.remote.execution.v2.Execution/Execute';
export const WAIT_EXECUTION = '/build.bazel.remote.execution.v2.Execution/WaitExecution';
export const FIND_MISSING = '/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs';
export const BATCH_UPDATE = '/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs';
export const BATCH_READ = '/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs';
export const GET_CAPABILITIES = '/build.bazel.remote.execution.v2.Capabilities/GetCapabilities';
export const BYTESTREAM_READ = '/google.bytestream.ByteStream/Read';
export const BYTESTREAM_WRITE = '/google.bytestream.ByteStream/Write';

export function rawClient(
  endpoint: string,
  credentials = grpc.credentials.createInsecure(),
  options: grpc.ClientOptions = {},
): grpc.Client {
  // No retries: a test must see the first failure. A subchannel of its own: a proxy started on the
  // port of one killed earlier must not inherit the dead connection from grpc-js's shared pool.
  return new grpc.Client(endpoint, credentials, {
    'grpc.enable_retries': 0,
    'grpc.use_local_subchannel_pool': 1,
    ...options,
  });
}

export interface RawAnswer {
  code: number;
  details: string;
  messages: Buffer[];
  trailers: grpc.Metadata;
}

export interface RawCallOptions {
  metadata?: Record<string, string>;
  deadlineMs?: number;
  /** Sees the call once it exists (to cancel it). */
  onCall?: (call: grpc.ClientReadableStream<Buffer> | grpc.ClientUnaryCall | grpc.ClientWritableStream<Buffer>) => void;
  /** Called with each streamed message as it arrives. */
  onMessage?: (m: Buffer) => void;
}

function md(init: Record<string, string> | undefined): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const [k, v] of Object.entries(init ?? {})) out.set(k, v);
  return out;
}

function opts(o: RawCallOptions): grpc.CallOptions {
  return { deadline: Date.now() + (o.deadlineMs ?? 60_000) };
}

type AnyCall = grpc.ClientReadableStream<Buffer> | grpc.ClientUnaryCall | grpc.ClientWritableStream<Buffer>;

function settleOn(call: AnyCall, messages: Buffer[]): Promise<RawAnswer> {
  (call as grpc.ClientReadableStream<Buffer>).on('error', () => undefined);
  return new Promise((resolve) =>
    call.on('status', (s: grpc.StatusObject) =>
      setImmediate(() => resolve({ code: s.code, details: s.details, messages, trailers: s.metadata })),
    ),
  );
}

export function serverStream(
  client: grpc.Client,
  path: string,
  request: Buffer,
  o: RawCallOptions = {},
): Promise<RawAnswer> {
  const messages: Buffer[] = [];
  const call = client.makeServerStreamRequest(path, identity, identity, request, md(o.metadata), opts(o));
  call.on('data', (m: Buffer) => {
    messages.push(m);
    o.onMessage?.(m);
  });
  o.onCall?.(call);
  return settleOn(call, messages);
}

export function unary(client: grpc.Client, path: string, request: Buffer, o: RawCallOptions = {}): Promise<RawAnswer> {
  const messages: Buffer[] = [];
  const call = client.makeUnaryRequest(path, identity, identity, request, md(o.metadata), opts(o), (_e, v) => {
    if (v) messages.push(v);
  });
  o.onCall?.(call);
  return settleOn(call, messages);
}

export function clientStream(
  client: grpc.Client,
  path: string,
  requests: Buffer[],
  o: RawCallOptions = {},
): Promise<RawAnswer> {
  const messages: Buffer[] = [];
  const call = client.makeClientStreamRequest(path, identity, identity, md(o.metadata), opts(o), (_e, v) => {
    if (v) messages.push(v);
  });
  o.onCall?.(call);
  const answer = settleOn(call, messages);
  for (const r of requests) call.write(r);
  call.end();
  return answer;
}

export interface ExecuteOutcome extends RawAnswer {
  /** Names of the Operations streamed, in order. */
  operationNames: string[];
  /** The ExecuteResponse.status of the final (done) Operation, if one came, with its PreconditionFailure subjects. */
  response?: { code: number; message: string; subjects: string[] };
  done: boolean;
}

export async function execute(
  client: grpc.Client,
  request: Buffer,
  o: RawCallOptions = {},
  path = EXECUTE,
): Promise<ExecuteOutcome> {
  const answer = await serverStream(client, path, request, o);
  const operationNames: string[] = [];
  let response: ExecuteOutcome['response'];
  let done = false;
  for (const m of answer.messages) {
    const op = T.Operation.decode(m) as unknown as { name: string; done: boolean; response?: { value: Uint8Array } };
    operationNames.push(op.name);
    if (op.done) {
      done = true;
      if (op.response) {
        const r = T.ExecuteResponse.decode(op.response.value) as unknown as {
          status?: { code?: number; message?: string; details?: Array<{ type_url: string; value: Uint8Array }> };
        };
        const subjects: string[] = [];
        for (const d of r.status?.details ?? []) {
          if (!d.type_url.endsWith('google.rpc.PreconditionFailure')) continue;
          const pf = T.PreconditionFailure.decode(d.value) as unknown as { violations: Array<{ subject: string }> };
          for (const v of pf.violations) subjects.push(v.subject);
        }
        response = { code: r.status?.code ?? 0, message: r.status?.message ?? '', subjects };
      }
    }
  }
  return { ...answer, operationNames, response, done };
}

export function executeRequest(actionDigest: { hash: string; sizeBytes: number }, instanceName = ''): Buffer {
  return Buffer.from(T.ExecuteRequest.encode({ instanceName, actionDigest }).finish());
}

/** google.rpc.PreconditionFailure violations carried in a call's grpc-status-details-bin trailer. */
export function trailerViolations(trailers: grpc.Metadata): Array<{ type: string; subject: string }> {
  const raw = trailers.get('grpc-status-details-bin')[0];
  if (!raw) return [];
  const status = T.Status.decode(raw as Buffer) as unknown as {
    details: Array<{ type_url: string; value: Uint8Array }>;
  };
  const out: Array<{ type: string; subject: string }> = [];
  for (const d of status.details) {
    if (!d.type_url.endsWith('google.rpc.PreconditionFailure')) continue;
    const pf = T.PreconditionFailure.decode(d.value) as unknown as {
      violations: Array<{ type: string; subject: string }>;
    };
    out.push(...pf.violations.map((v) => ({ type: v.type, subject: v.subject })));
  }
  return out;
}
