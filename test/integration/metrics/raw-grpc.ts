import * as grpc from '@grpc/grpc-js';

/**
 * gRPC peers that move messages as raw bytes, for tests that care about which
 * calls happen and how they end rather than about their contents.
 */

const identity = (b: Buffer): Buffer => b;

export type RawHandler =
  | { kind: 'unary'; handle: (request: Buffer) => Buffer | grpc.StatusObject }
  | { kind: 'clientStream'; handle: (requests: Buffer[]) => Buffer }
  | { kind: 'serverStream'; handle: (request: Buffer) => Buffer[] };

export interface RawServer {
  port: number;
  /** Calls received, by path, in arrival order. */
  received: string[];
  stop(): Promise<void>;
}

/** A grpc-js server on 127.0.0.1:0 answering `handlers` (by full path); other paths get UNIMPLEMENTED from grpc-js. */
export async function startRawServer(handlers: Record<string, RawHandler>): Promise<RawServer> {
  const server = new grpc.Server();
  const received: string[] = [];
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [path, handler] of Object.entries(handlers)) {
    const key = path;
    definition[key] = {
      path,
      requestStream: handler.kind === 'clientStream',
      responseStream: handler.kind === 'serverStream',
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    };
    if (handler.kind === 'unary') {
      implementation[key] = ((call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        received.push(path);
        const out = handler.handle(call.request);
        if (Buffer.isBuffer(out)) callback(null, out);
        else callback(out, null);
      }) as grpc.handleUnaryCall<Buffer, Buffer>;
    } else if (handler.kind === 'clientStream') {
      implementation[key] = ((
        call: grpc.ServerReadableStream<Buffer, Buffer>,
        callback: grpc.sendUnaryData<Buffer>,
      ) => {
        received.push(path);
        const chunks: Buffer[] = [];
        call.on('data', (c: Buffer) => chunks.push(c));
        call.on('end', () => callback(null, handler.handle(chunks)));
      }) as grpc.handleClientStreamingCall<Buffer, Buffer>;
    } else {
      implementation[key] = ((call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        received.push(path);
        for (const message of handler.handle(call.request)) call.write(message);
        call.end();
      }) as grpc.handleServerStreamingCall<Buffer, Buffer>;
    }
  }
  if (Object.keys(definition).length > 0) server.addService(definition as grpc.ServiceDefinition, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    port,
    received,
    // Callers stop their clients first; anything still open is a leftover and is cut.
    stop: async () => server.forceShutdown(),
  };
}

export interface CallOutcome {
  code: number;
  responses: Buffer[];
}

/** A client that makes calls by path with raw request bytes and reports the status each call ended with. */
export class RawClient {
  private readonly client: grpc.Client;

  constructor(endpoint: string) {
    this.client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  }

  unary(path: string, request: Buffer = Buffer.alloc(0)): Promise<CallOutcome> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(path, identity, identity, request, (err, value) =>
        resolve({ code: err ? err.code : grpc.status.OK, responses: value ? [value] : [] }),
      );
    });
  }

  clientStream(path: string, requests: Buffer[]): Promise<CallOutcome> {
    return new Promise((resolve) => {
      const call = this.client.makeClientStreamRequest(path, identity, identity, (err, value) =>
        resolve({ code: err ? err.code : grpc.status.OK, responses: value ? [value] : [] }),
      );
      for (const r of requests) call.write(r);
      call.end();
    });
  }

  serverStream(path: string, request: Buffer = Buffer.alloc(0)): Promise<CallOutcome> {
    return new Promise((resolve) => {
      const responses: Buffer[] = [];
      const call = this.client.makeServerStreamRequest(path, identity, identity, request);
      call.on('data', (b: Buffer) => responses.push(b));
      call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, responses }));
      call.on('error', () => {
        // the status event carries the outcome
      });
    });
  }

  close(): void {
    this.client.close();
  }
}
