import { randomUUID } from 'node:crypto';
import type http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../src/reapi/grpc-status';
import { FakeUpstream, MSG, PATHS, encode, type StartedFake } from '../../support/fake-upstream';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';
import { newClient, unary } from './raw-calls';
import { closeSession, connect, frame, rawCall, type RawOutcome } from './raw-h2-client';

/**
 * Bytes no well-behaved client sends, to every method the proxy serves and
 * to the listener itself. The proxy (its own process, so a crash shows) must
 * end every such call with a status or a reset, close bad connections, and
 * keep serving well-formed calls. The inputs are generated from a fixed seed,
 * so a failure reproduces.
 */

const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
const HEALTH_WATCH = '/grpc.health.v1.Health/Watch';
const ALL_PATHS = [...Object.values(PATHS), HEALTH_CHECK, HEALTH_WATCH, '/no.such.Service/Method', '/', '/a/b/c/d'];

/** xorshift32: the same bytes every run. */
function seeded(seed: number): (length: number) => Buffer {
  let state = seed >>> 0 || 1;
  return (length) => {
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) {
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      out[i] = state & 0xff;
    }
    return out;
  };
}

/** Request bodies that are not one well-formed gRPC message of the method's type; each case has its own seed. */
const BODIES: Array<[string, (random: (length: number) => Buffer) => Buffer[]]> = [
  ['random bytes', (random) => [random(1024)]],
  ['a frame announcing 4 GiB', (random) => [Buffer.from([0, 0xff, 0xff, 0xff, 0xff]), random(64)]],
  ['a well-formed frame of random bytes (not protobuf)', (random) => [frame(random(300))]],
  ['a frame of invalid protobuf (bad wire type, length past the end)', () => [frame(INVALID_PROTOBUF)]],
  ['a compressed frame without grpc-encoding', (random) => [frame(random(100), true)]],
  ['a truncated frame', (random) => [Buffer.from([0, 0, 0, 0, 100]), random(10)]],
  ['a frame header cut short', () => [Buffer.from([0, 0, 0])]],
  ['no body at all', () => []],
  [
    'two messages for a single-message call, split across writes',
    (random) => {
      const two = Buffer.concat([frame(random(10)), frame(random(20))]);
      return [two.subarray(0, 3), two.subarray(3)];
    },
  ],
];

/** Field 1 with wire type 7 (there is none), then a length-delimited field whose length runs past the end. */
const INVALID_PROTOBUF = Buffer.from([0x0f, 0xff, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);

let fake: FakeUpstream;
let started: StartedFake;
let proxy: ProxyProcess;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  fake = new FakeUpstream();
  started = await fake.start();
  proxy = await startProxy(['--upstream', started.url, '--keepalive-time', '0', '--max-message-bytes', '1MiB'], {
    env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' },
  });
  session = await connect(proxy.endpoint);
});

afterAll(async () => {
  if (session) await closeSession(session);
  await proxy?.stop();
  await started?.stop();
});

/** The call ended the way a gRPC call may end: with a grpc-status, or with a stream reset. */
function expectEnded(outcome: RawOutcome): void {
  const ended = outcome.grpcStatus !== undefined || outcome.rstCode !== 0;
  expect(
    ended,
    `neither a grpc-status nor a reset: ${JSON.stringify({ headers: outcome.headers, trailers: outcome.trailers })}`,
  ).toBe(true);
}

describe('malformed request bodies, to every method', () => {
  it.each(BODIES.map(([label, body], i) => [label, body, i] as const))('%s', async (_label, body, i) => {
    const random = seeded(0x5eed + i);
    const outcomes = await Promise.all(ALL_PATHS.map((path) => rawCall(session, { path, body: body(random) })));
    outcomes.forEach(expectEnded);
    expect(proxy.child.exitCode).toBeNull();
  });

  it('a frame announcing more than max_message_bytes is refused by the proxy itself, on every path (Health past its own 16 KiB)', async () => {
    const outcomes = await Promise.all(
      ALL_PATHS.map((path) => rawCall(session, { path, body: [Buffer.from([0, 0, 0x10, 0, 1])] })),
    );
    ALL_PATHS.forEach((path, i) => {
      const outcome = outcomes[i]!;
      expect(outcome.grpcStatus, path).toBe(Code.RESOURCE_EXHAUSTED);
      if (path === HEALTH_CHECK || path === HEALTH_WATCH)
        expect(outcome.grpcMessage).toContain('limit of 16384 bytes (a Health request is one service name)');
      else expect(outcome.grpcMessage).toContain('limit of 1048576 bytes (max_message_bytes)');
    });
  });

  // The request is the client's mistake, and the proxy's log is no place for a stack trace of it.
  it.each([HEALTH_CHECK, HEALTH_WATCH])(
    '%s with a request that is not a HealthCheckRequest: INVALID_ARGUMENT, not INTERNAL',
    async (path) => {
      const outcome = await rawCall(session, { path, body: [frame(seeded(7)(300))] });
      expect(outcome.grpcStatus, outcome.grpcMessage).toBe(Code.INVALID_ARGUMENT);
    },
  );
});

describe('method paths that are not plain', () => {
  // Execute and WaitExecution are prepared by the proxy; a variant of their path must not slip past that
  // preparation to an upstream that might normalise it and run the action unprepared.
  it.each([
    `${PATHS.Execute}?x=1`,
    `${PATHS.Execute}#frag`,
    PATHS.Execute.replace('Execute', '%45xecute'),
    `${PATHS.WaitExecution}?`,
    `${PATHS.FindMissingBlobs}?cache=no`,
  ])('%s: UNIMPLEMENTED naming it, never forwarded', async (path) => {
    const before = fake.calls().length;
    const outcome = await rawCall(session, { path, body: [frame(Buffer.alloc(0))] });
    expect(outcome.grpcStatus, outcome.grpcMessage).toBe(Code.UNIMPLEMENTED);
    expect(outcome.grpcMessage).toContain('not a gRPC method path');
    expect(fake.calls().length).toBe(before);
  });
});

describe('malformed headers', () => {
  const body = () => [frame(encode(MSG.FindMissingBlobsRequest, { instanceName: 'main' }))];
  const CASES: Array<[string, RawRequestHeaders]> = [
    ['grpc-timeout that is not a number', { 'grpc-timeout': 'soon' }],
    ['grpc-timeout with an unknown unit', { 'grpc-timeout': '10X' }],
    ['grpc-timeout of more than 8 digits', { 'grpc-timeout': '123456789012S' }],
    ['grpc-timeout of zero', { 'grpc-timeout': '0m' }],
    ['a -bin header that is not base64', { 'x-evil-bin': '!!!not base64!!!' }],
    [
      'requestmetadata-bin of random bytes',
      { 'build.bazel.remote.execution.v2.requestmetadata-bin': seeded(3)(200).toString('base64') },
    ],
    ['an unknown grpc-encoding', { 'grpc-encoding': 'snappy-but-not-really' }],
    ['a very long header value', { 'x-long': 'v'.repeat(32 * 1024) }],
    ['content-type that is not gRPC', { 'content-type': 'application/json' }],
    ['no content-type', { 'content-type': undefined as unknown as string }],
  ];

  it.each(CASES)('%s', async (_label, headers) => {
    const outcomes = await Promise.all(
      [PATHS.FindMissingBlobs, PATHS.Execute, PATHS.Write, HEALTH_CHECK].map((path) =>
        rawCall(session, { path, headers, body: body() }),
      ),
    );
    outcomes.forEach(expectEnded);
    expect(proxy.child.exitCode).toBeNull();
  });

  it('a request that is not POST gets UNIMPLEMENTED from the proxy itself', async () => {
    const outcome = await rawCall(session, { path: PATHS.FindMissingBlobs, method: 'GET' });
    expect(outcome.grpcStatus).toBe(Code.UNIMPLEMENTED);
    expect(outcome.grpcMessage).toContain('not a gRPC call');
  });
});

type RawRequestHeaders = Record<string, string>;

describe('malformed connections', () => {
  /** Opens a TCP connection, writes `bytes`, and resolves once the proxy closes it. */
  function sendAndWaitForClose(bytes: Buffer[]): Promise<void> {
    return new Promise((resolve) => {
      const socket = net.connect(proxy.port, '127.0.0.1', () => {
        for (const b of bytes) socket.write(b);
      });
      socket.on('data', () => undefined);
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
    });
  }

  const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

  const random = seeded(11);
  it.each([
    ['random bytes instead of the HTTP/2 preface', () => [random(64 * 1024)]],
    ['an HTTP/1.1 request', () => [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]],
    ['a TLS ClientHello to the plaintext port', () => [Buffer.from('16030100a5010000a10303', 'hex'), random(160)]],
    ['the preface, then random frames', () => [PREFACE, random(4096)]],
    [
      'the preface, then a frame announcing 16 MiB',
      () => [PREFACE, Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]), random(100)],
    ],
  ] as const)('%s: the proxy closes the connection', async (_label, bytes) => {
    await sendAndWaitForClose(bytes());
    expect(proxy.child.exitCode).toBeNull();
  });
});

describe('afterwards', () => {
  it('the proxy is still running and serves well-formed calls on new and old connections', async () => {
    expect(proxy.child.exitCode).toBeNull();
    const client = newClient(proxy.endpoint);
    try {
      const answer = await unary(
        client,
        PATHS.FindMissingBlobs,
        encode(MSG.FindMissingBlobsRequest, { instanceName: `after-${randomUUID()}` }),
      );
      expect(answer.code).toBe(Code.OK);
      const health = await unary(client, HEALTH_CHECK, Buffer.alloc(0));
      expect(health.messages[0]).toEqual(Buffer.from([0x08, 0x01]));
    } finally {
      client.close();
    }
    const again = await rawCall(session, {
      path: PATHS.FindMissingBlobs,
      body: [frame(encode(MSG.FindMissingBlobsRequest, { instanceName: 'main' }))],
    });
    expect(again.grpcStatus).toBe(Code.OK);
    // The log holds no crash report.
    expect(proxy.logs()).not.toMatch(/uncaught|unhandled/i);
  });
});
