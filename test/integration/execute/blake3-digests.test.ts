import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { createCasClient } from '../../../src/execute/cas-client';
import { DigestFunction } from '../../../src/execute/digests';
import { createExecuteService } from '../../../src/execute/execute-handler';
import { EXECUTE_PATH } from '../../../src/execute/follow-execution';
import { GrpcCasReader } from '../../../src/execute/grpc-cas-reader';
import { grpcCapabilitiesFetch, UpstreamDigestFunctions } from '../../../src/execute/upstream-digest-functions';
import { Http2UpstreamCaller } from '../../../src/passthrough/http2-upstream-caller';
import { UpstreamPool } from '../../../src/passthrough/upstream-pool';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { CallRouter } from '../../../src/server/call-router';
import { HealthService } from '../../../src/server/health-service';
import { ProxyServer } from '../../../src/server/proxy-server';
import { FakeUpstream, PATHS, type Digest } from '../../support/fake-upstream';
import { typed } from '../../support/config-values';
import { testLogger } from '../../support/test-logger';
import { directoryBytes, P } from '../../unit/execute/fixtures';
import { FakeEnsurer } from './fakes';

/**
 * Issue #12: Buck2 sends BLAKE3 digests without ExecuteRequest.digest_function
 * and without blake3/ in resource names. The proxy resolves the function from
 * the upstream's GetCapabilities (by instance name) and reads, verifies and
 * forwards accordingly. One proxy stack per fake, each fake announcing
 * different functions.
 */

const INSTANCE = 'buck';
const { SHA256, BLAKE3 } = DigestFunction;

interface Stack {
  fake: FakeUpstream;
  ensurer: FakeEnsurer;
  client: grpc.Client;
  close(): Promise<void>;
}

function capabilities(functions: number[]): Record<string, unknown> {
  return {
    cacheCapabilities: { digestFunctions: functions, maxBatchTotalSizeBytes: 4 * 1024 * 1024 },
    executionCapabilities: { digestFunction: functions[0], digestFunctions: functions, execEnabled: true },
    lowApiVersion: { major: 2 },
    highApiVersion: { major: 2, minor: 3 },
  };
}

async function startStack(functions: number[], options: { batchRead?: boolean } = {}): Promise<Stack> {
  const fake = new FakeUpstream({ capabilities: capabilities(functions) });
  if (options.batchRead === false)
    fake.script(PATHS.BatchReadBlobs, { status: { code: Code.UNIMPLEMENTED, message: 'no batch' } }, Infinity);
  const started = await fake.start();
  const logger = testLogger();
  const config: Config = {
    ...DEFAULTS,
    ...typed({ listen: '127.0.0.1:0', upstream: `grpc://${started.address}`, sharedStore: '/unused-in-this-test' }),
    progressIntervalMs: 20,
  };
  const target = config.upstream;
  const pool = new UpstreamPool(
    target,
    { connections: 1, connectTimeoutMs: 5000, keepaliveTimeMs: 0, keepaliveTimeoutMs: 1000, tls: {} },
    logger,
  );
  const upstream = new Http2UpstreamCaller(pool, 64 * 1024 * 1024);
  const casClient = createCasClient(target, { maxResponseBytes: config.maxMessageBytes, keepalive: config.keepalive });
  const casReader = new GrpcCasReader({
    client: casClient,
    upstreamLabel: target.url,
    maxResponseBytes: config.maxMessageBytes,
    logger,
  });
  const digestFunctions = new UpstreamDigestFunctions({ fetch: grpcCapabilitiesFetch(casClient), logger });
  const ensurer = new FakeEnsurer();
  ensurer.auto = {};
  const execute = createExecuteService({ casReader, digestFunctions, ensurer, upstream, config, logger });
  const router = new CallRouter({
    pool,
    health: new HealthService(new Set(['build.bazel.remote.execution.v2.Execution'])),
    execute,
    maxMessageBytes: config.maxMessageBytes,
    logger,
  });
  const server = new ProxyServer(
    { host: '127.0.0.1', port: 0, keepaliveTimeMs: 0, keepaliveTimeoutMs: 1000 },
    router,
    logger,
  );
  const address = await server.listen();
  const client = new grpc.Client(`127.0.0.1:${address.port}`, grpc.credentials.createInsecure());
  return {
    fake,
    ensurer,
    client,
    async close() {
      client.close();
      casClient.close();
      await server.close(100);
      pool.close();
      await started.stop();
    },
  };
}

/** An action whose script references two store paths, every blob stored under `fn`'s digest. */
function putAction(fake: FakeUpstream, fn: 'blake3' | 'sha256', salt: string): { action: Digest; blobs: Digest[] } {
  const put = (data: string | Buffer): Digest =>
    fn === 'blake3' ? fake.putBlake3Blob(data, INSTANCE) : fake.putBlob(data, INSTANCE);
  const script = put(`#!${P.bash}/bin/sh\nexec ${P.clang}/bin/cc "$@" # ${salt}\n`);
  const root = put(directoryBytes({ files: [{ name: 'cc', digest: script, executable: true }] }));
  const command = put(Buffer.from(T.Command.encode({ arguments: ['./cc', salt] }).finish()));
  const action = put(Buffer.from(T.Action.encode({ commandDigest: command, inputRootDigest: root }).finish()));
  return { action, blobs: [action, command, root, script] };
}

function executeRequest(action: Digest, digestFunction?: number): Buffer {
  return Buffer.from(
    T.ExecuteRequest.encode({
      instanceName: INSTANCE,
      actionDigest: action,
      ...(digestFunction !== undefined ? { digestFunction } : {}),
    }).finish(),
  );
}

function runExecute(stack: Stack, request: Buffer): Promise<{ status: grpc.StatusObject; messages: Buffer[] }> {
  const call = stack.client.makeServerStreamRequest<Buffer, Buffer>(
    EXECUTE_PATH,
    (b) => b,
    (b) => b,
    request,
    new grpc.Metadata(),
    {
      deadline: Date.now() + 20_000,
    },
  );
  const messages: Buffer[] = [];
  call.on('data', (m: Buffer) => messages.push(m));
  call.on('error', () => undefined);
  return new Promise((resolve) => call.on('status', (status) => resolve({ status, messages })));
}

/** Every digest the proxy asked the fake for: BatchReadBlobs (with its digest_function) and ByteStream resource names. */
function casReads(
  fake: FakeUpstream,
  since: { batch: number; read: number },
): { batch: Array<{ fn: number; hashes: string[] }>; names: string[] } {
  const batch = fake
    .calls(PATHS.BatchReadBlobs)
    .slice(since.batch)
    .map((c) => {
      const r = T.BatchReadBlobsRequest.decode(c.requests[0]!) as unknown as {
        digestFunction: number;
        digests: Array<{ hash: string }>;
      };
      return { fn: r.digestFunction, hashes: r.digests.map((d) => d.hash) };
    });
  const names = fake
    .calls(PATHS.Read)
    .slice(since.read)
    .map((c) => (T.ReadRequest.decode(c.requests[0]!) as unknown as { resourceName: string }).resourceName);
  return { batch, names };
}

function marks(fake: FakeUpstream): { batch: number; read: number; execute: number } {
  return {
    batch: fake.calls(PATHS.BatchReadBlobs).length,
    read: fake.calls(PATHS.Read).length,
    execute: fake.calls(PATHS.Execute).length,
  };
}

describe('upstream announcing only BLAKE3', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack([BLAKE3]);
  });
  afterAll(async () => stack?.close());

  it.each<[string, number | undefined]>([
    ['digest_function unset', undefined],
    ['digest_function BLAKE3', BLAKE3],
  ])(
    'prepares (BLAKE3-verified) and forwards an Execute with %s, finding the store paths of its tree',
    async (_name, fn) => {
      const { fake, ensurer } = stack;
      const { action, blobs } = putAction(fake, 'blake3', `b3-${String(fn)}`);
      const before = marks(fake);
      const ensured = ensurer.calls.length;
      const request = executeRequest(action, fn);
      const { status, messages } = await runExecute(stack, request);
      expect(status.code, status.details).toBe(Code.OK);
      expect(messages.length).toBeGreaterThan(0);

      expect([...ensurer.calls[ensured]!.paths].sort()).toEqual([P.bash, P.clang].sort());
      const executes = fake.calls(PATHS.Execute).slice(before.execute);
      expect(executes).toHaveLength(1);
      expect(executes[0]!.requests[0]!.equals(request)).toBe(true);

      const reads = casReads(fake, before);
      expect(reads.batch.flatMap((b) => b.hashes).sort()).toEqual(blobs.map((b) => b.hash).sort());
      // The proxy names BLAKE3 in its reads whether or not the client did.
      for (const b of reads.batch) expect(b.fn).toBe(BLAKE3);
      expect(fake.calls(PATHS.GetCapabilities).length).toBe(1);
    },
  );

  it('uses blake3/ ByteStream resource names when the upstream has no BatchReadBlobs', async () => {
    const s = await startStack([BLAKE3], { batchRead: false });
    try {
      const { action, blobs } = putAction(s.fake, 'blake3', 'bytestream');
      const { status } = await runExecute(s, executeRequest(action));
      expect(status.code, status.details).toBe(Code.OK);
      const { names } = casReads(s.fake, { batch: 0, read: 0 });
      expect(names.sort()).toEqual(blobs.map((b) => `${INSTANCE}/blobs/blake3/${b.hash}/${b.sizeBytes}`).sort());
      expect(s.fake.calls(PATHS.Execute)).toHaveLength(1);
    } finally {
      await s.close();
    }
  });

  it('still refuses BLAKE3 blobs whose content does not match (DATA_LOSS), nothing forwarded', async () => {
    const { fake } = stack;
    const { action } = putAction(fake, 'blake3', 'corrupt');
    // Same hash and size, other bytes.
    const original = fake.getBlob(action, INSTANCE)!;
    const corrupt = Buffer.from(original);
    corrupt[corrupt.length - 1] = corrupt[corrupt.length - 1]! ^ 0xff;
    fake.cas.putEntry(action, { kind: 'bytes', data: corrupt }, INSTANCE);
    const before = marks(fake);
    const { status } = await runExecute(stack, executeRequest(action));
    expect(status.code).toBe(Code.DATA_LOSS);
    expect(fake.calls(PATHS.Execute).length).toBe(before.execute);
  });
});

describe('upstream announcing only SHA256', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack([SHA256]);
  });
  afterAll(async () => stack?.close());

  it('takes an unset 64-hex digest for SHA256 and leaves digest_function unset in its reads', async () => {
    const { action, blobs } = putAction(stack.fake, 'sha256', 'sha');
    const before = marks(stack.fake);
    const { status } = await runExecute(stack, executeRequest(action));
    expect(status.code, status.details).toBe(Code.OK);
    const reads = casReads(stack.fake, before);
    expect(reads.batch.flatMap((b) => b.hashes).sort()).toEqual(blobs.map((b) => b.hash).sort());
    for (const b of reads.batch) expect(b.fn).toBe(0);
    expect(stack.fake.calls(PATHS.Execute).length).toBe(before.execute + 1);
  });

  it('still honours an explicit BLAKE3', async () => {
    const { action } = putAction(stack.fake, 'blake3', 'explicit');
    const before = marks(stack.fake);
    const { status } = await runExecute(stack, executeRequest(action, BLAKE3));
    expect(status.code, status.details).toBe(Code.OK);
    for (const b of casReads(stack.fake, before).batch) expect(b.fn).toBe(BLAKE3);
  });
});

describe('upstream announcing SHA256 and BLAKE3', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack([BLAKE3, SHA256]);
  });
  afterAll(async () => stack?.close());

  it('prefers SHA256 for an unset 64-hex digest (the REAPI default)', async () => {
    const { action } = putAction(stack.fake, 'sha256', 'both-sha');
    const { status } = await runExecute(stack, executeRequest(action));
    expect(status.code, status.details).toBe(Code.OK);
  });

  it('so a BLAKE3 action without digest_function fails verification as SHA256 (the client must set BLAKE3)', async () => {
    const { action } = putAction(stack.fake, 'blake3', 'both-b3');
    const before = marks(stack.fake);
    const { status } = await runExecute(stack, executeRequest(action));
    expect(status.code).toBe(Code.DATA_LOSS);
    expect(stack.fake.calls(PATHS.Execute).length).toBe(before.execute);
  });

  it('and works with digest_function BLAKE3 set', async () => {
    const { action } = putAction(stack.fake, 'blake3', 'both-b3-explicit');
    const { status } = await runExecute(stack, executeRequest(action, BLAKE3));
    expect(status.code, status.details).toBe(Code.OK);
  });
});
