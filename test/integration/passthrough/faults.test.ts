import { randomUUID } from 'node:crypto';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../src/reapi/grpc-status';
import {
  FakeUpstream,
  MSG,
  PATHS,
  decode,
  encode,
  syntheticBytes,
  type StartedFake,
} from '../../support/fake-upstream';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';
import { call, newClient, unary, type Answer, type ClientCall, type Kind } from './raw-calls';
import { startRecordingUpstream } from './recording-h2-upstream';

/**
 * Upstream failures, seen by a client of the proxy (running as its own
 * process, so a crash would show): an upstream that is not listening, one
 * that drops the connection or resets the stream in the middle of a stream,
 * and one that dies altogether. Every call ends with an error status naming
 * the upstream, well before the client's deadline, and the proxy keeps
 * serving afterwards.
 */

const GENEROUS_DEADLINE_MS = 20_000;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const healthRequest = (service = '') => Buffer.from([0x0a, service.length, ...Buffer.from(service)]);

async function healthStatus(client: grpc.Client): Promise<number | undefined> {
  const answer = await unary(client, '/grpc.health.v1.Health/Check', healthRequest());
  return answer.messages[0]?.[1];
}

const SERVING = 1;

interface ShapeCase {
  kind: Kind;
  path: string;
  requests: Buffer[];
}

const SHAPES: Array<[string, ShapeCase]> = [
  [
    'unary FindMissingBlobs',
    {
      kind: 'unary',
      path: PATHS.FindMissingBlobs,
      requests: [encode(MSG.FindMissingBlobsRequest, { instanceName: 'main' })],
    },
  ],
  [
    'server-streaming Execute',
    { kind: 'serverStream', path: PATHS.Execute, requests: [encode(MSG.ExecuteRequest, { instanceName: 'main' })] },
  ],
  [
    'server-streaming ByteStream.Read',
    {
      kind: 'serverStream',
      path: PATHS.Read,
      requests: [encode(MSG.ReadRequest, { resourceName: `main/blobs/${'ab'.repeat(32)}/10` })],
    },
  ],
  [
    'client-streaming ByteStream.Write',
    {
      kind: 'clientStream',
      path: PATHS.Write,
      requests: [
        encode(MSG.WriteRequest, {
          resourceName: `main/uploads/${randomUUID()}/blobs/${'ab'.repeat(32)}/3`,
          data: Buffer.from('abc'),
          finishWrite: true,
        }),
      ],
    },
  ],
];

function expectFailedFast(answer: Answer, upstreamAddress: string): void {
  // UNAVAILABLE is what clients retry (Bazel, Buck2); what a direct grpc-js client gets from a dropped connection.
  expect(answer.code, answer.details).toBe(Code.UNAVAILABLE);
  expect(answer.details).toContain(upstreamAddress);
}

describe('upstream not listening', () => {
  let port: number;
  let proxy: ProxyProcess;
  let client: grpc.Client;

  beforeAll(async () => {
    port = await freePort();
    proxy = await startProxy(['--upstream', `grpc://127.0.0.1:${port}`, '--keepalive-time', '0']);
    client = newClient(proxy.endpoint);
  });

  afterAll(async () => {
    client?.close();
    await proxy?.stop();
  });

  it.each(SHAPES)('%s: UNAVAILABLE naming the upstream, well within the client’s deadline', async (_label, shape) => {
    const answer = await call(client, shape.kind, shape.path, shape.requests, {
      deadline: Date.now() + GENEROUS_DEADLINE_MS,
    });
    expectFailedFast(answer, `127.0.0.1:${port}`);
    expect(answer.details).toMatch(/unreachable|refused|ECONNREFUSED/i);
  });

  it('the proxy still answers health checks, and serves once the upstream comes up', async () => {
    expect(await healthStatus(client)).toBe(SERVING);
    const upstream = await startRecordingUpstream({ code: Code.OK, message: '' }, { port });
    try {
      const answer = await unary(client, PATHS.GetActionResult, Buffer.from('after'), {
        deadline: Date.now() + GENEROUS_DEADLINE_MS,
      });
      expect(answer.code).toBe(Code.OK);
      expect((await upstream.next(PATHS.GetActionResult)).body.subarray(5)).toEqual(Buffer.from('after'));
    } finally {
      await upstream.stop();
    }
    expect(proxy.child.exitCode).toBeNull();
  });
});

describe('upstream fails in the middle of a call', () => {
  let fake: FakeUpstream;
  let started: StartedFake;
  let proxy: ProxyProcess;
  let client: grpc.Client;

  beforeAll(async () => {
    fake = new FakeUpstream();
    started = await fake.start();
    proxy = await startProxy(['--upstream', started.url, '--keepalive-time', '0']);
    client = newClient(proxy.endpoint);
  });

  afterAll(async () => {
    client?.close();
    await proxy?.stop();
    await started?.stop();
  });

  // The fake hands messages to HTTP/2 before it drops the connection, but bytes still in its socket buffer may be lost:
  // the client gets at most those messages, each intact.
  it('Execute: the connection drops after one Operation; UNAVAILABLE naming the upstream', async () => {
    fake.script(PATHS.Execute, { messages: 1, then: 'destroy' }, 1);
    const answer = await call(
      client,
      'serverStream',
      PATHS.Execute,
      [encode(MSG.ExecuteRequest, { instanceName: 'main' })],
      {
        deadline: Date.now() + GENEROUS_DEADLINE_MS,
      },
    );
    expect(answer.messages.length).toBeLessThanOrEqual(1);
    for (const m of answer.messages) expect(decode(MSG.Operation, m).done).toBe(false);
    expectFailedFast(answer, started.address);
  });

  it('ByteStream.Read: the connection drops after three chunks; UNAVAILABLE naming the upstream', async () => {
    const digest = fake.addSyntheticBlob(4 * 1024 * 1024, { seed: 31 });
    fake.script(PATHS.Read, { messages: 3, then: 'destroy' }, 1);
    const answer = await call(
      client,
      'serverStream',
      PATHS.Read,
      [encode(MSG.ReadRequest, { resourceName: `blobs/${digest.hash}/${digest.sizeBytes}` })],
      {
        deadline: Date.now() + GENEROUS_DEADLINE_MS,
      },
    );
    expect(answer.messages.length).toBeLessThanOrEqual(3);
    const received = Buffer.concat(answer.messages.map((m) => decode(MSG.ReadResponse, m).data as Buffer));
    expect(received.equals(syntheticBytes(31, 0, received.length))).toBe(true);
    expectFailedFast(answer, started.address);
  });

  it('ByteStream.Write: the connection drops while the client uploads; UNAVAILABLE naming the upstream', async () => {
    fake.script(PATHS.Write, { then: 'destroy', answerEarly: true, messages: 0 }, 1);
    const name = `main/uploads/${randomUUID()}/blobs/${'ab'.repeat(32)}/${8 * 1024 * 1024}`;
    const chunks = function* () {
      yield encode(MSG.WriteRequest, { resourceName: name, data: Buffer.alloc(64 * 1024) });
      for (let i = 1; i < 128; i++)
        yield encode(MSG.WriteRequest, { writeOffset: i * 64 * 1024, data: Buffer.alloc(64 * 1024) });
    };
    const answer = await call(client, 'clientStream', PATHS.Write, chunks() as unknown as Buffer[], {
      deadline: Date.now() + GENEROUS_DEADLINE_MS,
    });
    expectFailedFast(answer, started.address);
  });

  it.each([
    ['Execute', PATHS.Execute, 1],
    ['ByteStream.Read', PATHS.Read, 0],
  ] as const)(
    '%s: the upstream resets the stream; the client gets an error status, not a hang',
    async (_label, path, messages) => {
      const digest = fake.addSyntheticBlob(1024 * 1024, { seed: 32 });
      fake.script(path, { messages, then: 'reset' }, 1);
      const request =
        path === PATHS.Read
          ? encode(MSG.ReadRequest, { resourceName: `blobs/${digest.hash}/${digest.sizeBytes}` })
          : encode(MSG.ExecuteRequest, {});
      const answer = await call(client, 'serverStream', path, [request], {
        deadline: Date.now() + GENEROUS_DEADLINE_MS,
      });
      expect(answer.code).not.toBe(Code.OK);
      expect(answer.code).not.toBe(Code.DEADLINE_EXCEEDED);
      expect(answer.details).toContain(started.address);
      expect(answer.messages).toHaveLength(messages);
    },
  );

  it('the proxy keeps serving after each of these, on a new upstream connection', async () => {
    const answer = await unary(
      client,
      PATHS.FindMissingBlobs,
      encode(MSG.FindMissingBlobsRequest, { instanceName: 'main' }),
    );
    expect(answer.code).toBe(Code.OK);
    expect(await healthStatus(client)).toBe(SERVING);
    expect(proxy.child.exitCode).toBeNull();
  });
});

describe('upstream killed while calls are in flight', () => {
  let fake: FakeUpstream;
  let started: StartedFake;
  let proxy: ProxyProcess;
  let client: grpc.Client;

  beforeAll(async () => {
    fake = new FakeUpstream();
    started = await fake.start();
    proxy = await startProxy(['--upstream', started.url, '--keepalive-time', '0']);
    client = newClient(proxy.endpoint);
  });

  afterAll(async () => {
    client?.close();
    await proxy?.stop();
    await started?.stop();
  });

  it('an Execute stream and a ByteStream Read both end with UNAVAILABLE; later calls too, naming the upstream', async () => {
    const digest = fake.addSyntheticBlob(8 * 1024 * 1024, { seed: 33 });
    fake.script(PATHS.Execute, { messages: 1, then: 'hang' }, 1);
    fake.script(PATHS.Read, { messages: 2, then: 'hang' }, 1);
    const arrived: Array<Promise<void>> = [];
    /** Resolves once the client has `count` messages of the call. */
    const receives = (count: number) => (c: ClientCall) =>
      arrived.push(
        new Promise((resolve) => {
          let seen = 0;
          c.on('data', () => ++seen === count && resolve());
        }),
      );
    const deadline = Date.now() + GENEROUS_DEADLINE_MS;
    const execute = call(
      client,
      'serverStream',
      PATHS.Execute,
      [encode(MSG.ExecuteRequest, { instanceName: 'main' })],
      { deadline, onCall: receives(1) },
    );
    const read = call(
      client,
      'serverStream',
      PATHS.Read,
      [encode(MSG.ReadRequest, { resourceName: `blobs/${digest.hash}/${digest.sizeBytes}` })],
      {
        deadline,
        onCall: receives(2),
      },
    );
    await Promise.all(arrived);

    // The whole upstream server goes away: every connection is cut, nothing listens any more.
    await fake.stop(0);

    for (const answer of await Promise.all([execute, read])) expectFailedFast(answer, started.address);
    expect((await execute).messages).toHaveLength(1);
    expect((await read).messages).toHaveLength(2);
    const later = await call(client, 'unary', PATHS.GetActionResult, [Buffer.alloc(0)], {
      deadline: Date.now() + GENEROUS_DEADLINE_MS,
    });
    expectFailedFast(later, started.address);
    expect(await healthStatus(client)).toBe(SERVING);
    expect(proxy.child.exitCode).toBeNull();
  });
});
