import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../../src/main';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { FakeUpstream, MSG, PATHS, encode, sha256Digest, type StartedFake } from '../../support/fake-upstream';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';
import { startPassthroughProxy } from './proxy-rig';
import { call, newClient, unary } from './raw-calls';

/**
 * grpc.health.v1.Health answered by the proxy itself, and a graceful
 * shutdown: on SIGTERM the proxy reports NOT_SERVING, stops accepting
 * connections, lets calls in flight finish, then exits 0.
 */

const CHECK = '/grpc.health.v1.Health/Check';
const WATCH = '/grpc.health.v1.Health/Watch';
const SERVING = 1;
const NOT_SERVING = 2;

const healthRequest = (service: string) => Buffer.from(T.HealthCheckRequest.encode({ service }).finish());
const healthStatus = (message: Buffer | undefined) =>
  message ? (T.HealthCheckResponse.decode(message) as unknown as { status: number }).status : undefined;

describe('health', () => {
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

  afterAll(async () => {
    client?.close();
    await proxy?.close(100);
    await started?.stop();
  });

  it.each([
    ['"" (the proxy as a whole)', ''],
    ['Execution', 'build.bazel.remote.execution.v2.Execution'],
    ['ContentAddressableStorage', 'build.bazel.remote.execution.v2.ContentAddressableStorage'],
    ['ByteStream', 'google.bytestream.ByteStream'],
  ])('Check %s: SERVING', async (_label, service) => {
    const answer = await unary(client, CHECK, healthRequest(service));
    expect(answer.code).toBe(Code.OK);
    expect(healthStatus(answer.messages[0])).toBe(SERVING);
  });

  it('Check of an unknown service: NOT_FOUND', async () => {
    const answer = await unary(client, CHECK, healthRequest('no.such.Service'));
    expect(answer.code).toBe(Code.NOT_FOUND);
    expect(answer.details).toContain('no.such.Service');
  });

  it('is answered by the proxy, not forwarded', async () => {
    await unary(client, CHECK, healthRequest(''));
    expect(fake.calls(CHECK)).toHaveLength(0);
  });
});

describe('graceful shutdown (SIGTERM to the process)', () => {
  let fake: FakeUpstream;
  let started: StartedFake;

  beforeAll(async () => {
    fake = new FakeUpstream();
    started = await fake.start();
  });

  afterAll(async () => {
    await started?.stop();
  });

  /** Opens a Health Watch; resolves `firstStatus` with the first status and `notServing` once NOT_SERVING arrives. */
  function watch(client: grpc.Client) {
    const stream = client.makeServerStreamRequest(
      WATCH,
      (b: Buffer) => b,
      (b: Buffer) => b,
      healthRequest(''),
    );
    stream.on('error', () => undefined);
    const statuses: number[] = [];
    let notServing!: () => void;
    const becameNotServing = new Promise<void>((resolve) => (notServing = resolve));
    const firstStatus = new Promise<number>((resolve) =>
      stream.on('data', (m: Buffer) => {
        const status = healthStatus(m)!;
        statuses.push(status);
        if (statuses.length === 1) resolve(status);
        if (status === NOT_SERVING) notServing();
      }),
    );
    return { stream, firstStatus, becameNotServing };
  }

  it('a Write in flight finishes after SIGTERM; new connections are refused; the process exits 0', async () => {
    const proxy: ProxyProcess = await startProxy(
      ['--upstream', started.url, '--keepalive-time', '0', '--shutdown-grace', '60s'],
      {
        env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' },
      },
    );
    const client = newClient(proxy.endpoint);
    try {
      const health = watch(client);
      expect(await health.firstStatus).toBe(SERVING);

      // An upload is under way: the upstream has the call and part of the data.
      const data = Buffer.from(`in flight across a shutdown ${randomUUID()}`.repeat(1000));
      const digest = sha256Digest(data);
      const resourceName = `main/uploads/${randomUUID()}/blobs/${digest.hash}/${digest.sizeBytes}`;
      const md = new grpc.Metadata();
      md.set('x-test-tag', resourceName);
      const upload = client.makeClientStreamRequest(
        PATHS.Write,
        (b: Buffer) => b,
        (b: Buffer) => b,
        md,
        () => undefined,
      );
      const answer = new Promise<grpc.StatusObject>((resolve) => upload.on('status', resolve));
      const half = Math.floor(data.length / 2);
      upload.write(encode(MSG.WriteRequest, { resourceName, writeOffset: 0, data: data.subarray(0, half) }));
      await fake.waitForCall(PATHS.Write, (c) => c.metadata.get('x-test-tag')[0] === resourceName);

      const exited = proxy.stop(60_000);
      await health.becameNotServing;
      // The Watch would hold the drain open for the whole grace period; a real client stops watching too.
      health.stream.cancel();

      const late = newClient(proxy.endpoint);
      try {
        const refused = await unary(late, PATHS.FindMissingBlobs, encode(MSG.FindMissingBlobsRequest, {}), {
          deadline: Date.now() + 20_000,
        });
        expect(refused.code).toBe(Code.UNAVAILABLE);
      } finally {
        late.close();
      }

      upload.write(encode(MSG.WriteRequest, { writeOffset: half, data: data.subarray(half), finishWrite: true }));
      upload.end();
      const status = await answer;
      expect(status.code, status.details).toBe(Code.OK);
      expect(fake.writes().some((w) => w.resourceName === resourceName)).toBe(true);
      expect(fake.getBlob(digest, 'main')).toEqual(data);

      expect(await exited).toBe(0);
      expect(proxy.logLines().some((l) => l.msg === 'stopped')).toBe(true);
    } finally {
      client.close();
      await proxy.stop();
    }
  }, 60_000);

  it('a call still running when the grace period ends is cut, and the process still exits 0', async () => {
    const proxy = await startProxy(['--upstream', started.url, '--keepalive-time', '0', '--shutdown-grace', '300ms'], {
      env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' },
    });
    const client = newClient(proxy.endpoint);
    try {
      fake.script(PATHS.Execute, { messages: 1, then: 'hang' }, 1);
      const tag = randomUUID();
      const md = new grpc.Metadata();
      md.set('x-test-tag', tag);
      let firstMessage!: Promise<unknown>;
      const answer = call(
        client,
        'serverStream',
        PATHS.Execute,
        [encode(MSG.ExecuteRequest, { instanceName: 'main' })],
        {
          metadata: md,
          onCall: (c) => (firstMessage = new Promise((resolve) => c.once('data', resolve))),
        },
      );
      await Promise.race([firstMessage, answer]);
      const exited = proxy.stop(300);
      const outcome = await answer;
      expect(outcome.code).not.toBe(Code.OK);
      expect(outcome.messages).toHaveLength(1);
      expect(await exited).toBe(0);
      const upstreamCall = await fake.waitForCall(PATHS.Execute, (c) => c.metadata.get('x-test-tag')[0] === tag);
      await upstreamCall.ended;
      expect(upstreamCall.outcome).toBe('cancelled');
    } finally {
      client.close();
      await proxy.stop();
    }
  }, 60_000);
});
