import { randomUUID } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isOurOperationName } from '../../../src/execute/operation-names';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { actionBlob, commandBlob, emptyDirectory, fakeStorePath, type Digest } from '../../corpus/hostile/generate';
import { FakeUpstream, MSG, PATHS, decode, encode, sha256Digest, type RecordedCall } from '../../support/fake-upstream';
import {
  BYTESTREAM_READ,
  BYTESTREAM_WRITE,
  FIND_MISSING,
  WAIT_EXECUTION,
  execute,
  executeRequest,
  rawClient,
  serverStream,
  unary,
  type RawAnswer,
} from '../../support/hardening/grpc-raw';
import { fdSummary, settle, snapshot, type ProcessSnapshot } from '../../support/hardening/process-probe';
import { StubNix } from '../../support/hardening/stub-nix';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * Faults around the proxy, each with the status the client must see and when
 * (before its deadline, or at it): the upstream restarting (stopped, then a
 * new one on the same port) in the middle of Execute, WaitExecution and
 * ByteStream Read/Write; an upstream that is slow or accepts connections and
 * never answers; a shared store that is missing or unreachable; a Nix process
 * that hangs; a full disk. The Nix side is a stand-in (stub-nix.ts) so each
 * failure is exact; test/integration/hardening/faults-real-nix.test.ts does
 * the same on real stores. After all of them the proxy serves normally and
 * holds no more descriptors or child processes than before.
 */

/** Generous: a status that arrives before this deadline arrived because of the fault, not the deadline. */
const CLIENT_DEADLINE_MS = 60_000;
const NIX_TIMEOUT = '2s';

let work: string;
let storeDir: string;
let nix: StubNix;
let port = 0;
let fake: FakeUpstream;
let proxy: ProxyProcess;
let client: grpc.Client;
let baseline: ProcessSnapshot;

async function startFake(): Promise<void> {
  fake = new FakeUpstream({ separateInstances: false, port });
  port = (await fake.start()).port;
}

/** The upstream goes away (calls in flight are dropped) and a new, empty one comes up on the same address. */
async function restartUpstream(): Promise<void> {
  await fake.stop(0);
  await startFake();
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'faults-'));
  storeDir = join(work, 'store');
  mkdirSync(storeDir);
  const cache = join(work, 'cache');
  mkdirSync(cache);
  writeFileSync(join(cache, 'nix-cache-info'), 'StoreDir: /nix/store\n');
  nix = new StubNix(join(work, 'nix-bin'));
  nix.sharedStore = storeDir;
  await startFake();
  proxy = await startProxy(
    [
      '--upstream',
      `grpc://127.0.0.1:${port}`,
      '--shared-store',
      storeDir,
      '--substituter',
      `file://${cache}`,
      '--nix-bin-dir',
      nix.dir,
      '--limits-nix-command-timeout',
      NIX_TIMEOUT,
      '--limits-realise-retries',
      '1',
      '--connect-timeout',
      '2s',
      '--keepalive-time',
      '1s',
      '--keepalive-timeout',
      '2s',
    ],
    { env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' } },
  );
  client = rawClient(proxy.endpoint);
  // Open every pooled upstream connection and the CAS client's, then take the reference counts.
  for (let i = 0; i < 4; i++) expect((await runExecute(plainAction(`warm-up-${i}`))).code).toBe(Code.OK);
  baseline = snapshot(proxy.pid);
});

afterAll(async () => {
  client?.close();
  await proxy?.stop();
  await fake?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Deterministic content, so a restarted upstream can be given the same action again. */
function plainAction(salt: string, args: string[] = []): Digest {
  const command = fake.putBlob(commandBlob(['/bin/true', salt, ...args]));
  return fake.putBlob(actionBlob(command, emptyDirectory(fake)));
}

/** An action that references a store path no test used before (the proxy caches positive validity). */
function nixAction(): { action: Digest; path: string } {
  const path = fakeStorePath(Math.floor(Math.random() * 2 ** 40), `tool-${randomUUID().slice(0, 8)}`);
  return { action: plainAction(randomUUID(), [`${path}/bin/tool`]), path };
}

function runExecute(action: Digest, onMessage?: (m: Buffer) => void) {
  return execute(client, executeRequest(action), { deadlineMs: CLIENT_DEADLINE_MS, onMessage });
}

/** Resolves once `count` messages came through `onMessage`. */
function messageCounter(count: number): { onMessage: (m: Buffer) => void; reached: Promise<void>; seen: Buffer[] } {
  const seen: Buffer[] = [];
  let resolve!: () => void;
  const reached = new Promise<void>((r) => (resolve = r));
  return {
    seen,
    reached,
    onMessage: (m) => {
      seen.push(m);
      if (seen.length === count) resolve();
    },
  };
}

const UPSTREAM_LOST = /upstream grpc:\/\/127\.0\.0\.1:\d+ (connection lost|unreachable)/;

describe('the upstream restarts in the middle of a call', () => {
  it('Execute: UNAVAILABLE at once (not at the deadline); WaitExecution on our name then says NOT_FOUND; Execute again succeeds', async () => {
    const action = plainAction('restart-execute');
    fake.script(PATHS.Execute, { messages: 1, then: 'hang' }, 1);
    // Our QUEUED Operation, then the upstream's first one.
    const counter = messageCounter(2);
    const running = runExecute(action, counter.onMessage);
    await counter.reached;
    await restartUpstream();
    const broken = await running;
    expect({ code: broken.code, details: broken.details }).toEqual({
      code: Code.UNAVAILABLE,
      details: expect.stringMatching(UPSTREAM_LOST),
    });
    const ours = broken.operationNames.find(isOurOperationName)!;
    expect(ours).toBeDefined();

    const waited = await serverStream(
      client,
      WAIT_EXECUTION,
      Buffer.from(T.WaitExecutionRequest.encode({ name: ours }).finish()),
      { deadlineMs: CLIENT_DEADLINE_MS },
    );
    expect(waited.code).toBe(Code.NOT_FOUND);
    const again = await runExecute(plainAction('restart-execute'));
    expect({ code: again.code, done: again.done, response: again.response?.code }).toEqual({
      code: Code.OK,
      done: true,
      response: Code.OK,
    });
  });

  it('WaitExecution: UNAVAILABLE at once; the new upstream does not know the name (NOT_FOUND: the client executes again)', async () => {
    const first = await runExecute(plainAction('restart-wait'));
    const upstreamName = first.operationNames[first.operationNames.length - 1]!;
    expect(isOurOperationName(upstreamName)).toBe(false);
    fake.script(PATHS.WaitExecution, { messages: 0, then: 'hang' }, 1);
    const request = Buffer.from(T.WaitExecutionRequest.encode({ name: upstreamName }).finish());
    const running = serverStream(client, WAIT_EXECUTION, request, { deadlineMs: CLIENT_DEADLINE_MS });
    await fake.waitForCall(
      PATHS.WaitExecution,
      (c) => decode(MSG.WaitExecutionRequest, c.requests[0]!).name === upstreamName,
    );
    await restartUpstream();
    const broken = await running;
    expect({ code: broken.code, details: broken.details }).toEqual({
      code: Code.UNAVAILABLE,
      details: expect.stringMatching(UPSTREAM_LOST),
    });
    expect((await serverStream(client, WAIT_EXECUTION, request, { deadlineMs: CLIENT_DEADLINE_MS })).code).toBe(
      Code.NOT_FOUND,
    );
  });

  it('ByteStream.Read: UNAVAILABLE at once after the chunks already sent; reading again returns every byte', async () => {
    const blob = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i * 7919) & 0xff));
    const digest = fake.putBlob(blob);
    fake.script(PATHS.Read, { messages: 2, then: 'hang' }, 1);
    const request = encode(MSG.ReadRequest, { resourceName: `blobs/${digest.hash}/${digest.sizeBytes}` });
    const counter = messageCounter(2);
    const running = serverStream(client, BYTESTREAM_READ, request, {
      deadlineMs: CLIENT_DEADLINE_MS,
      onMessage: counter.onMessage,
    });
    await counter.reached;
    await restartUpstream();
    const broken = await running;
    expect({ code: broken.code, details: broken.details }).toEqual({
      code: Code.UNAVAILABLE,
      details: expect.stringMatching(UPSTREAM_LOST),
    });
    expect(broken.messages).toHaveLength(2);

    fake.putBlob(blob);
    const again = await serverStream(client, BYTESTREAM_READ, request, { deadlineMs: CLIENT_DEADLINE_MS });
    expect(again.code).toBe(Code.OK);
    const data = Buffer.concat(again.messages.map((m) => decode(MSG.ReadResponse, m).data as Buffer));
    expect(sha256Digest(data)).toEqual(digest);
  });

  it('ByteStream.Write: UNAVAILABLE at once mid-upload, nothing committed; a new upload commits the blob', async () => {
    const blob = Buffer.alloc(512 * 1024, 0x5a);
    const digest = sha256Digest(blob);
    const resource = (uuid: string) => `uploads/${uuid}/blobs/${digest.hash}/${digest.sizeBytes}`;
    const chunk = (uuid: string, offset: number, last: boolean) =>
      encode(MSG.WriteRequest, {
        resourceName: offset === 0 ? resource(uuid) : '',
        writeOffset: offset,
        finishWrite: last,
        data: blob.subarray(offset, offset + 128 * 1024),
      });

    const uuid = randomUUID();
    fake.clearCalls();
    const call = client.makeClientStreamRequest<Buffer, Buffer>(
      BYTESTREAM_WRITE,
      (b) => b,
      (b) => b,
      new grpc.Metadata(),
      { deadline: Date.now() + CLIENT_DEADLINE_MS },
      () => undefined,
    );
    call.on('error', () => undefined);
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.write(chunk(uuid, 0, false));
    const record: RecordedCall = await fake.waitForCall(PATHS.Write);
    // The fake records requests as they arrive but announces the call at its start.
    await settle(
      () => record.requestCount,
      (n) => n >= 1,
    );
    await restartUpstream();
    const broken = await status;
    expect({ code: broken.code, details: broken.details }).toEqual({
      code: Code.UNAVAILABLE,
      details: expect.stringMatching(UPSTREAM_LOST),
    });
    expect(fake.hasBlob(digest)).toBe(false);

    const fresh = randomUUID();
    const requests = [0, 1, 2, 3].map((i) => chunk(fresh, i * 128 * 1024, i === 3));
    const written = await clientStreamAll(BYTESTREAM_WRITE, requests);
    expect(written.code).toBe(Code.OK);
    expect(Number(decode(MSG.WriteResponse, written.messages[0]!).committedSize)).toBe(blob.length);
    expect(fake.hasBlob(digest)).toBe(true);
  });
});

function clientStreamAll(path: string, requests: Buffer[]): Promise<RawAnswer> {
  const messages: Buffer[] = [];
  const call = client.makeClientStreamRequest<Buffer, Buffer>(
    path,
    (b) => b,
    (b) => b,
    new grpc.Metadata(),
    { deadline: Date.now() + CLIENT_DEADLINE_MS },
    (_e, v) => {
      if (v) messages.push(v);
    },
  );
  call.on('error', () => undefined);
  const done = new Promise<RawAnswer>((resolve) =>
    call.on('status', (s: grpc.StatusObject) =>
      setImmediate(() => resolve({ code: s.code, details: s.details, messages, trailers: s.metadata })),
    ),
  );
  for (const r of requests) call.write(r);
  call.end();
  return done;
}

describe('a slow or silent upstream', () => {
  const findMissing = () => encode(MSG.FindMissingBlobsRequest, { blobDigests: [sha256Digest(Buffer.from('x'))] });

  it('slower than the client deadline: DEADLINE_EXCEEDED at the deadline, and the upstream call is cancelled', async () => {
    fake.script(PATHS.FindMissingBlobs, { delayMs: 30_000 }, 1);
    const answer = await unary(client, FIND_MISSING, findMissing(), { deadlineMs: 1000 });
    expect(answer.code).toBe(Code.DEADLINE_EXCEEDED);
    const record = fake.calls(PATHS.FindMissingBlobs).at(-1)!;
    await record.ended;
    expect(record.outcome).toBe('cancelled');
  });

  it('slow but within the deadline: answered', async () => {
    fake.script(PATHS.FindMissingBlobs, { delayMs: 1500 }, 1);
    expect((await unary(client, FIND_MISSING, findMissing(), { deadlineMs: CLIENT_DEADLINE_MS })).code).toBe(Code.OK);
  });

  it('slow CAS reads while an Execute is prepared: DEADLINE_EXCEEDED at the client deadline', async () => {
    const action = plainAction('slow-cas');
    fake.script(PATHS.BatchReadBlobs, { delayMs: 30_000 });
    try {
      const outcome = await execute(client, executeRequest(action), { deadlineMs: 1500 });
      expect(outcome.code).toBe(Code.DEADLINE_EXCEEDED);
    } finally {
      fake.clearScripts();
    }
  });

  describe('an upstream that accepts connections and never answers', () => {
    let hole: net.Server;
    let sockets: net.Socket[];
    let holeProxy: ProxyProcess;
    let holeClient: grpc.Client;

    beforeAll(async () => {
      sockets = [];
      hole = net.createServer((s) => {
        sockets.push(s);
        s.on('error', () => undefined);
      });
      await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
      const holePort = (hole.address() as net.AddressInfo).port;
      holeProxy = await startProxy(
        [
          '--upstream',
          `grpc://127.0.0.1:${holePort}`,
          '--shared-store',
          storeDir,
          '--nix-bin-dir',
          nix.dir,
          '--connect-timeout',
          '2s',
          '--keepalive-time',
          '1s',
          '--keepalive-timeout',
          '1s',
        ],
        { env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' } },
      );
      holeClient = rawClient(holeProxy.endpoint);
    });

    afterAll(async () => {
      holeClient?.close();
      await holeProxy?.stop(1000);
      for (const s of sockets ?? []) s.destroy();
      await new Promise((r) => hole?.close(r));
    });

    it('with a short client deadline: DEADLINE_EXCEEDED at that deadline', async () => {
      expect((await unary(holeClient, FIND_MISSING, findMissing(), { deadlineMs: 1000 })).code).toBe(
        Code.DEADLINE_EXCEEDED,
      );
    });

    it('with a long client deadline: UNAVAILABLE naming the upstream once connecting or the keepalive PING times out', async () => {
      const answer = await unary(holeClient, FIND_MISSING, findMissing(), { deadlineMs: CLIENT_DEADLINE_MS });
      expect({ code: answer.code, details: answer.details }).toEqual({
        code: Code.UNAVAILABLE,
        details: expect.stringMatching(/upstream grpc:\/\/127\.0\.0\.1:\d+/),
      });
    });

    it('an Execute (its CAS reads go to the silent upstream): UNAVAILABLE after connectTimeoutMs, well before the client deadline', async () => {
      const request = executeRequest(sha256Digest(Buffer.from('silent')));
      const outcome = await execute(holeClient, request, { deadlineMs: CLIENT_DEADLINE_MS });
      expect({ code: outcome.code, details: outcome.details }).toEqual({
        code: Code.UNAVAILABLE,
        details: expect.stringMatching(/accepted no HTTP\/2 connection within 2000 ms \(connectTimeoutMs\)/),
      });
    });

    it('the proxy itself still answers its health check', async () => {
      const health = await unary(holeClient, '/grpc.health.v1.Health/Check', Buffer.alloc(0), { deadlineMs: 5000 });
      expect(health.code).toBe(Code.OK);
    });
  });
});

describe('the Nix side fails', () => {
  it('the shared store directory is missing: UNAVAILABLE naming it (Nix is never asked); served again once it is back', async () => {
    const { action } = nixAction();
    const hidden = `${storeDir}.away`;
    renameSync(storeDir, hidden);
    try {
      const outcome = await runExecute(action);
      expect({ code: outcome.code, details: outcome.details }).toEqual({
        code: Code.UNAVAILABLE,
        details: expect.stringMatching(new RegExp(`${storeDir} does not exist`)),
      });
    } finally {
      renameSync(hidden, storeDir);
    }
    nix.set('nix-store', 'valid');
    expect((await runExecute(action)).code).toBe(Code.OK);
  });

  it('the shared store cannot be reached: UNAVAILABLE naming the store and what Nix said', async () => {
    nix.set('nix-store', 'unreachable');
    const outcome = await runExecute(nixAction().action);
    expect({ code: outcome.code, details: outcome.details }).toEqual({
      code: Code.UNAVAILABLE,
      details: expect.stringMatching(/shared Nix store .* cannot be reached or read: .*Connection refused/),
    });
  });

  it('a validity check that hangs: DEADLINE_EXCEEDED after limits.nixCommandTimeoutMs, and the process is gone', async () => {
    nix.set('nix-store', 'hang');
    const before = new Set(nix.hungPids());
    const outcome = await runExecute(nixAction().action);
    expect({ code: outcome.code, details: outcome.details }).toEqual({
      code: Code.DEADLINE_EXCEEDED,
      details: expect.stringMatching(
        /nix-store .* ran longer than 2000 ms and was stopped; raise limits\.nixCommandTimeoutMs/,
      ),
    });
    const hung = nix.hungPids().filter((p) => !before.has(p));
    expect(hung.length).toBeGreaterThan(0);
    expect(
      await settle(
        () => hung.filter(StubNix.alive),
        (alive) => alive.length === 0,
      ),
    ).toEqual([]);
  });

  it('a copy that hangs: DEADLINE_EXCEEDED after limits.nixCommandTimeoutMs (each retry bounded too), and the process is gone', async () => {
    nix.set('nix-store', 'missing-in-shared');
    nix.set('nix', 'hang');
    const before = new Set(nix.hungPids());
    const outcome = await runExecute(nixAction().action);
    expect({ code: outcome.code, details: outcome.details }).toEqual({
      code: Code.DEADLINE_EXCEEDED,
      details: expect.stringMatching(/nix copy .* ran longer than 2000 ms/),
    });
    const hung = nix.hungPids().filter((p) => !before.has(p));
    expect(hung.length).toBeGreaterThan(0);
    expect(
      await settle(
        () => hung.filter(StubNix.alive),
        (alive) => alive.length === 0,
      ),
    ).toEqual([]);
  });

  it("the shared store's disk is full: UNAVAILABLE naming the store and the full disk; served once there is room", async () => {
    nix.set('nix-store', 'missing-in-shared');
    nix.set('nix', 'enospc');
    const { action } = nixAction();
    const outcome = await runExecute(action);
    expect({ code: outcome.code, details: outcome.details }).toEqual({
      code: Code.UNAVAILABLE,
      details: expect.stringMatching(/shared Nix store .* cannot be written: .*No space left on device/),
    });
    nix.set('nix', 'valid');
    expect((await runExecute(action)).code).toBe(Code.OK);
  });
});

describe('afterwards', () => {
  it('the proxy serves every kind of call again and holds no more descriptors or child processes than before', async () => {
    nix.setBoth('valid');
    const outcome = await runExecute(nixAction().action);
    expect({ code: outcome.code, response: outcome.response?.code }).toEqual({ code: Code.OK, response: Code.OK });
    expect(
      (await unary(client, FIND_MISSING, encode(MSG.FindMissingBlobsRequest, {}), { deadlineMs: CLIENT_DEADLINE_MS }))
        .code,
    ).toBe(Code.OK);
    const after = await settle(
      () => snapshot(proxy.pid),
      (s) => s.fds <= baseline.fds && s.children.length === 0,
    );
    expect(after.children).toEqual([]);
    expect(
      after.fds,
      JSON.stringify({ before: fdSummary(baseline.fdTargets), after: fdSummary(after.fdTargets) }),
    ).toBeLessThanOrEqual(baseline.fds);
  });
});
