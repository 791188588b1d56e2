import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CasReadContext } from '../../../src/execute/cas-reader';
import { DigestFunction, digestKey, type BlobDigest } from '../../../src/execute/digests';
import { GrpcCasReader } from '../../../src/execute/grpc-cas-reader';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { FakeUpstream, PATHS, decode, encode, sha256Digest } from '../../support/fake-upstream';
import { testLogger } from '../../support/test-logger';

const INSTANCE = 'main/linux';
const REQUEST_METADATA = Buffer.from([0x0a, 0x05, 0x62, 0x61, 0x7a, 0x65, 0x6c]);

let fake: FakeUpstream;
let stopFake: () => Promise<void>;
let address: string;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  fake = new FakeUpstream();
  const started = await fake.start();
  address = started.address;
  stopFake = started.stop;
});

afterAll(async () => {
  for (const c of clients) c.close();
  await stopFake();
});

afterEach(() => {
  fake.clearScripts();
  fake.clearCalls();
});

function reader(maxResponseBytes = 4 * 1024 * 1024): GrpcCasReader {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': maxResponseBytes + 64 * 1024,
  });
  clients.push(client);
  return new GrpcCasReader({ client, upstreamLabel: `grpc://${address}`, maxResponseBytes, logger: testLogger() });
}

function ctx(extra: Partial<CasReadContext> = {}): CasReadContext {
  return {
    instanceName: INSTANCE,
    requestedDigestFunction: 0,
    digestFunction: DigestFunction.SHA256,
    metadata: {
      authorization: 'Bearer secret',
      'build.bazel.remote.execution.v2.requestmetadata-bin': REQUEST_METADATA.toString('base64'),
      'grpc-timeout': '5S',
      'user-agent': 'bazel/4.2.3',
      'content-type': 'application/grpc',
    },
    signal: new AbortController().signal,
    deadline: Date.now() + 30_000,
    ...extra,
  };
}

async function failure(promise: Promise<unknown>): Promise<ProxyError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ProxyError);
    return err as ProxyError;
  }
  throw new Error('expected a failure');
}

describe('GrpcCasReader', () => {
  it("reads blobs with BatchReadBlobs under the client's instance, digest function and metadata", async () => {
    const a = fake.putBlob('alpha', INSTANCE);
    const b = fake.putBlob('beta', INSTANCE);
    const blobs = await reader().readBlobs(ctx({ requestedDigestFunction: DigestFunction.SHA256 }), [a, b, a]);
    expect(blobs.get(digestKey(a))?.toString()).toBe('alpha');
    expect(blobs.get(digestKey(b))?.toString()).toBe('beta');

    const calls = fake.calls(PATHS.BatchReadBlobs);
    expect(calls).toHaveLength(1);
    const request = decode('BatchReadBlobsRequest', calls[0]!.requests[0]!);
    expect(request.instanceName).toBe(INSTANCE);
    expect(request.digestFunction).toBe(DigestFunction.SHA256);
    expect(request.digests).toHaveLength(2);
    const md = calls[0]!.metadata;
    expect(md.get('authorization')).toEqual(['Bearer secret']);
    expect(md.get('build.bazel.remote.execution.v2.requestmetadata-bin')).toEqual([REQUEST_METADATA]);
    expect(md.get('user-agent').join()).not.toContain('bazel/4.2.3');
    expect(fake.calls(PATHS.Read)).toHaveLength(0);
  });

  it('answers the empty blob without asking the upstream', async () => {
    const empty = sha256Digest(Buffer.alloc(0));
    const blobs = await reader().readBlobs(ctx(), [empty]);
    expect(blobs.get(digestKey(empty))).toEqual(Buffer.alloc(0));
    expect(fake.calls()).toHaveLength(0);
  });

  it('splits batches under the response size and reads bigger blobs with ByteStream.Read', async () => {
    const small = Array.from({ length: 6 }, (_, i) => fake.putBlob(Buffer.alloc(1500, i + 1), INSTANCE));
    const big = fake.putBlob(Buffer.alloc(20_000, 0x42), INSTANCE);
    const r = reader(5000);
    const blobs = await r.readBlobs(ctx(), [...small, big]);
    expect(blobs.size).toBe(7);
    expect(blobs.get(digestKey(big))).toEqual(Buffer.alloc(20_000, 0x42));
    for (const call of fake.calls(PATHS.BatchReadBlobs)) expect(call.responseBytes).toBeLessThanOrEqual(5000);
    expect(fake.calls(PATHS.BatchReadBlobs).length).toBeGreaterThanOrEqual(2);
    const reads = fake.calls(PATHS.Read);
    expect(reads).toHaveLength(1);
    expect(decode('ReadRequest', reads[0]!.requests[0]!).resourceName).toBe(
      `${INSTANCE}/blobs/${big.hash}/${big.sizeBytes}`,
    );
  });

  it('falls back to ByteStream.Read when BatchReadBlobs is UNIMPLEMENTED, and remembers it', async () => {
    fake.script(PATHS.BatchReadBlobs, { status: { code: Code.UNIMPLEMENTED, message: 'no batch here' } });
    const a = fake.putBlob('alpha', INSTANCE);
    const b = fake.putBlob('beta', INSTANCE);
    const r = reader();
    const first = await r.readBlobs(ctx(), [a, b]);
    expect(first.get(digestKey(a))?.toString()).toBe('alpha');
    expect(fake.calls(PATHS.BatchReadBlobs)).toHaveLength(1);
    expect(fake.calls(PATHS.Read)).toHaveLength(2);
    const second = await r.readBlobs(ctx(), [a]);
    expect(second.get(digestKey(a))?.toString()).toBe('alpha');
    expect(fake.calls(PATHS.BatchReadBlobs)).toHaveLength(1);
    expect(fake.calls(PATHS.Read)).toHaveLength(3);
    expect(fake.calls(PATHS.Read)[0]!.metadata.get('authorization')).toEqual(['Bearer secret']);
  });

  it.each<[string, number]>([
    ['RESOURCE_EXHAUSTED', Code.RESOURCE_EXHAUSTED],
    ['INVALID_ARGUMENT', Code.INVALID_ARGUMENT],
  ])(
    'reads a batch the upstream refuses with %s through ByteStream.Read, without giving up on batches',
    async (_name, code) => {
      fake.script(PATHS.BatchReadBlobs, { status: { code, message: 'batch too large for me' } }, 1);
      const a = fake.putBlob('alpha', INSTANCE);
      const r = reader();
      expect((await r.readBlobs(ctx(), [a])).get(digestKey(a))?.toString()).toBe('alpha');
      expect(fake.calls(PATHS.Read)).toHaveLength(1);
      await r.readBlobs(ctx(), [a]);
      expect(fake.calls(PATHS.BatchReadBlobs)).toHaveLength(2);
      expect(fake.calls(PATHS.Read)).toHaveLength(1);
    },
  );

  it.each<[string, boolean]>([
    ['BatchReadBlobs', true],
    ['ByteStream.Read', false],
  ])('reports blobs missing via %s as FAILED_PRECONDITION with MISSING violations', async (_name, batch) => {
    if (!batch) fake.script(PATHS.BatchReadBlobs, { status: { code: Code.UNIMPLEMENTED } });
    const present = fake.putBlob('present', INSTANCE);
    const absent1 = sha256Digest(Buffer.from('absent one'));
    const absent2 = sha256Digest(Buffer.from('absent two'));
    const err = await failure(reader().readBlobs(ctx(), [present, absent1, absent2]));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.violations.map((v) => [v.type, v.subject]).sort()).toEqual(
      [
        ['MISSING', `blobs/${absent1.hash}/${absent1.sizeBytes}`],
        ['MISSING', `blobs/${absent2.hash}/${absent2.sizeBytes}`],
      ].sort(),
    );
  });

  it('refuses content that does not match its digest with DATA_LOSS', async () => {
    const wanted = sha256Digest(Buffer.from('the real content'));
    fake.script(PATHS.BatchReadBlobs, {
      responses: [
        encode('BatchReadBlobsResponse', {
          responses: [{ digest: wanted, data: Buffer.from('the fake content'), status: { code: 0 } }],
        }),
      ],
    });
    const err = await failure(reader().readBlobs(ctx(), [wanted]));
    expect(err.code).toBe(Code.DATA_LOSS);
    expect(err.message).toContain(wanted.hash);
  });

  it('refuses a ByteStream.Read that runs past the blob size with DATA_LOSS', async () => {
    const wanted = sha256Digest(Buffer.from('short'));
    fake.script(PATHS.BatchReadBlobs, { status: { code: Code.UNIMPLEMENTED } });
    fake.script(PATHS.Read, {
      responses: [Buffer.from(T.ReadResponse.encode({ data: Buffer.from('much longer than expected') }).finish())],
    });
    const err = await failure(reader().readBlobs(ctx(), [wanted]));
    expect(err.code).toBe(Code.DATA_LOSS);
  });

  it.each<[string, number, number]>([
    ['UNAVAILABLE', Code.UNAVAILABLE, Code.UNAVAILABLE],
    ['PERMISSION_DENIED', Code.PERMISSION_DENIED, Code.PERMISSION_DENIED],
    ['UNAUTHENTICATED', Code.UNAUTHENTICATED, Code.UNAUTHENTICATED],
    ['INTERNAL becomes UNAVAILABLE', Code.INTERNAL, Code.UNAVAILABLE],
  ])('passes on an upstream %s', async (_name, upstreamCode, expected) => {
    fake.script(PATHS.BatchReadBlobs, { status: { code: upstreamCode, message: 'upstream says no' } });
    const a = fake.putBlob('alpha', INSTANCE);
    const err = await failure(reader().readBlobs(ctx(), [a]));
    expect(err.code).toBe(expected);
    expect(err.message).toContain('upstream says no');
    expect(err.message).toContain(address);
  });

  it('cancels the upstream call when the signal aborts, with the abort reason', async () => {
    fake.script(PATHS.BatchReadBlobs, { then: 'hang' });
    const a = fake.putBlob('alpha', INSTANCE);
    const controller = new AbortController();
    const reading = reader().readBlobs(ctx({ signal: controller.signal }), [a]);
    const call = await fake.waitForCall(PATHS.BatchReadBlobs);
    const reason = new ProxyError(Code.DEADLINE_EXCEEDED, 'PREPARE_TIMEOUT', 'too slow');
    controller.abort(reason);
    expect(await failure(reading)).toBe(reason);
    await call.ended;
    expect(call.cancelled).toBe(true);
  });

  it('names the digest function in ByteStream resource names for BLAKE3', async () => {
    fake.script(PATHS.BatchReadBlobs, { status: { code: Code.UNIMPLEMENTED } });
    const d: BlobDigest = { hash: 'ab'.repeat(32), sizeBytes: 3 };
    await failure(
      reader().readBlobs(
        ctx({ digestFunction: DigestFunction.BLAKE3, requestedDigestFunction: DigestFunction.BLAKE3 }),
        [d],
      ),
    );
    const read = fake.calls(PATHS.Read)[0]!;
    expect(decode('ReadRequest', read.requests[0]!).resourceName).toBe(`${INSTANCE}/blobs/blake3/${d.hash}/3`);
  });
});
