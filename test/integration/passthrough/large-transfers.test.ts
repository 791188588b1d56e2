import { createHash, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../src/reapi/grpc-status';
import {
  FakeUpstream,
  MSG,
  PATHS,
  decode,
  encode,
  syntheticBytes,
  type Digest,
  type StartedFake,
} from '../../support/fake-upstream';
import { frontMode, startFront, type FrontProcess } from '../../support/front-process';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';
import { MiB, RssSampler, memoryBytes } from './process-memory';
import { clientStream, newClient, serverStream } from './raw-calls';

/**
 * A 1 GiB ByteStream Read and a 1 GiB Write through the proxy, running as its
 * own process so its memory can be read from /proc. The bytes are checked
 * end to end (sha256 on the client for the Read, the upstream verifies the
 * digest of the Write), and the proxy's resident memory may grow by at most
 * MAX_GROWTH over what it used before: it must stream, never buffer a blob.
 * With NRP_FRONT=haproxy the calls go through the shipped HTTP/2 front, which
 * routes ByteStream straight to the upstream; then the front's memory is the
 * one that must stay bounded.
 */

const GiB = 1024 * MiB;
const SIZE = GiB;
const SEED = 1024;
const CHUNK = 64 * 1024;
/** Far below the blob size; well above HTTP/2 windows and socket buffers. */
const MAX_GROWTH = 128 * MiB;

let fake: FakeUpstream;
let started: StartedFake;
let proxy: ProxyProcess;
let front: FrontProcess | undefined;
/** The process the bytes flow through: the proxy, or the front when there is one. */
let measured: number;
let client: grpc.Client;
let digest: Digest;
let baseline: number;

beforeAll(async () => {
  fake = new FakeUpstream({ sinkWrites: true, readChunkBytes: CHUNK });
  started = await fake.start();
  // Hashes the synthetic blob once (a few seconds); the Write below reuses the digest.
  digest = fake.addSyntheticBlob(SIZE, { seed: SEED });
  proxy = await startProxy(['--upstream', started.url, '--keepalive-time', '0'], {
    env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' },
  });
  if (frontMode() !== undefined) front = await startFront({ proxy: proxy.endpoint, cluster: started.address });
  measured = front?.pid ?? proxy.pid;
  client = newClient(front?.endpoint ?? proxy.endpoint);
  // Warm up both directions so connection pools and buffers exist before the baseline is taken.
  const small = fake.addSyntheticBlob(4 * MiB, { seed: SEED + 1 });
  expect((await read(small)).code).toBe(Code.OK);
  expect((await write(small, SEED + 1)).code).toBe(Code.OK);
  baseline = memoryBytes(measured).rss;
}, 120_000);

afterAll(async () => {
  client?.close();
  await front?.stop();
  await proxy?.stop();
  await started?.stop();
});

/** Reads a blob through the proxy, hashing as it goes; keeps none of it. */
async function read(blob: Digest): Promise<{ code: number; received: number; sha256: string }> {
  const hash = createHash('sha256');
  let received = 0;
  const answer = await serverStream(
    client,
    PATHS.Read,
    encode(MSG.ReadRequest, { resourceName: `blobs/${blob.hash}/${blob.sizeBytes}` }),
    {
      keepMessages: false,
      onCall: (call) =>
        call.on('data', (message: Buffer) => {
          const data = decode(MSG.ReadResponse, message).data as Buffer;
          hash.update(data);
          received += data.length;
        }),
    },
  );
  return { code: answer.code, received, sha256: hash.digest('hex') };
}

/** WriteRequest written by hand: resource_name=1 (first message only), write_offset=2, finish_write=3, data=10. */
function writeRequest(resourceName: string | undefined, offset: number, data: Buffer, finish: boolean): Buffer {
  const w = protobuf.Writer.create();
  if (resourceName) w.uint32((1 << 3) | 2).string(resourceName);
  if (offset > 0) w.uint32((2 << 3) | 0).int64(offset);
  if (finish) w.uint32((3 << 3) | 0).bool(true);
  w.uint32((10 << 3) | 2).bytes(data);
  return Buffer.from(w.finish());
}

/** Writes a synthetic blob through the proxy, generating each chunk as it is sent. */
function write(
  blob: Digest,
  seed: number,
  resourceName = `big/uploads/${randomUUID()}/blobs/${blob.hash}/${blob.sizeBytes}`,
) {
  function* requests(): Generator<Buffer> {
    for (let offset = 0; offset < blob.sizeBytes; offset += CHUNK) {
      const length = Math.min(CHUNK, blob.sizeBytes - offset);
      yield writeRequest(
        offset === 0 ? resourceName : undefined,
        offset,
        syntheticBytes(seed, offset, length),
        offset + length >= blob.sizeBytes,
      );
    }
  }
  return clientStream(client, PATHS.Write, requests());
}

function report(what: string, peakSampled: number): void {
  const { peak } = memoryBytes(measured);
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  console.info(
    `${what}: proxy RSS baseline ${mib(baseline)}, sampled peak ${mib(peakSampled)} (+${mib(peakSampled - baseline)}), VmHWM ${mib(peak)}`,
  );
}

describe('1 GiB through the proxy with bounded memory', () => {
  it('ByteStream.Read of 1 GiB: every byte arrives (sha256), proxy RSS grows by less than 128 MiB', async () => {
    const sampler = new RssSampler(measured);
    const result = await read(digest);
    const peakSampled = sampler.stop();
    report('Read 1 GiB', peakSampled);
    expect(result.code).toBe(Code.OK);
    expect(result.received).toBe(SIZE);
    expect(result.sha256).toBe(digest.hash);
    // VmHWM is the peak over the process's life: it bounds growth during the transfer from above.
    expect(memoryBytes(measured).peak - baseline).toBeLessThan(MAX_GROWTH);
  }, 240_000);

  it('ByteStream.Write of 1 GiB: the upstream verifies the digest, proxy RSS grows by less than 128 MiB', async () => {
    const resourceName = `big/uploads/${randomUUID()}/blobs/${digest.hash}/${digest.sizeBytes}`;
    const sampler = new RssSampler(measured);
    const answer = await write(digest, SEED, resourceName);
    const peakSampled = sampler.stop();
    report('Write 1 GiB', peakSampled);
    expect(answer.code, answer.details).toBe(Code.OK);
    expect(decode(MSG.WriteResponse, answer.messages[0]!).committedSize).toBe(SIZE);
    expect(fake.writes().find((w) => w.resourceName === resourceName)).toEqual({
      resourceName,
      instanceName: 'big',
      digest,
      sunk: true,
    });
    expect(memoryBytes(measured).peak - baseline).toBeLessThan(MAX_GROWTH);
  }, 240_000);
});
