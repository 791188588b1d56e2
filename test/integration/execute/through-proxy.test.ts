import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { createCasClient } from '../../../src/execute/cas-client';
import { createExecuteService } from '../../../src/execute/execute-handler';
import { EXECUTE_PATH, WAIT_EXECUTION_PATH } from '../../../src/execute/follow-execution';
import { GrpcCasReader } from '../../../src/execute/grpc-cas-reader';
import { isOurOperationName } from '../../../src/execute/operation-names';
import { ProxyError } from '../../../src/errors';
import { Http2UpstreamCaller } from '../../../src/passthrough/http2-upstream-caller';
import { UpstreamPool } from '../../../src/passthrough/upstream-pool';
import { CallRouter } from '../../../src/server/call-router';
import { HealthService } from '../../../src/server/health-service';
import { ProxyServer } from '../../../src/server/proxy-server';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { NIX_STORE_PATH_VIOLATION } from '../../../src/store/closure-ensurer';
import { FakeUpstream, PATHS, sha256Digest } from '../../support/fake-upstream';
import { testLogger } from '../../support/test-logger';
import { directoryBytes, P } from '../../unit/execute/fixtures';
import { FakeEnsurer } from './fakes';
import { typed } from '../../support/config-values';

/**
 * The Execute service inside the real proxy stack (HTTP/2 listener, router,
 * pooled upstream relay, the CAS client as the composition root builds it),
 * driven by a grpc-js client, in front of the fake upstream. The store side
 * is a fake ensurer, so the test decides when and how "realising" ends.
 */

const INSTANCE = 'ci';
let fake: FakeUpstream;
let stopFake: () => Promise<void>;
let server: ProxyServer;
let pool: UpstreamPool;
let casClient: grpc.Client;
let client: grpc.Client;
const ensurer = new FakeEnsurer();

beforeAll(async () => {
  fake = new FakeUpstream();
  const started = await fake.start();
  stopFake = started.stop;
  const logger = testLogger();
  const config: Config = {
    ...DEFAULTS,
    ...typed({ listen: '127.0.0.1:0', upstream: `grpc://${started.address}`, sharedStore: '/unused-in-this-test' }),
    progressIntervalMs: 20,
  };
  const target = config.upstream;
  pool = new UpstreamPool(
    target,
    { connections: 1, connectTimeoutMs: 5000, keepaliveTimeMs: 0, keepaliveTimeoutMs: 1000, tls: {} },
    logger,
  );
  const upstream = new Http2UpstreamCaller(pool, 64 * 1024 * 1024);
  casClient = createCasClient(target, { maxResponseBytes: config.maxMessageBytes, keepalive: config.keepalive });
  const casReader = new GrpcCasReader({
    client: casClient,
    upstreamLabel: config.upstream.url,
    maxResponseBytes: config.maxMessageBytes,
    logger,
  });
  const execute = createExecuteService({ casReader, ensurer, upstream, config, logger });
  const router = new CallRouter({
    pool,
    health: new HealthService(new Set(['build.bazel.remote.execution.v2.Execution'])),
    execute,
    maxMessageBytes: config.maxMessageBytes,
    logger,
  });
  server = new ProxyServer(
    { host: '127.0.0.1', port: 0, keepaliveTimeMs: 0, keepaliveTimeoutMs: 1000 },
    router,
    logger,
  );
  const address = await server.listen();
  client = new grpc.Client(`127.0.0.1:${address.port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  casClient?.close();
  await server?.close(100);
  pool?.close();
  await stopFake?.();
});

function putAction(salt: string, opts: { missingRoot?: boolean } = {}): Buffer {
  const script = fake.putBlob(`#!${P.bash}/bin/sh\nexec ${P.clang}/bin/cc "$@" # ${salt}\n`, INSTANCE);
  const rootBytes = directoryBytes({ files: [{ name: 'cc', digest: script, executable: true }] });
  const root = opts.missingRoot ? sha256Digest(rootBytes) : fake.putBlob(rootBytes, INSTANCE);
  const command = fake.putMessage('build.bazel.remote.execution.v2.Command', { arguments: ['./cc', salt] }, INSTANCE);
  const action = fake.putMessage(
    'build.bazel.remote.execution.v2.Action',
    { commandDigest: command, inputRootDigest: root },
    INSTANCE,
  );
  const encoded = Buffer.from(T.ExecuteRequest.encode({ instanceName: INSTANCE, actionDigest: action }).finish());
  return Buffer.concat([encoded, Buffer.from([0x98, 0x06, 0x01])]);
}

interface Streamed {
  messages: Buffer[];
  /** Resolves with the final status (OK or not). */
  done: Promise<grpc.StatusObject>;
  firstMessage: Promise<Buffer>;
}

function stream(path: string, request: Buffer): Streamed {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', 'Bearer through-proxy');
  const call = client.makeServerStreamRequest<Buffer, Buffer>(
    path,
    (b) => b,
    (b) => b,
    request,
    metadata,
    {
      deadline: Date.now() + 20_000,
    },
  );
  const messages: Buffer[] = [];
  let gotFirst: (b: Buffer) => void = () => undefined;
  const firstMessage = new Promise<Buffer>((resolve) => (gotFirst = resolve));
  call.on('data', (m: Buffer) => {
    messages.push(m);
    if (messages.length === 1) gotFirst(m);
  });
  call.on('error', () => undefined);
  const done = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return { messages, done, firstMessage };
}

function op(bytes: Buffer): { name: string; done: boolean; response?: { value: Uint8Array } } {
  return T.Operation.decode(bytes) as never;
}

describe('Execute through the proxy', () => {
  it('streams our QUEUED Operation before the store work ends, then relays the client bytes and the upstream answer', async () => {
    const request = putAction('through');
    const index = ensurer.calls.length;
    const s = stream(EXECUTE_PATH, request);
    const first = op(await s.firstMessage);
    expect(isOurOperationName(first.name)).toBe(true);
    expect(first.done).toBe(false);
    const ensure = await ensurer.nth(index);
    expect([...ensure.paths].sort()).toEqual([P.bash, P.clang].sort());
    expect(fake.calls(PATHS.Execute)).toHaveLength(0);
    ensure.resolve();
    const status = await s.done;
    expect(status.code).toBe(Code.OK);
    const last = op(s.messages[s.messages.length - 1]!);
    expect(last.done).toBe(true);
    expect(last.name.startsWith(`${INSTANCE}/operations/`)).toBe(true);
    expect(isOurOperationName(last.name)).toBe(false);

    const executes = fake.calls(PATHS.Execute);
    expect(executes).toHaveLength(1);
    expect(executes[0]!.requests[0]!.equals(request)).toBe(true);
    expect(executes[0]!.metadata.get('authorization')).toEqual(['Bearer through-proxy']);

    // The upstream's name goes straight through; ours is followed to the final Operation.
    const upstreamWait = stream(
      WAIT_EXECUTION_PATH,
      Buffer.from(T.WaitExecutionRequest.encode({ name: last.name }).finish()),
    );
    expect((await upstreamWait.done).code).toBe(Code.OK);
    expect(op(upstreamWait.messages[0]!).name).toBe(last.name);
    const ourWait = stream(
      WAIT_EXECUTION_PATH,
      Buffer.from(T.WaitExecutionRequest.encode({ name: first.name }).finish()),
    );
    expect((await ourWait.done).code).toBe(Code.OK);
    expect(op(ourWait.messages[ourWait.messages.length - 1]!).done).toBe(true);
  });

  it('ends with a finished Operation naming the store path no source has, and runs nothing', async () => {
    const before = fake.calls(PATHS.Execute).length;
    const index = ensurer.calls.length;
    const s = stream(EXECUTE_PATH, putAction('no-source'));
    await s.firstMessage;
    const ensure = await ensurer.nth(index);
    ensure.reject(
      new ProxyError(Code.FAILED_PRECONDITION, 'NIX_PATHS_UNAVAILABLE', 'unavailable', {
        violations: [{ type: NIX_STORE_PATH_VIOLATION, subject: P.clang, description: 'not in any substituter' }],
      }),
    );
    const status = await s.done;
    expect(status.code).toBe(Code.OK);
    const last = op(s.messages[s.messages.length - 1]!);
    expect(last.done).toBe(true);
    const response = T.ExecuteResponse.decode(last.response!.value) as unknown as {
      status: { code: number; message: string };
    };
    expect(response.status.code).toBe(Code.FAILED_PRECONDITION);
    expect(response.status.message).toContain(P.clang);
    expect(fake.calls(PATHS.Execute)).toHaveLength(before);
  });

  it('fails with FAILED_PRECONDITION and a MISSING violation in grpc-status-details-bin for a missing input root', async () => {
    const s = stream(EXECUTE_PATH, putAction('no-root', { missingRoot: true }));
    const status = await s.done;
    expect(status.code).toBe(Code.FAILED_PRECONDITION);
    const details = status.metadata.get('grpc-status-details-bin')[0] as Buffer;
    const decoded = T.Status.decode(details) as unknown as { details: Array<{ type_url: string; value: Uint8Array }> };
    const violations = (
      T.PreconditionFailure.decode(decoded.details[0]!.value) as unknown as {
        violations: Array<{ type: string; subject: string }>;
      }
    ).violations;
    expect(violations[0]!.type).toBe('MISSING');
    expect(violations[0]!.subject).toMatch(/^blobs\/[0-9a-f]{64}\/\d+$/);
  });
});
