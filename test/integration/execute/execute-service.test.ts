import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { createExecuteService } from '../../../src/execute/execute-handler';
import type { ExecuteService } from '../../../src/server/call-router';
import { EXECUTE_PATH, WAIT_EXECUTION_PATH } from '../../../src/execute/follow-execution';
import { GrpcCasReader } from '../../../src/execute/grpc-cas-reader';
import { EXECUTE_OPERATION_METADATA_URL, Stage } from '../../../src/execute/operation-messages';
import { isOurOperationName } from '../../../src/execute/operation-names';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { NIX_STORE_PATH_VIOLATION } from '../../../src/store/closure-ensurer';
import { FakeUpstream, PATHS, decode, sha256Digest, type Digest } from '../../support/fake-upstream';
import { testLogger } from '../../support/test-logger';
import { directoryBytes, P } from '../../unit/execute/fixtures';
import { FakeEnsurer, FakeServerCall, FakeUpstreamCaller, upstreamOperation } from './fakes';
import { sharedStoreUrl } from '../../support/config-values';

const INSTANCE = 'main';

let fake: FakeUpstream;
let stopFake: () => Promise<void>;
let client: grpc.Client;

beforeAll(async () => {
  fake = new FakeUpstream();
  const started = await fake.start();
  stopFake = started.stop;
  client = new grpc.Client(started.address, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client.close();
  await stopFake();
});

afterEach(() => {
  fake.clearScripts();
  fake.clearCalls();
});

interface Setup {
  service: ExecuteService;
  ensurer: FakeEnsurer;
  upstream: FakeUpstreamCaller;
}

/** Leases that record which sets of paths are held right now. */
class RecordingLeases {
  readonly held = new Set<string[]>();
  async acquire(paths: readonly string[]): Promise<{ release(): void }> {
    const entry = [...paths];
    this.held.add(entry);
    return { release: () => this.held.delete(entry) };
  }
}

function setup(
  overrides: { limits?: Partial<Config['limits']>; detachGraceMs?: number; leases?: RecordingLeases } = {},
): Setup {
  const config: Config = {
    ...DEFAULTS,
    sharedStore: sharedStoreUrl('/unused'),
    progressIntervalMs: 10,
    limits: { ...DEFAULTS.limits, ...overrides.limits },
  };
  const ensurer = new FakeEnsurer();
  const upstream = new FakeUpstreamCaller();
  const logger = testLogger();
  const casReader = new GrpcCasReader({
    client,
    upstreamLabel: 'grpc://fake',
    maxResponseBytes: config.maxMessageBytes,
    logger,
  });
  const service = createExecuteService({
    casReader,
    ensurer,
    upstream,
    config,
    logger,
    tuning: { detachGraceMs: overrides.detachGraceMs ?? 60_000 },
    ...(overrides.leases ? { leases: overrides.leases as never } : {}),
  });
  return { service, ensurer, upstream };
}

/** An action whose command and input tree reference store paths; a unique salt keeps memo hits out. */
function putAction(
  salt: string,
  extra: { missingFile?: boolean } = {},
): { request: Buffer; action: Digest; root: Digest; expected: string[] } {
  const script = Buffer.from(`#!${P.bash}/bin/sh\nexec ${P.clang}/bin/cc "$@" # ${salt}\n`);
  const scriptDigest = extra.missingFile ? sha256Digest(script) : fake.putBlob(script, INSTANCE);
  const lib = fake.putBlob(
    directoryBytes({ symlinks: [{ name: 'libc.so', target: `${P.glibc}/lib/libc.so.6` }] }),
    INSTANCE,
  );
  const root = fake.putBlob(
    directoryBytes({
      files: [{ name: `cc-${salt}`, digest: scriptDigest, executable: true }],
      dirs: [{ name: 'lib', digest: lib }],
    }),
    INSTANCE,
  );
  const command = fake.putMessage(
    'build.bazel.remote.execution.v2.Command',
    {
      arguments: [`cc-${salt}`, '-c', 'main.c'],
      environmentVariables: [{ name: 'PATH', value: `${P.python}/bin:/usr/bin` }],
    },
    INSTANCE,
  );
  const action = fake.putMessage(
    'build.bazel.remote.execution.v2.Action',
    { commandDigest: command, inputRootDigest: root },
    INSTANCE,
  );
  const encoded = Buffer.from(
    T.ExecuteRequest.encode({ instanceName: INSTANCE, actionDigest: action, skipCacheLookup: true }).finish(),
  );
  // A field this proxy does not know (99, varint 1): the relayed bytes must still carry it.
  const request = Buffer.concat([encoded, Buffer.from([0x98, 0x06, 0x01])]);
  return { request, action, root, expected: [P.bash, P.clang, P.glibc, P.python].sort() };
}

/** Digests asked for with BatchReadBlobs since the fake's calls were last cleared. */
function digestsRead(): number {
  return fake
    .calls(PATHS.BatchReadBlobs)
    .reduce((n, c) => n + (decode('BatchReadBlobsRequest', c.requests[0]!).digests as unknown[]).length, 0);
}

function waitRequest(name: string): Buffer {
  return Buffer.from(T.WaitExecutionRequest.encode({ name }).finish());
}

function stageOf(op: { metadata?: { type_url: string; value: Uint8Array } }): number {
  expect(op.metadata?.type_url).toBe(EXECUTE_OPERATION_METADATA_URL);
  return (T.ExecuteOperationMetadata.decode(op.metadata!.value) as unknown as { stage: number }).stage;
}

describe('Execute', () => {
  it('answers with our QUEUED Operation before the ensurer resolves, repeats it, then relays the original bytes', async () => {
    const { service, ensurer, upstream } = setup();
    const { request, action, expected } = putAction('queued');
    const call = new FakeServerCall(EXECUTE_PATH, request);
    const done = service.execute(call);

    await call.until((c) => c.messages.length >= 1);
    const first = call.operations()[0]!;
    expect(isOurOperationName(first.name)).toBe(true);
    expect(first.name.startsWith(`${INSTANCE}/operations/`)).toBe(true);
    expect(first.done).toBe(false);
    expect(stageOf(first as never)).toBe(Stage.QUEUED);
    const md = T.ExecuteOperationMetadata.toObject(
      T.ExecuteOperationMetadata.decode((first as never as { metadata: { value: Uint8Array } }).metadata.value),
      { longs: Number },
    ) as { actionDigest: Digest };
    expect(md.actionDigest).toEqual(action);

    const ensure = await ensurer.nth(0);
    expect([...ensure.paths].sort()).toEqual(expected);
    // Still preparing: the same Operation again as a keepalive, nothing relayed yet.
    await call.until((c) => c.messages.length >= 3);
    expect(new Set(call.operations().map((o) => o.name))).toEqual(new Set([first.name]));
    expect(upstream.relays).toHaveLength(0);

    ensure.resolve();
    const relay = await upstream.nth(0);
    expect(relay.path).toBe(EXECUTE_PATH);
    expect(relay.frame.equals(call.frame)).toBe(true);
    const finalOp = upstreamOperation('upstream/op-1', true);
    relay.release({ messages: [upstreamOperation('upstream/op-1', false), finalOp] });
    await done;
    expect(call.status?.code).toBe(Code.OK);
    expect(call.messages[call.messages.length - 1]).toEqual(finalOp);

    // The CAS reads went out as the client: its instance and its credentials.
    const reads = fake.calls(PATHS.BatchReadBlobs);
    expect(reads.length).toBeGreaterThan(0);
    for (const r of reads) {
      expect(r.metadata.get('authorization')).toEqual(['Bearer client-token']);
      expect(decode('BatchReadBlobsRequest', r.requests[0]!).instanceName).toBe(INSTANCE);
    }
  });

  it('reads only the Action and Command of a new action over an input tree it has walked before', async () => {
    const { service, ensurer, upstream } = setup();
    ensurer.auto = {};
    const { request, root } = putAction('memo');
    // The same input tree under another Command: a different action.
    const command = fake.putMessage(
      'build.bazel.remote.execution.v2.Command',
      { arguments: ['cc-memo', '-O2'] },
      INSTANCE,
    );
    const action = fake.putMessage(
      'build.bazel.remote.execution.v2.Action',
      { commandDigest: command, inputRootDigest: root },
      INSTANCE,
    );
    const other = Buffer.from(T.ExecuteRequest.encode({ instanceName: INSTANCE, actionDigest: action }).finish());
    for (const [i, r] of [request, other].entries()) {
      const call = new FakeServerCall(EXECUTE_PATH, r);
      const done = service.execute(call);
      (await upstream.nth(i)).release({ messages: [upstreamOperation('up', true)] });
      await done;
      if (i === 0) fake.clearCalls();
    }
    expect(digestsRead()).toBe(2);
  });

  it('reads nothing from the CAS for an action it has prepared before, ensures its paths again, and sends no QUEUED Operation of its own', async () => {
    const { service, ensurer, upstream } = setup();
    ensurer.auto = {};
    const { request, expected } = putAction('again');
    const seen: string[][] = [];
    for (let i = 0; i < 2; i++) {
      const call = new FakeServerCall(EXECUTE_PATH, request);
      const done = service.execute(call);
      (await upstream.nth(i)).release({ messages: [upstreamOperation('up', true)] });
      await done;
      seen.push(call.operations().map((o) => o.name));
      if (i === 0) fake.clearCalls();
    }
    expect(digestsRead()).toBe(0);
    expect([...ensurer.calls[ensurer.calls.length - 1]!.paths].sort()).toEqual(expected);
    // The first Execute waited for CAS reads: our QUEUED Operation (repeated while it waited), then the upstream's.
    // The warm one waited for nothing: the client sees the upstream's Operation only.
    expect(seen[0]!.slice(0, -1).length).toBeGreaterThan(0);
    expect(seen[0]!.slice(0, -1).every(isOurOperationName)).toBe(true);
    expect(seen[0]!.at(-1)).toBe('up');
    expect(seen[1]).toEqual(['up']);
  });

  it('reads the CAS with ByteStream.Read when the upstream has no BatchReadBlobs', async () => {
    const { service, ensurer, upstream } = setup();
    fake.script(PATHS.BatchReadBlobs, { status: { code: Code.UNIMPLEMENTED, message: 'unknown service' } });
    ensurer.auto = {};
    const { request, expected } = putAction('bytestream');
    const call = new FakeServerCall(EXECUTE_PATH, request);
    const done = service.execute(call);
    (await upstream.nth(0)).release({ messages: [upstreamOperation('up', true)] });
    await done;
    expect([...ensurer.calls[0]!.paths].sort()).toEqual(expected);
    expect(fake.calls(PATHS.BatchReadBlobs)).toHaveLength(1);
    expect(fake.calls(PATHS.Read).length).toBeGreaterThanOrEqual(4);
    expect(call.status?.code).toBe(Code.OK);
  });

  it('ends with FAILED_PRECONDITION and a MISSING violation when an input blob is not in the CAS', async () => {
    const { service, ensurer, upstream } = setup();
    const { request } = putAction('missing-blob', { missingFile: true });
    const call = new FakeServerCall(EXECUTE_PATH, request);
    await service.execute(call);
    expect(call.status?.code).toBe(Code.FAILED_PRECONDITION);
    const details = T.Status.decode(call.status!.details!) as unknown as {
      code: number;
      details: Array<{ type_url: string; value: Uint8Array }>;
    };
    expect(details.code).toBe(Code.FAILED_PRECONDITION);
    expect(details.details[0]!.type_url).toBe('type.googleapis.com/google.rpc.PreconditionFailure');
    const failure = T.PreconditionFailure.decode(details.details[0]!.value) as unknown as {
      violations: Array<{ type: string; subject: string }>;
    };
    expect(failure.violations).toHaveLength(1);
    expect(failure.violations[0]!.type).toBe('MISSING');
    expect(failure.violations[0]!.subject).toMatch(/^blobs\/[0-9a-f]{64}\/\d+$/);
    expect(ensurer.calls).toHaveLength(0);
    expect(upstream.relays).toHaveLength(0);

    // The name it handed out is forgotten: a client that comes back is told to Execute again.
    const wait = new FakeServerCall(WAIT_EXECUTION_PATH, waitRequest(call.operations()[0]!.name));
    await service.waitExecution(wait);
    expect(wait.status?.code).toBe(Code.NOT_FOUND);
  });

  it('finishes the Operation with NIX_STORE_PATH violations when the ensurer has no source for a path', async () => {
    const { service, ensurer, upstream } = setup();
    const { request } = putAction('missing-path');
    ensurer.auto = {
      error: new ProxyError(Code.FAILED_PRECONDITION, 'NIX_PATHS_UNAVAILABLE', 'unavailable', {
        violations: [
          {
            type: NIX_STORE_PATH_VIOLATION,
            subject: P.clang,
            description: 'no substituter has it (tried file:///cache)',
          },
        ],
      }),
    };
    const call = new FakeServerCall(EXECUTE_PATH, request);
    await service.execute(call);
    expect(call.status?.code).toBe(Code.OK);
    expect(upstream.relays).toHaveLength(0);
    const ops = call.operations();
    const last = ops[ops.length - 1]!;
    expect(last.done).toBe(true);
    expect(last.name).toBe(ops[0]!.name);
    expect((last as { error?: unknown }).error).toBeUndefined();
    const response = T.ExecuteResponse.decode(last.response!.value) as unknown as {
      status: { code: number; message: string; details: Array<{ value: Uint8Array }> };
    };
    expect(response.status.code).toBe(Code.FAILED_PRECONDITION);
    expect(response.status.message).toContain(P.clang);
    expect(response.status.message).toContain('no substituter has it');
    expect(response.status.message).toMatch(/referenced by input file cc-missing-path/);
    const violations = (
      T.PreconditionFailure.decode(response.status.details[0]!.value) as unknown as {
        violations: Array<{ type: string; subject: string }>;
      }
    ).violations;
    expect(violations.map((v) => [v.type, v.subject])).toEqual([['NIX_STORE_PATH', P.clang]]);

    // WaitExecution on the name returns the same final Operation.
    const wait = new FakeServerCall(WAIT_EXECUTION_PATH, waitRequest(last.name));
    await service.waitExecution(wait);
    expect(wait.status?.code).toBe(Code.OK);
    expect(wait.messages).toEqual([call.messages[call.messages.length - 1]]);
  });

  it.each<[string, ProxyError, number]>([
    [
      'UNAVAILABLE',
      new ProxyError(Code.UNAVAILABLE, 'STORE_UNREACHABLE', 'shared store unreachable; retry'),
      Code.UNAVAILABLE,
    ],
    ['an unknown error as INTERNAL', new Error('boom') as ProxyError, Code.INTERNAL],
  ])('ends the call with %s from the ensurer', async (_name, error, code) => {
    const { service, ensurer, upstream } = setup();
    ensurer.auto = { error };
    const call = new FakeServerCall(EXECUTE_PATH, putAction(`err-${code}`).request);
    await service.execute(call);
    expect(call.status?.code).toBe(code);
    if (code === Code.INTERNAL) expect(call.status?.message).not.toContain('boom');
    else expect(call.status?.message).toContain('shared store unreachable');
    expect(upstream.relays).toHaveLength(0);
  });

  it('ends with DEADLINE_EXCEEDED when preparation outlasts limits.prepareTimeoutMs', async () => {
    const { service, ensurer } = setup({ limits: { prepareTimeoutMs: 50 } });
    const call = new FakeServerCall(EXECUTE_PATH, putAction('timeout').request);
    await service.execute(call);
    // Whichever step the time ran out in (reading, or the ensurer that never answers), it was stopped.
    for (const c of ensurer.calls) expect(c.signal.aborted).toBe(true);
    expect(call.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(call.status?.message).toContain('limits.prepareTimeoutMs');
  });

  it.each<[string, Buffer]>([
    ['garbage', Buffer.from([0x0a, 0xff, 0xff])],
    [
      'a malformed action digest',
      Buffer.from(T.ExecuteRequest.encode({ actionDigest: { hash: 'xyz', sizeBytes: 1 } }).finish()),
    ],
    [
      'an instance name of 100,000 characters',
      Buffer.from(
        T.ExecuteRequest.encode({
          instanceName: 'i'.repeat(100_000),
          actionDigest: { hash: 'a'.repeat(64), sizeBytes: 1 },
        }).finish(),
      ),
    ],
  ])('refuses %s with INVALID_ARGUMENT', async (_name, message) => {
    const { service } = setup();
    const call = new FakeServerCall(EXECUTE_PATH, message);
    await service.execute(call);
    expect(call.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(call.messages).toHaveLength(0);
  });

  it('refuses an Execute beyond limits.concurrentPreparations with RESOURCE_EXHAUSTED naming it, and takes one again once a preparation ends', async () => {
    const { service, ensurer } = setup({ limits: { concurrentPreparations: 2 } });
    const first = new FakeServerCall(EXECUTE_PATH, putAction('slots-1').request);
    const second = new FakeServerCall(EXECUTE_PATH, putAction('slots-2').request);
    const running = [service.execute(first), service.execute(second)];
    await ensurer.nth(1);
    const third = new FakeServerCall(EXECUTE_PATH, putAction('slots-3').request);
    await service.execute(third);
    expect(third.status?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(third.status?.message).toMatch(/preparing 2 Executes already.*limits\.concurrentPreparations = 2/);
    // The first preparation ends (its paths are missing): a slot comes back.
    ensurer.calls[0]!.reject(new ProxyError(Code.FAILED_PRECONDITION, 'X', 'no'));
    await new Promise((r) => setTimeout(r, 20));
    const fourth = new FakeServerCall(EXECUTE_PATH, putAction('slots-4').request);
    const fourthDone = service.execute(fourth);
    await ensurer.nth(2);
    expect(fourth.status?.code).not.toBe(Code.RESOURCE_EXHAUSTED);
    for (const c of ensurer.calls.slice(1)) c.reject(new ProxyError(Code.FAILED_PRECONDITION, 'X', 'no'));
    await Promise.all([...running, fourthDone]);
  });

  it('names the limit when the instance name is too long, and takes one at the limit', async () => {
    const { service } = setup();
    const long = new FakeServerCall(
      EXECUTE_PATH,
      Buffer.from(
        T.ExecuteRequest.encode({
          instanceName: 'i'.repeat(1025),
          actionDigest: { hash: 'a'.repeat(64), sizeBytes: 1 },
        }).finish(),
      ),
    );
    await service.execute(long);
    expect(long.status?.message).toMatch(/instance_name is 1025 characters; the proxy accepts at most 1024/);
    const atLimit = new FakeServerCall(
      EXECUTE_PATH,
      Buffer.from(
        T.ExecuteRequest.encode({
          instanceName: 'i'.repeat(1024),
          actionDigest: { hash: 'a'.repeat(64), sizeBytes: 1 },
        }).finish(),
      ),
    );
    await service.execute(atLimit);
    expect(atLimit.status?.message ?? '').not.toMatch(/instance_name/);
  });
});

describe('WaitExecution', () => {
  it('follows our name during preparation and through the hand-over', async () => {
    const { service, ensurer, upstream } = setup();
    const execute = new FakeServerCall(EXECUTE_PATH, putAction('follow').request);
    const executeDone = service.execute(execute);
    await execute.until((c) => c.messages.length >= 1);
    const name = execute.operations()[0]!.name;

    const wait = new FakeServerCall(WAIT_EXECUTION_PATH, waitRequest(name));
    const waitDone = service.waitExecution(wait);
    await wait.until((c) => c.messages.length >= 1);
    expect(wait.operations()[0]!.name).toBe(name);
    expect(wait.operations()[0]!.done).toBe(false);

    (await ensurer.nth(0)).resolve();
    const forward = await upstream.nth(0);
    expect(forward.call).toBe(execute);
    forward.release({ messages: [upstreamOperation('upstream/op-2', false)] });
    await executeDone;

    // The upstream named its Operation: the waiting call follows it there.
    const follow = await upstream.nth(1);
    expect(follow.call).toBe(wait);
    expect(follow.path).toBe(WAIT_EXECUTION_PATH);
    expect((T.WaitExecutionRequest.decode(follow.frame.subarray(5)) as unknown as { name: string }).name).toBe(
      'upstream/op-2',
    );
    const finalOp = upstreamOperation('upstream/op-2', true);
    follow.release({ messages: [finalOp] });
    await waitDone;
    expect(wait.status?.code).toBe(Code.OK);
    expect(wait.messages[wait.messages.length - 1]).toEqual(finalOp);

    // Once the final Operation is known, a later WaitExecution gets it without asking upstream.
    const again = new FakeServerCall(WAIT_EXECUTION_PATH, waitRequest(name));
    await service.waitExecution(again);
    expect(again.messages).toEqual([finalOp]);
    expect(upstream.relays).toHaveLength(2);
  });

  it('takes over the forwarding when the Execute stream broke during preparation', async () => {
    const { service, ensurer, upstream } = setup();
    const execute = new FakeServerCall(EXECUTE_PATH, putAction('takeover').request);
    await Promise.all([
      service.execute(execute),
      execute.until((c) => c.messages.length >= 1).then(() => execute.cancel()),
    ]);
    const name = execute.operations()[0]!.name;

    const wait = new FakeServerCall(WAIT_EXECUTION_PATH, waitRequest(name));
    const waitDone = service.waitExecution(wait);
    await wait.until((c) => c.messages.length >= 1);
    const ensure = await ensurer.nth(0);
    expect(ensure.signal.aborted).toBe(false);
    ensure.resolve();

    const forward = await upstream.nth(0);
    expect(forward.call).toBe(wait);
    expect(forward.path).toBe(EXECUTE_PATH);
    expect(forward.frame.equals(execute.frame)).toBe(true);
    forward.release({ messages: [upstreamOperation('up/3', true)] });
    await waitDone;
    expect(wait.status?.code).toBe(Code.OK);
  });

  it('relays WaitExecution with the upstream name when the hand-over happened and the stream ended', async () => {
    const { service, ensurer, upstream } = setup();
    ensurer.auto = {};
    const execute = new FakeServerCall(EXECUTE_PATH, putAction('after').request);
    const done = service.execute(execute);
    (await upstream.nth(0)).release({ messages: [upstreamOperation('up/4', false)] });
    await done;
    const name = execute.operations()[0]!.name;

    const wait = new FakeServerCall(WAIT_EXECUTION_PATH, waitRequest(name));
    const waitDone = service.waitExecution(wait);
    const follow = await upstream.nth(1);
    expect(follow.path).toBe(WAIT_EXECUTION_PATH);
    expect((T.WaitExecutionRequest.decode(follow.frame.subarray(5)) as unknown as { name: string }).name).toBe('up/4');
    follow.release({ messages: [upstreamOperation('up/4', true)] });
    await waitDone;
    expect(wait.status?.code).toBe(Code.OK);
  });

  it("holds the action's paths until its Operation is done, also when a WaitExecution follows it after the Execute stream ended", async () => {
    const leases = new RecordingLeases();
    const { service, ensurer, upstream } = setup({ leases });
    ensurer.auto = {};
    const execute = new FakeServerCall(EXECUTE_PATH, putAction('held').request);
    const done = service.execute(execute);
    (await upstream.nth(0)).release({ messages: [upstreamOperation('up/7', false)] });
    await done;
    // The Execute call is over, the action runs on: its paths stay held.
    expect([...leases.held].flat().sort()).toEqual(putAction('held').expected);
    const wait = new FakeServerCall(WAIT_EXECUTION_PATH, waitRequest(execute.operations()[0]!.name));
    const waitDone = service.waitExecution(wait);
    (await upstream.nth(1)).release({ messages: [upstreamOperation('up/7', true)] });
    await waitDone;
    expect(leases.held.size).toBe(0);
  });

  it("lets go of an action's paths when nobody has followed it upstream for the grace period", async () => {
    const leases = new RecordingLeases();
    const { service, ensurer, upstream } = setup({ leases, detachGraceMs: 50 });
    ensurer.auto = {};
    const execute = new FakeServerCall(EXECUTE_PATH, putAction('unfollowed').request);
    const done = service.execute(execute);
    (await upstream.nth(0)).release({ messages: [upstreamOperation('up/8', false)] });
    await done;
    expect(leases.held.size).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(leases.held.size).toBe(0);
  });

  it('relays a name that is not ours unchanged', async () => {
    const { service, upstream } = setup();
    const wait = new FakeServerCall(
      WAIT_EXECUTION_PATH,
      waitRequest('operations/5b1bbd0a-2c57-4c41-9a34-7d5e9f1a3c11'),
    );
    const done = service.waitExecution(wait);
    const relay = await upstream.nth(0);
    expect(relay.path).toBe(WAIT_EXECUTION_PATH);
    expect(relay.frame.equals(wait.frame)).toBe(true);
    relay.release({ messages: [], code: Code.NOT_FOUND });
    await done;
    expect(wait.status?.code).toBe(Code.NOT_FOUND);
  });

  it('answers NOT_FOUND for a name of ours it does not know', async () => {
    const { service, upstream } = setup();
    const wait = new FakeServerCall(
      WAIT_EXECUTION_PATH,
      waitRequest('main/operations/nix-reapi-proxy/5b1bbd0a-2c57-4c41-9a34-7d5e9f1a3c11'),
    );
    await service.waitExecution(wait);
    expect(wait.status?.code).toBe(Code.NOT_FOUND);
    expect(wait.status?.message).toContain('call Execute again');
    expect(upstream.relays).toHaveLength(0);
  });

  it('drops a preparation no call follows any more, and then answers NOT_FOUND', async () => {
    const { service, ensurer } = setup({ detachGraceMs: 20 });
    const execute = new FakeServerCall(EXECUTE_PATH, putAction('abandoned').request);
    const done = service.execute(execute);
    const ensure = await ensurer.nth(0);
    execute.cancel();
    await done;
    await new Promise<void>((resolve) => ensure.signal.addEventListener('abort', () => resolve(), { once: true }));
    const wait = new FakeServerCall(WAIT_EXECUTION_PATH, waitRequest(execute.operations()[0]!.name));
    await service.waitExecution(wait);
    expect(wait.status?.code).toBe(Code.NOT_FOUND);
  });
});
