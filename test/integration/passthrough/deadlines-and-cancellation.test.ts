import { randomUUID } from 'node:crypto';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../../src/main';
import { Code } from '../../../src/reapi/grpc-status';
import {
  FakeUpstream,
  MSG,
  PATHS,
  encode,
  type Behaviour,
  type RecordedCall,
  type StartedFake,
} from '../../support/fake-upstream';
import { startPassthroughProxy } from './proxy-rig';
import { call, newClient, unary, type CallOptions, type Kind } from './raw-calls';
import { closeSession, connect, frame, rawCall, type RawOutcome } from './raw-h2-client';
import { headerValues, startRecordingUpstream } from './recording-h2-upstream';

/**
 * Cancellation and deadlines cross the proxy: a client that gives up makes the
 * upstream call end as cancelled, and the client's deadline reaches the
 * upstream as grpc-timeout and ends the upstream call when it passes.
 */

let fake: FakeUpstream;
let started: StartedFake;
let proxy: RunningProxy;
let client: grpc.Client;

beforeAll(async () => {
  fake = new FakeUpstream();
  started = await fake.start();
  proxy = await startPassthroughProxy(started.url);
  client = newClient(proxy.endpoint);
});

afterEach(() => fake.clearScripts());

afterAll(async () => {
  client?.close();
  await proxy?.close(100);
  await started?.stop();
});

interface HangCase {
  name: string;
  path: string;
  kind: Kind;
  behaviour: Behaviour;
  /** Messages the client receives before the upstream stops answering. */
  before: number;
}

const HANGS: HangCase[] = [
  {
    name: 'Execute after one Operation',
    path: PATHS.Execute,
    kind: 'serverStream',
    behaviour: { messages: 1, then: 'hang' },
    before: 1,
  },
  {
    name: 'ByteStream.Read before any data',
    path: PATHS.Read,
    kind: 'serverStream',
    behaviour: { then: 'hang' },
    before: 0,
  },
  { name: 'GetTree', path: PATHS.GetTree, kind: 'serverStream', behaviour: { then: 'hang' }, before: 0 },
  {
    name: 'FindMissingBlobs (unary)',
    path: PATHS.FindMissingBlobs,
    kind: 'unary',
    behaviour: { then: 'hang' },
    before: 0,
  },
  // The client never half-closes: an upload still in progress.
  {
    name: 'ByteStream.Write mid-upload',
    path: PATHS.Write,
    kind: 'clientStream',
    behaviour: { then: 'hang', answerEarly: true },
    before: 0,
  },
];

function tagged(tag: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-test-tag', tag);
  return md;
}

function requestsFor(kind: Kind): Buffer[] {
  if (kind !== 'clientStream') return [encode(MSG.ExecuteRequest, { instanceName: 'main' })];
  return [
    encode(MSG.WriteRequest, {
      resourceName: `main/uploads/${randomUUID()}/blobs/${'cd'.repeat(32)}/100`,
      data: Buffer.alloc(10),
    }),
  ];
}

/** Starts a call; client streams stay open, as an upload still in progress. */
function startCall(kind: Kind, path: string, metadata: grpc.Metadata, options: CallOptions) {
  return call(client, kind, path, requestsFor(kind), { ...options, metadata, keepOpen: true });
}

async function upstreamCall(path: string, tag: string): Promise<RecordedCall> {
  const record = await fake.waitForCall(path, (c) => c.metadata.get('x-test-tag')[0] === tag);
  await record.ended;
  return record;
}

describe('a client cancelling', () => {
  it.each(HANGS)('$name: the upstream sees the call cancelled', async ({ path, kind, behaviour, before }) => {
    fake.script(path, behaviour, 1);
    const tag = randomUUID();
    let received = 0;
    const answer = startCall(kind, path, tagged(tag), {
      onCall: (c) => {
        c.on('data', () => {
          received += 1;
          if (received === before) c.cancel();
        });
        if (before === 0)
          void fake.waitForCall(path, (r) => r.metadata.get('x-test-tag')[0] === tag).then(() => c.cancel());
      },
    });
    expect((await answer).code).toBe(Code.CANCELLED);
    const record = await upstreamCall(path, tag);
    expect(record).toMatchObject({ cancelled: true, outcome: 'cancelled' });
    expect(received).toBe(before);
  });
});

describe('a client deadline', () => {
  it.each(HANGS)(
    '$name: DEADLINE_EXCEEDED for the client, the upstream call ends cancelled',
    async ({ path, kind, behaviour, before }) => {
      fake.script(path, behaviour, 1);
      const tag = randomUUID();
      const answer = await startCall(kind, path, tagged(tag), { deadline: Date.now() + 1000 });
      expect(answer.code).toBe(Code.DEADLINE_EXCEEDED);
      expect(answer.messages).toHaveLength(before);
      const record = await upstreamCall(path, tag);
      expect(record.outcome).toBe('cancelled');
    },
  );

  it('a client that sends grpc-timeout but never enforces it still gets DEADLINE_EXCEEDED, and the upstream call ends', async () => {
    fake.script(PATHS.Execute, { messages: 1, then: 'hang' }, 1);
    const tag = randomUUID();
    const session = await connect(proxy.endpoint);
    try {
      const outcome = await rawCall(session, {
        path: PATHS.Execute,
        headers: { 'grpc-timeout': '500m', 'x-test-tag': tag },
        body: [frame(encode(MSG.ExecuteRequest, { instanceName: 'main' }))],
      });
      expect(outcome.grpcStatus).toBe(Code.DEADLINE_EXCEEDED);
      const record = await upstreamCall(PATHS.Execute, tag);
      expect(record.outcome).toBe('cancelled');
      expect(record.responseCount).toBe(1);
    } finally {
      await closeSession(session);
    }
  });

  it('the proxy keeps serving after all of these', async () => {
    const answer = await unary(
      client,
      PATHS.FindMissingBlobs,
      encode(MSG.FindMissingBlobsRequest, { instanceName: 'main' }),
    );
    expect(answer.code).toBe(Code.OK);
  });
});

describe('grpc-timeout on the upstream request', () => {
  let recording: Awaited<ReturnType<typeof startRecordingUpstream>>;
  let local: RunningProxy;
  let localClient: grpc.Client;

  beforeAll(async () => {
    recording = await startRecordingUpstream({ code: Code.OK, message: '' });
    local = await startPassthroughProxy(recording.url);
    localClient = newClient(local.endpoint);
  });

  afterAll(async () => {
    localClient?.close();
    await local?.close(100);
    await recording?.stop();
  });

  /** Milliseconds from a grpc-timeout value (digits and a unit, as the gRPC spec writes it). */
  function timeoutMs(value: string): number {
    const m = /^(\d{1,8})([HMSmun])$/.exec(value);
    if (!m) throw new Error(`malformed grpc-timeout ${JSON.stringify(value)}`);
    const unit = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }[m[2] as 'H'];
    return Number(m[1]) * unit;
  }

  async function seenTimeouts(path: string, deadline?: number): Promise<string[]> {
    const unique = `${path}-${randomUUID()}`;
    const answer = await unary(localClient, unique, Buffer.from('x'), deadline === undefined ? {} : { deadline });
    expect(answer.code).toBe(Code.OK);
    return headerValues(await recording.next(unique), 'grpc-timeout');
  }

  it('carries the client’s remaining time, never more', async () => {
    const values = await seenTimeouts(
      '/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs',
      Date.now() + 60_000,
    );
    expect(values).toHaveLength(1);
    const ms = timeoutMs(values[0]!);
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThanOrEqual(60_000);
  });

  it('a deadline years away is sent upstream within the 8 digits the spec allows', async () => {
    const session = await connect(local.endpoint);
    try {
      const unique = `/build.bazel.remote.execution.v2.ActionCache/GetActionResult-${randomUUID()}`;
      // The answer is not checked here: only what the upstream was asked.
      await rawCall(session, {
        path: unique,
        headers: { 'grpc-timeout': '99999999H' },
        body: [frame(Buffer.from('x'))],
      });
      const values = headerValues(await recording.next(unique), 'grpc-timeout');
      expect(values).toHaveLength(1);
      expect(timeoutMs(values[0]!)).toBeGreaterThan(365 * 86_400_000);
    } finally {
      await closeSession(session);
    }
  });

  // A Node timer holds at most 2^31-1 ms (about 24.8 days); a longer deadline must not wrap around to "now".
  // The upstream holds the call open (and enforces no deadline of its own: grpc-js servers have the same
  // 32-bit limit); a full round trip of another call later it must still be running.
  it('the longest grpc-timeout the spec allows (99999999H) does not expire at once', async () => {
    const holding = await startRecordingUpstream({ code: Code.OK, message: '' }, { hang: [PATHS.Execute] });
    const far = await startPassthroughProxy(holding.url);
    const session = await connect(far.endpoint);
    try {
      const controller = new AbortController();
      const outcome = rawCall(session, {
        path: PATHS.Execute,
        headers: { 'grpc-timeout': '99999999H' },
        body: [frame(encode(MSG.ExecuteRequest, { instanceName: 'main' }))],
        signal: controller.signal,
      });
      let settled: RawOutcome | undefined;
      void outcome.then((o) => (settled = o));
      const state = (): string =>
        settled ? `ended with grpc-status ${settled.grpcStatus}: ${settled.grpcMessage}` : 'running';
      const upstreamCall = await holding.next(PATHS.Execute);
      expect(state()).toBe('running');
      // Another call's full round trip through the same proxy.
      const other = await rawCall(session, { path: '/other.Service/Call', body: [frame(Buffer.from('x'))] });
      expect(other.grpcStatus).toBe(Code.OK);
      expect(state()).toBe('running');
      controller.abort();
      await outcome;
      expect(await upstreamCall.closed).toBe(http2.constants.NGHTTP2_CANCEL);
    } finally {
      await closeSession(session);
      await far.close(100);
      await holding.stop();
    }
  });

  it('no deadline from the client, no grpc-timeout upstream', async () => {
    expect(await seenTimeouts('/google.bytestream.ByteStream/QueryWriteStatus')).toEqual([]);
  });
});
