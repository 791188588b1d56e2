import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FakeUpstream,
  MSG,
  PATHS,
  decode,
  encode,
  sha256Digest,
  statusDetails,
  syntheticChunks,
  type Digest,
  type RecordedCall,
  type StartedFake,
} from '../support/fake-upstream';

// The fake upstream tested directly with a plain grpc-js client, so its own
// bugs never pass for proxy bugs in the integration tests that use it.

const identity = (b: Buffer) => b;
const MiB = 1024 * 1024;

interface Answer {
  messages: Buffer[];
  code: number;
  details: string;
  headers: grpc.Metadata | undefined;
  trailers: grpc.Metadata;
}

function unary(client: grpc.Client, path: string, request: Buffer, metadata = new grpc.Metadata()): Promise<Answer> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const messages: Buffer[] = [];
    const call = client.makeUnaryRequest(path, identity, identity, request, metadata, (_err, value) => {
      if (value) messages.push(value);
    });
    call.on('metadata', (md) => (headers = md));
    call.on('status', (s) =>
      setImmediate(() => resolve({ messages, code: s.code, details: s.details, headers, trailers: s.metadata })),
    );
  });
}

function serverStream(
  client: grpc.Client,
  path: string,
  request: Buffer,
  options: { metadata?: grpc.Metadata; onCall?: (call: grpc.ClientReadableStream<Buffer>) => void } = {},
): Promise<Answer> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const messages: Buffer[] = [];
    const call = client.makeServerStreamRequest(
      path,
      identity,
      identity,
      request,
      options.metadata ?? new grpc.Metadata(),
    );
    call.on('metadata', (md) => (headers = md));
    call.on('data', (m: Buffer) => messages.push(m));
    call.on('error', () => undefined);
    call.on('status', (s) => resolve({ messages, code: s.code, details: s.details, headers, trailers: s.metadata }));
    options.onCall?.(call);
  });
}

/** Streams a ByteStream Write of `chunks`, honouring write() backpressure. */
async function writeBlob(
  client: grpc.Client,
  resourceName: string,
  chunks: Iterable<Buffer>,
  options: { finish?: boolean; startOffset?: number } = {},
): Promise<Answer> {
  let resolveAnswer!: (a: Answer) => void;
  const answer = new Promise<Answer>((resolve) => (resolveAnswer = resolve));
  const messages: Buffer[] = [];
  const call = client.makeClientStreamRequest(
    path(PATHS.Write),
    identity,
    identity,
    new grpc.Metadata(),
    (_err, value) => {
      if (value) messages.push(value);
    },
  );
  call.on('status', (s) =>
    setImmediate(() =>
      resolveAnswer({ messages, code: s.code, details: s.details, headers: undefined, trailers: s.metadata }),
    ),
  );
  let answered = false;
  void answer.then(() => (answered = true));
  let offset = options.startOffset ?? 0;
  // One chunk of lookahead tells which is last; chunks are produced as they are sent, never all at once.
  const iterator = chunks[Symbol.iterator]();
  let next = iterator.next();
  // Stops sending once the server has answered (an early error), as a real client does.
  for (let first = true; !next.done && !answered; first = false) {
    const data = next.value;
    next = iterator.next();
    const message = encode(MSG.WriteRequest, {
      resourceName: first ? resourceName : '',
      writeOffset: offset,
      data,
      finishWrite: Boolean(next.done) && options.finish !== false,
    });
    offset += data.length;
    if (!call.write(message)) await Promise.race([once(call, 'drain'), answer]);
  }
  call.end();
  return answer;
}

const path = (p: string) => p;
const readRequest = (resourceName: string, readOffset = 0, readLimit = 0) =>
  encode(MSG.ReadRequest, { resourceName, readOffset, readLimit });
const blobName = (d: Digest, instance = '') => `${instance ? `${instance}/` : ''}blobs/${d.hash}/${d.sizeBytes}`;
const uploadName = (d: Digest, instance = '') =>
  `${instance ? `${instance}/` : ''}uploads/${randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;
// Deep equality of big Buffers is slow in expect(); their hashes compare at once.
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const dataOf = (messages: Buffer[]) => Buffer.concat(messages.map((m) => decode(MSG.ReadResponse, m).data as Buffer));

let fake: FakeUpstream;
let started: StartedFake;
let client: grpc.Client;

beforeAll(async () => {
  fake = new FakeUpstream({ sinkWrites: 32 * MiB });
  started = await fake.start();
  client = new grpc.Client(started.address, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await started?.stop();
});

describe('fake upstream: each service answers', () => {
  it('GetCapabilities looks like Bazel’s worker', async () => {
    const answer = await unary(
      client,
      PATHS.GetCapabilities,
      encode('build.bazel.remote.execution.v2.GetCapabilitiesRequest', {}),
    );
    expect(answer.code).toBe(grpc.status.OK);
    expect(decode(MSG.ServerCapabilities, answer.messages[0]!)).toMatchObject({
      cacheCapabilities: {
        digestFunctions: [1],
        actionCacheUpdateCapabilities: { updateEnabled: true },
        maxBatchTotalSizeBytes: 4 * MiB,
      },
      executionCapabilities: { digestFunction: 1, execEnabled: true },
      lowApiVersion: { major: 2 },
      highApiVersion: { major: 2, minor: 2 },
    });
  });

  it('BatchUpdateBlobs stores verified blobs, FindMissingBlobs and BatchReadBlobs see them', async () => {
    const good = Buffer.from(`good ${randomUUID()}`);
    const goodDigest = sha256Digest(good);
    const lying = { hash: sha256Digest(Buffer.from('other')).hash, sizeBytes: 3 };
    const update = await unary(
      client,
      PATHS.BatchUpdateBlobs,
      encode(MSG.BatchUpdateBlobsRequest, {
        instanceName: 'i',
        requests: [
          { digest: goodDigest, data: good },
          { digest: lying, data: Buffer.from('abc') },
        ],
      }),
    );
    expect(
      decode(MSG.BatchUpdateBlobsResponse, update.messages[0]!).responses.map(
        (r: { status: { code?: number } }) => r.status.code ?? 0,
      ),
    ).toEqual([0, grpc.status.INVALID_ARGUMENT]);

    const missing = await unary(
      client,
      PATHS.FindMissingBlobs,
      encode(MSG.FindMissingBlobsRequest, { instanceName: 'i', blobDigests: [goodDigest, lying] }),
    );
    expect(decode(MSG.FindMissingBlobsResponse, missing.messages[0]!).missingBlobDigests).toEqual([lying]);

    const read = await unary(
      client,
      PATHS.BatchReadBlobs,
      encode(MSG.BatchReadBlobsRequest, { instanceName: 'i', digests: [goodDigest, lying] }),
    );
    const responses = decode(MSG.BatchReadBlobsResponse, read.messages[0]!).responses;
    expect(responses[0].data).toEqual(good);
    expect(responses[1].status.code).toBe(grpc.status.NOT_FOUND);
  });

  it('keeps instance names apart by default, shares them when asked', async () => {
    const digest = fake.putBlob(`only in a ${randomUUID()}`, 'a/b');
    expect(fake.hasBlob(digest, 'a/b')).toBe(true);
    expect(fake.hasBlob(digest, 'c')).toBe(false);
    const shared = new FakeUpstream({ separateInstances: false });
    const d2 = shared.putBlob('x', 'a');
    expect(shared.hasBlob(d2, 'anything')).toBe(true);
  });

  it('ByteStream Write verifies the digest; Read honours offset and limit in 64 KiB chunks', async () => {
    const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => i % 251));
    const digest = sha256Digest(data);
    const chunks = [data.subarray(0, 70_000), data.subarray(70_000, 150_000), data.subarray(150_000)];
    const write = await writeBlob(client, uploadName(digest, 'x/y'), chunks);
    expect(write.code).toBe(grpc.status.OK);
    expect(decode(MSG.WriteResponse, write.messages[0]!).committedSize).toBe(200_000);
    expect(sha256(fake.getBlob(digest, 'x/y')!)).toBe(digest.hash);

    const whole = await serverStream(client, PATHS.Read, readRequest(blobName(digest, 'x/y')));
    expect(whole.messages).toHaveLength(4);
    expect(sha256(dataOf(whole.messages))).toBe(digest.hash);
    const part = await serverStream(client, PATHS.Read, readRequest(blobName(digest, 'x/y'), 1000, 70_000));
    expect(sha256(dataOf(part.messages))).toBe(sha256(data.subarray(1000, 71_000)));
    const past = await serverStream(client, PATHS.Read, readRequest(blobName(digest, 'x/y'), 200_001));
    expect(past.code).toBe(grpc.status.OUT_OF_RANGE);
    const absent = await serverStream(client, PATHS.Read, readRequest(blobName(sha256Digest(Buffer.from('absent')))));
    expect(absent.code).toBe(grpc.status.NOT_FOUND);

    const bad = await writeBlob(client, uploadName({ hash: digest.hash, sizeBytes: 3 }), [Buffer.from('abc')]);
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('a Write resumes at the committed offset; QueryWriteStatus reports progress', async () => {
    const data = Buffer.from(`resumable ${randomUUID()}`.repeat(100));
    const digest = sha256Digest(data);
    const name = uploadName(digest);
    const first = await writeBlob(client, name, [data.subarray(0, 1000)], { finish: false });
    expect(first.code).toBe(grpc.status.INVALID_ARGUMENT);
    const status = await unary(
      client,
      PATHS.QueryWriteStatus,
      encode(MSG.QueryWriteStatusRequest, { resourceName: name }),
    );
    expect(decode(MSG.QueryWriteStatusResponse, status.messages[0]!)).toMatchObject({
      committedSize: 1000,
      complete: false,
    });
    const rest = await writeBlob(client, name, [data.subarray(1000)], { startOffset: 1000 });
    expect(rest.code).toBe(grpc.status.OK);
    const done = await unary(
      client,
      PATHS.QueryWriteStatus,
      encode(MSG.QueryWriteStatusRequest, { resourceName: name }),
    );
    expect(decode(MSG.QueryWriteStatusResponse, done.messages[0]!)).toEqual({
      committedSize: data.length,
      complete: true,
    });
    expect(fake.getBlob(digest)).toEqual(data);
  });

  it('ActionCache round-trips the exact ActionResult bytes', async () => {
    const actionDigest = fake.putBlob(`action ${randomUUID()}`);
    const result = encode(MSG.ActionResult, { exitCode: 3, stdoutRaw: Buffer.from('out') });
    const miss = await unary(client, PATHS.GetActionResult, encode(MSG.GetActionResultRequest, { actionDigest }));
    expect(miss.code).toBe(grpc.status.NOT_FOUND);
    const update = await unary(
      client,
      PATHS.UpdateActionResult,
      encode(MSG.UpdateActionResultRequest, { actionDigest, actionResult: decode(MSG.ActionResult, result) }),
    );
    expect(update.messages[0]).toEqual(result);
    const hit = await unary(client, PATHS.GetActionResult, encode(MSG.GetActionResultRequest, { actionDigest }));
    expect(hit.messages[0]).toEqual(result);
  });

  it('GetTree streams every directory breadth first, in pages', async () => {
    const leaf = encode(MSG.Directory, { files: [{ name: 'f', digest: fake.putBlob('f') }] });
    const leafDigest = fake.putBlob(leaf);
    const mid = encode(MSG.Directory, { directories: [{ name: 'leaf', digest: leafDigest }] });
    const midDigest = fake.putBlob(mid);
    const other = encode(MSG.Directory, { symlinks: [{ name: 's', target: '/nix/store/x' }] });
    const root = encode(MSG.Directory, {
      directories: [
        { name: 'mid', digest: midDigest },
        { name: 'other', digest: fake.putBlob(other) },
      ],
    });
    const rootDigest = fake.putBlob(root);
    const answer = await serverStream(client, PATHS.GetTree, encode(MSG.GetTreeRequest, { rootDigest, pageSize: 2 }));
    expect(answer.code).toBe(grpc.status.OK);
    const pages = answer.messages.map((m) => decode('build.bazel.remote.execution.v2.GetTreeResponse', m));
    expect(pages.map((p) => p.nextPageToken ?? '')).toEqual(['2', '']);
    const directories = pages.flatMap((p) => p.directories).map((d) => encode(MSG.Directory, d));
    expect(directories).toEqual([root, mid, other, leaf]);
    const resumed = await serverStream(
      client,
      PATHS.GetTree,
      encode(MSG.GetTreeRequest, { rootDigest, pageSize: 2, pageToken: '2' }),
    );
    expect(resumed.messages).toHaveLength(1);
  });

  it('Execute sends EXECUTING then a done Operation; WaitExecution and Operations know the name', async () => {
    const actionDigest = fake.putBlob(`action ${randomUUID()}`, 'inst/a');
    const answer = await serverStream(
      client,
      PATHS.Execute,
      encode(MSG.ExecuteRequest, { instanceName: 'inst/a', actionDigest }),
    );
    expect(answer.code).toBe(grpc.status.OK);
    const [first, last] = answer.messages.map((m) => decode(MSG.Operation, m));
    expect(first!.name).toMatch(/^inst\/a\/operations\/[0-9a-f-]{36}$/);
    expect(first!.done ?? false).toBe(false);
    expect(decode(MSG.ExecuteOperationMetadata, first!.metadata.value)).toEqual({ stage: 3, actionDigest });
    expect(last).toMatchObject({ name: first!.name, done: true });
    const response = decode(MSG.ExecuteResponse, last!.response.value);
    expect(response.result.exitCode ?? 0).toBe(0);
    expect(response.result.executionMetadata.worker).toBe('fake-upstream');

    const waited = await serverStream(
      client,
      PATHS.WaitExecution,
      encode(MSG.WaitExecutionRequest, { name: first!.name }),
    );
    expect(waited.messages).toEqual([answer.messages[1]]);
    const unknown = await serverStream(
      client,
      PATHS.WaitExecution,
      encode(MSG.WaitExecutionRequest, { name: 'inst/a/operations/nope' }),
    );
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);

    const got = await unary(client, PATHS.GetOperation, encode(MSG.GetOperationRequest, { name: first!.name }));
    expect(got.messages[0]).toEqual(answer.messages[1]);
    const waitedOp = await unary(client, PATHS.WaitOperation, encode(MSG.WaitOperationRequest, { name: first!.name }));
    expect(waitedOp.messages[0]).toEqual(answer.messages[1]);
    const listed = await unary(client, PATHS.ListOperations, encode(MSG.ListOperationsRequest, { name: 'inst/a' }));
    expect(
      decode(MSG.ListOperationsResponse, listed.messages[0]!).operations.map((o: { name: string }) => o.name),
    ).toContain(first!.name);
    expect(
      (await unary(client, PATHS.CancelOperation, encode(MSG.CancelOperationRequest, { name: first!.name }))).code,
    ).toBe(0);
    expect(
      (await unary(client, PATHS.DeleteOperation, encode(MSG.DeleteOperationRequest, { name: first!.name }))).code,
    ).toBe(0);
    expect((await unary(client, PATHS.GetOperation, encode(MSG.GetOperationRequest, { name: first!.name }))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });

  it('Remote Asset Push then Fetch returns the pushed digests', async () => {
    const blob = fake.putBlob('asset');
    const uri = `https://example.com/${randomUUID()}`;
    expect((await unary(client, PATHS.FetchBlob, encode(MSG.FetchBlobRequest, { uris: [uri] }))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect(
      (await unary(client, PATHS.PushBlob, encode(MSG.PushBlobRequest, { uris: [uri], blobDigest: blob }))).code,
    ).toBe(0);
    const fetched = await unary(
      client,
      PATHS.FetchBlob,
      encode(MSG.FetchBlobRequest, { uris: ['https://elsewhere', uri] }),
    );
    expect(decode(MSG.FetchBlobResponse, fetched.messages[0]!)).toMatchObject({ uri, blobDigest: blob, status: {} });
    expect(
      (
        await unary(
          client,
          PATHS.PushDirectory,
          encode(MSG.PushDirectoryRequest, { uris: [uri], rootDirectoryDigest: blob }),
        )
      ).code,
    ).toBe(0);
    const dir = await unary(client, PATHS.FetchDirectory, encode(MSG.FetchDirectoryRequest, { uris: [uri] }));
    expect(decode(MSG.FetchDirectoryResponse, dir.messages[0]!).rootDirectoryDigest).toEqual(blob);
  });
});

describe('fake upstream: recording', () => {
  it('keeps every metadata entry (binary ones as raw bytes) and the exact request bytes', async () => {
    const md = new grpc.Metadata();
    const binary = Buffer.from([0, 1, 2, 250, 255]);
    md.set('build.bazel.remote.execution.v2.requestmetadata-bin', binary);
    md.set('authorization', 'Bearer t0ken');
    md.add('x-multi', 'a');
    md.add('x-multi', 'b');
    const tag = `rec-${randomUUID()}`;
    const request = encode(MSG.FindMissingBlobsRequest, { instanceName: tag });
    const seen = fake.waitForCall(PATHS.FindMissingBlobs, (c) => c.requests[0]?.equals(request) ?? false);
    await unary(client, PATHS.FindMissingBlobs, request, md);
    const call = await seen;
    expect(call.metadata.get('build.bazel.remote.execution.v2.requestmetadata-bin')).toEqual([binary]);
    expect(call.metadata.get('authorization')).toEqual(['Bearer t0ken']);
    // HTTP/2 joins repeated text headers; grpc-js hands them over as one value.
    expect(call.metadata.get('x-multi')).toEqual(['a, b']);
    expect(call.requests).toEqual([request]);
    await call.ended;
    expect(call).toMatchObject({ outcome: 'status', status: { code: 0 }, cancelled: false, responseCount: 1 });
  });

  it('records a client cancel of a hanging call', async () => {
    const tag = `hang-${randomUUID()}`;
    fake.script(PATHS.GetTree, { then: 'hang' }, 1);
    const answer = serverStream(client, PATHS.GetTree, encode(MSG.GetTreeRequest, { instanceName: tag }), {
      onCall: (call) =>
        void fake.waitForCall(PATHS.GetTree, (c) => c.requests[0]!.includes(tag)).then(() => call.cancel()),
    });
    expect((await answer).code).toBe(grpc.status.CANCELLED);
    const call = await fake.waitForCall(PATHS.GetTree, (c) => c.requests[0]!.includes(tag));
    await call.ended;
    expect(call).toMatchObject({ cancelled: true, outcome: 'cancelled', responseCount: 0 });
  });
});

describe('fake upstream: scripts', () => {
  const capsRequest = encode('build.bazel.remote.execution.v2.GetCapabilitiesRequest', { instanceName: 'scripted' });

  it('unary: status, message, details, headers and trailers reach the client; defaults return after `times`', async () => {
    const details = statusDetails(grpc.status.FAILED_PRECONDITION, 'missing', []);
    fake.script(
      PATHS.GetCapabilities,
      {
        headers: { 'x-head': 'h', 'x-head-bin': Buffer.from([9, 9]) },
        status: { code: grpc.status.FAILED_PRECONDITION, message: 'nope: ünïcode %', details },
        trailers: { 'x-trail': ['t1', 't2'] },
      },
      1,
    );
    const failed = await unary(client, PATHS.GetCapabilities, capsRequest);
    expect(failed).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: 'nope: ünïcode %', messages: [] });
    expect(failed.headers!.get('x-head')).toEqual(['h']);
    expect(failed.headers!.get('x-head-bin')).toEqual([Buffer.from([9, 9])]);
    // HTTP/2 joins repeated text headers; grpc-js hands them over as one value.
    expect(failed.trailers.get('x-trail')).toEqual(['t1, t2']);
    expect(failed.trailers.get('grpc-status-details-bin')).toEqual([details]);
    expect((await unary(client, PATHS.GetCapabilities, capsRequest)).code).toBe(grpc.status.OK);
  });

  it('unary: scripted response bytes and OK trailers', async () => {
    const body = Buffer.from([1, 2, 3]);
    fake.script(PATHS.GetCapabilities, { responses: [body], trailers: { 'x-t': 'v' }, delayMs: 1 }, 1);
    const answer = await unary(client, PATHS.GetCapabilities, capsRequest);
    expect(answer).toMatchObject({ code: 0, messages: [body] });
    expect(answer.trailers.get('x-t')).toEqual(['v']);
  });

  it('streams: N default messages, then the scripted status', async () => {
    const digest = fake.addSyntheticBlob(10 * 64 * 1024, { seed: 7 });
    fake.script(PATHS.Read, { messages: 3, status: { code: grpc.status.UNAVAILABLE, message: 'worker lost' } }, 1);
    const answer = await serverStream(client, PATHS.Read, readRequest(blobName(digest)));
    expect(answer).toMatchObject({ code: grpc.status.UNAVAILABLE, details: 'worker lost' });
    expect(answer.messages).toHaveLength(3);
  });

  it.each([
    ['reset', grpc.status.INTERNAL, 'reset'],
    ['destroy', grpc.status.UNAVAILABLE, 'destroyed'],
  ] as const)('streams: N messages, then %s', async (then, code, outcome) => {
    const local = new grpc.Client(started.address, grpc.credentials.createInsecure());
    try {
      const digest = fake.addSyntheticBlob(10 * 64 * 1024, { seed: 8 });
      fake.script(PATHS.Read, { messages: 2, then }, 1);
      const answer = await serverStream(local, PATHS.Read, readRequest(blobName(digest)));
      expect(answer.code).toBe(code);
      expect(answer.messages).toHaveLength(2);
      const call = fake.calls(PATHS.Read).at(-1)!;
      await call.ended;
      expect(call).toMatchObject({ outcome, cancelled: false });
    } finally {
      local.close();
    }
  });

  it('client streams: an early error reaches the client while it is still sending', async () => {
    fake.script(
      PATHS.Write,
      { status: { code: grpc.status.RESOURCE_EXHAUSTED, message: 'quota' }, answerEarly: true },
      1,
    );
    const digest = fake.addSyntheticBlob(4 * MiB, { seed: 9 });
    const answer = await writeBlob(client, uploadName(digest), syntheticChunks(9, digest.sizeBytes));
    expect(answer).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'quota' });
  });

  it('hang, then the client deadline', async () => {
    fake.script(PATHS.Execute, { messages: 1, then: 'hang' }, 1);
    const md = new grpc.Metadata();
    const answer = await new Promise<Answer>((resolve) => {
      const messages: Buffer[] = [];
      const call = client.makeServerStreamRequest(
        PATHS.Execute,
        identity,
        identity,
        encode(MSG.ExecuteRequest, {}),
        md,
        { deadline: Date.now() + 300 },
      );
      call.on('data', (m: Buffer) => messages.push(m));
      call.on('error', () => undefined);
      call.on('status', (s) =>
        resolve({ messages, code: s.code, details: s.details, headers: undefined, trailers: s.metadata }),
      );
    });
    expect(answer.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(answer.messages).toHaveLength(1);
    const call = fake.calls(PATHS.Execute).at(-1)!;
    await call.ended;
    expect(call.outcome).toBe('cancelled');
  });
});

describe('fake upstream: huge blobs without holding them', () => {
  const size = 256 * MiB;

  it('streams a synthetic blob whose bytes hash to its digest, respecting backpressure', async () => {
    const digest = fake.addSyntheticBlob(size, { seed: 1 });
    const hash = createHash('sha256');
    let received = 0;
    let messages = 0;
    let maxLead = 0;
    const tag = randomUUID();
    const metadata = new grpc.Metadata();
    metadata.set('x-tag', tag);
    let record: RecordedCall | undefined;
    void fake.waitForCall(PATHS.Read, (c) => c.metadata.get('x-tag')[0] === tag).then((r) => (record = r));
    const answer = await serverStream(client, PATHS.Read, readRequest(blobName(digest)), {
      metadata,
      onCall: (call) =>
        call.on('data', (m: Buffer) => {
          const data = decode(MSG.ReadResponse, m).data as Buffer;
          hash.update(data);
          received += data.length;
          messages += 1;
          if (record) maxLead = Math.max(maxLead, record.responseCount - messages);
        }),
    });
    expect(answer.code).toBe(grpc.status.OK);
    expect(received).toBe(size);
    expect(messages).toBe(size / (64 * 1024));
    expect(hash.digest('hex')).toBe(digest.hash);
    // The fake may only run ahead of the client by what buffers and HTTP/2 windows hold.
    expect(maxLead).toBeLessThan(256);
  });

  it('sinks a huge write: verified, counted, not stored; a synthetic digest stays readable', async () => {
    const digest = fake.addSyntheticBlob(size, { seed: 2 });
    const other = new FakeUpstream({ sinkWrites: true });
    const otherStarted = await other.start();
    const otherClient = new grpc.Client(otherStarted.address, grpc.credentials.createInsecure());
    try {
      const name = uploadName(digest, 'big');
      const answer = await writeBlob(otherClient, name, syntheticChunks(2, size, 256 * 1024));
      expect(answer.code).toBe(grpc.status.OK);
      expect(other.writes()).toEqual([{ resourceName: name, instanceName: 'big', digest, sunk: true }]);
      const call = other.calls(PATHS.Write)[0]!;
      expect(call.requestBytes).toBeGreaterThan(size);
      expect(call.requests.length).toBeLessThan(call.requestCount);
      expect(other.hasBlob(digest, 'big')).toBe(true);
      const first = await serverStream(otherClient, PATHS.Read, readRequest(blobName(digest, 'big'), size - 10));
      expect(dataOf(first.messages)).toHaveLength(10);

      const plain = Buffer.from(`plain ${randomUUID()}`);
      const plainDigest = sha256Digest(plain);
      expect((await writeBlob(otherClient, uploadName(plainDigest), [plain])).code).toBe(0);
      expect(other.hasBlob(plainDigest)).toBe(true);
      expect((await serverStream(otherClient, PATHS.Read, readRequest(blobName(plainDigest)))).code).toBe(
        grpc.status.NOT_FOUND,
      );
    } finally {
      otherClient.close();
      await other.stop();
    }
  });
});

describe('fake upstream: options', () => {
  it('capabilities and the Execute result are configurable', async () => {
    const custom = new FakeUpstream({
      capabilities: {
        cacheCapabilities: { digestFunctions: [1], maxBatchTotalSizeBytes: 2 * MiB },
        executionCapabilities: { execEnabled: false },
      },
      actionResult: (request) => ({ exitCode: 7, stdoutRaw: Buffer.from(String(request.instanceName)) }),
    });
    const s = await custom.start();
    const c = new grpc.Client(s.address, grpc.credentials.createInsecure());
    try {
      const caps = decode(
        MSG.ServerCapabilities,
        (await unary(c, PATHS.GetCapabilities, Buffer.alloc(0))).messages[0]!,
      );
      expect(caps.cacheCapabilities.maxBatchTotalSizeBytes).toBe(2 * MiB);
      expect(caps.executionCapabilities.execEnabled ?? false).toBe(false);
      const exec = await serverStream(c, PATHS.Execute, encode(MSG.ExecuteRequest, { instanceName: 'seven' }));
      const done = decode(MSG.Operation, exec.messages[1]!);
      expect(decode(MSG.ExecuteResponse, done.response.value).result).toMatchObject({
        exitCode: 7,
        stdoutRaw: Buffer.from('seven'),
      });
    } finally {
      c.close();
      await custom.stop();
    }
  });

  it('maxReceiveMessageBytes refuses bigger requests', async () => {
    const small = new FakeUpstream({ maxReceiveMessageBytes: 1024 });
    const s = await small.start();
    const c = new grpc.Client(s.address, grpc.credentials.createInsecure());
    try {
      const answer = await unary(
        c,
        PATHS.FindMissingBlobs,
        encode(MSG.FindMissingBlobsRequest, { instanceName: 'x'.repeat(2000) }),
      );
      expect(answer.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      c.close();
      await small.stop();
    }
  });
});
