import { randomUUID } from 'node:crypto';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../../src/main';
import { Code } from '../../../src/reapi/grpc-status';
import { FakeUpstream, MSG, PATHS, decode, encode, type StartedFake } from '../../support/fake-upstream';
import { topLevelFields, unknownFields } from './proto-bytes';
import { startPassthroughProxy } from './proxy-rig';
import { clientStream, newClient, unary } from './raw-calls';

/**
 * The two places the proxy looks into messages on the generic path: it clamps
 * the advertised batch size to what it accepts itself (and nothing else in
 * GetCapabilities changes), and it refuses request messages over its limit.
 */

const LIMIT = 1024 * 1024;
const CACHE_CAPABILITIES = 1;
const MAX_BATCH = 4;

let fake: FakeUpstream;
let started: StartedFake;
let proxy: RunningProxy;
let client: grpc.Client;

beforeAll(async () => {
  fake = new FakeUpstream();
  started = await fake.start();
  proxy = await startPassthroughProxy(started.url, { maxMessageBytes: LIMIT });
  client = newClient(proxy.endpoint);
});

afterEach(() => fake.clearScripts());

afterAll(async () => {
  client?.close();
  await proxy?.close(100);
  await started?.stop();
});

function field(number: number, wireType: number, write: (w: protobuf.Writer) => void): Buffer {
  const w = protobuf.Writer.create().uint32((number << 3) | wireType);
  write(w);
  return Buffer.from(w.finish());
}

/**
 * A ServerCapabilities as a newer server might send it, written field by field
 * so it can hold what an encoder would not produce: an explicit zero, unknown
 * fields inside CacheCapabilities and at the top level, fields in any order.
 */
function capabilitiesBytes(maxBatch: number | 'absent'): Buffer {
  const cache = Buffer.concat([
    field(1, 2, (w) => w.bytes(Buffer.from([1, 8]))), // digest_functions: SHA256, BLAKE3 (packed)
    field(2, 2, (w) => w.bytes(field(1, 0, (x) => x.bool(true)))), // action_cache_update_capabilities.update_enabled
    ...(maxBatch === 'absent' ? [] : [field(MAX_BATCH, 0, (w) => w.uint64(maxBatch))]),
    unknownFields('inside cache capabilities'),
    field(5, 0, (w) => w.uint32(1)), // symlink_absolute_path_strategy
  ]);
  const execution = encode(MSG.ServerCapabilities, { executionCapabilities: { digestFunction: 1, execEnabled: true } });
  return Buffer.concat([
    field(CACHE_CAPABILITIES, 2, (w) => w.bytes(cache)),
    execution,
    unknownFields('top level'),
    encode(MSG.ServerCapabilities, { lowApiVersion: { major: 2 }, highApiVersion: { major: 2, minor: 3 } }),
  ]);
}

/** The message with max_batch_total_size_bytes taken out of cache_capabilities; every other byte kept in order. */
function withoutMaxBatch(message: Buffer): Buffer {
  return Buffer.concat(
    topLevelFields(message).map((f) => {
      if (f.field !== CACHE_CAPABILITIES || f.wireType !== 2) return f.raw;
      const inner = Buffer.concat(
        topLevelFields(f.value)
          .filter((g) => g.field !== MAX_BATCH)
          .map((g) => g.raw),
      );
      return field(CACHE_CAPABILITIES, 2, (w) => w.bytes(inner));
    }),
  );
}

function maxBatchOf(message: Buffer): number {
  return Number(decode(MSG.ServerCapabilities, message).cacheCapabilities?.maxBatchTotalSizeBytes ?? 0);
}

async function capabilitiesThroughProxy(upstreamBytes: Buffer): Promise<Buffer> {
  fake.script(PATHS.GetCapabilities, { responses: [upstreamBytes] }, 1);
  const answer = await unary(
    client,
    PATHS.GetCapabilities,
    encode(MSG.GetCapabilitiesRequest, { instanceName: 'main' }),
  );
  expect(answer.code).toBe(Code.OK);
  expect(answer.messages).toHaveLength(1);
  return answer.messages[0]!;
}

describe('GetCapabilities: max_batch_total_size_bytes is clamped, nothing else changes', () => {
  it.each([
    ['larger than the proxy accepts', 64 * 1024 * 1024],
    ['0 (unlimited)', 0],
    ['absent (unlimited)', 'absent'],
    ['one byte over the limit', LIMIT + 1],
  ] as const)('upstream advertises %s: the client sees the proxy’s limit', async (_label, upstreamMax) => {
    const upstream = capabilitiesBytes(upstreamMax);
    const seen = await capabilitiesThroughProxy(upstream);
    expect(maxBatchOf(seen)).toBe(LIMIT);
    expect(withoutMaxBatch(seen)).toEqual(withoutMaxBatch(upstream));
  });

  it.each([
    ['smaller than the limit', 512 * 1024],
    ['equal to the limit', LIMIT],
  ])('upstream advertises %s: the bytes arrive exactly as sent', async (_label, upstreamMax) => {
    const upstream = capabilitiesBytes(upstreamMax);
    expect(await capabilitiesThroughProxy(upstream)).toEqual(upstream);
  });

  it('a server without cache capabilities is left alone', async () => {
    const upstream = Buffer.concat([
      encode(MSG.ServerCapabilities, { executionCapabilities: { digestFunction: 1, execEnabled: true } }),
      unknownFields('no cache'),
    ]);
    expect(await capabilitiesThroughProxy(upstream)).toEqual(upstream);
  });

  it('the upstream’s real answer (4 MiB) is clamped to the proxy’s 1 MiB', async () => {
    const answer = await unary(
      client,
      PATHS.GetCapabilities,
      encode(MSG.GetCapabilitiesRequest, { instanceName: 'main' }),
    );
    expect(answer.code).toBe(Code.OK);
    const caps = decode(MSG.ServerCapabilities, answer.messages[0]!);
    expect(caps.cacheCapabilities.maxBatchTotalSizeBytes).toBe(LIMIT);
    expect(caps.cacheCapabilities.digestFunctions).toEqual([1]);
    expect(caps.executionCapabilities).toMatchObject({ digestFunction: 1, execEnabled: true });
  });

  it('an error from GetCapabilities passes unchanged', async () => {
    fake.script(
      PATHS.GetCapabilities,
      { status: { code: Code.PERMISSION_DENIED, message: 'instance main is not yours' } },
      1,
    );
    const answer = await unary(
      client,
      PATHS.GetCapabilities,
      encode(MSG.GetCapabilitiesRequest, { instanceName: 'main' }),
    );
    expect(answer).toMatchObject({ code: Code.PERMISSION_DENIED, details: 'instance main is not yours', messages: [] });
  });
});

describe('request messages over maxMessageBytes', () => {
  const tagged = (tag: string) => {
    const md = new grpc.Metadata();
    md.set('x-test-tag', tag);
    return md;
  };

  it('a message of exactly the limit passes', async () => {
    const tag = randomUUID();
    fake.script(PATHS.BatchUpdateBlobs, { responses: [Buffer.from('accepted')] }, 1);
    const answer = await unary(client, PATHS.BatchUpdateBlobs, Buffer.alloc(LIMIT, 1), { metadata: tagged(tag) });
    expect(answer.code).toBe(Code.OK);
    const seen = await fake.waitForCall(PATHS.BatchUpdateBlobs, (c) => c.metadata.get('x-test-tag')[0] === tag);
    expect(seen.requestBytes).toBe(LIMIT);
  });

  it('a unary request one byte over gets RESOURCE_EXHAUSTED naming the limit; the upstream never gets the message', async () => {
    const tag = randomUUID();
    const answer = await unary(client, PATHS.BatchUpdateBlobs, Buffer.alloc(LIMIT + 1, 1), { metadata: tagged(tag) });
    expect(answer.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(answer.details).toContain(String(LIMIT));
    expect(answer.details).toContain(String(LIMIT + 1));
    const reached = fake.calls(PATHS.BatchUpdateBlobs).filter((c) => c.metadata.get('x-test-tag')[0] === tag);
    expect(reached.every((c) => c.requestCount === 0)).toBe(true);
  });

  it('a big message in the middle of a Write stream ends the call with RESOURCE_EXHAUSTED; the upstream never gets it', async () => {
    const tag = randomUUID();
    const seen = fake.waitForCall(PATHS.Write, (c) => c.metadata.get('x-test-tag')[0] === tag);
    const resourceName = `main/uploads/${randomUUID()}/blobs/${'ab'.repeat(32)}/${3 * LIMIT}`;
    const small = encode(MSG.WriteRequest, { resourceName, data: Buffer.alloc(1000) });
    const answer = await clientStream(client, PATHS.Write, [small, Buffer.alloc(LIMIT + 100, 2), Buffer.alloc(10)], {
      metadata: tagged(tag),
    });
    expect(answer.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(answer.details).toContain(String(LIMIT));
    const call = await seen;
    await call.ended;
    expect(call.requestCount).toBe(1);
    expect(call.status?.code).not.toBe(Code.OK);
    expect(fake.writes().some((w) => w.resourceName === resourceName)).toBe(false);
  });

  it('the upstream stream of a refused Write is reset with CANCEL, not half-closed as if the upload were complete', async () => {
    const server = http2.createServer();
    const events: string[] = [];
    const closed = new Promise<void>((resolve) =>
      server.on('stream', (stream) => {
        stream.on('data', () => undefined);
        stream.on('end', () => events.push('end'));
        stream.on('close', () => {
          events.push(`close rst=${stream.rstCode}`);
          resolve();
        });
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const local = await startPassthroughProxy(`grpc://127.0.0.1:${(server.address() as AddressInfo).port}`, {
      maxMessageBytes: LIMIT,
    });
    const localClient = newClient(local.endpoint);
    try {
      const answer = await clientStream(localClient, PATHS.Write, [
        Buffer.alloc(1000),
        Buffer.alloc(LIMIT + 100),
        Buffer.alloc(10),
      ]);
      expect(answer.code).toBe(Code.RESOURCE_EXHAUSTED);
      await closed;
      expect(events.at(-1)).toBe(`close rst=${http2.constants.NGHTTP2_CANCEL}`);
    } finally {
      localClient.close();
      await local.close(100);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('the proxy keeps serving afterwards', async () => {
    const answer = await unary(
      client,
      PATHS.FindMissingBlobs,
      encode(MSG.FindMissingBlobsRequest, { instanceName: 'main' }),
    );
    expect(answer.code).toBe(Code.OK);
  });
});
