import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Code, codeName } from '../../../src/reapi/grpc-status';
import { actionBlob, commandBlob, emptyDirectory, fakeStorePath } from '../../corpus/hostile/generate';
import { MSG, PATHS, decode, encode, type FakeUpstream } from '../fake-upstream';
import {
  BATCH_READ,
  BATCH_UPDATE,
  BYTESTREAM_READ,
  BYTESTREAM_WRITE,
  FIND_MISSING,
  clientStream,
  execute,
  executeRequest,
  serverStream,
  unary,
  type RawAnswer,
} from './grpc-raw';
import { rssBytes } from './process-probe';
import type { StubNix } from './stub-nix';

/**
 * A soak run: `clients` concurrent clients send mixed traffic through the
 * proxy for `durationMs` (CAS writes by batch and by ByteStream, reads back,
 * FindMissingBlobs, Execute with and without Nix store paths to realise)
 * while faults are injected now and then (the upstream restarting, answering
 * UNAVAILABLE, resetting streams, being slow; the shared store unreachable).
 * Clients retry retryable failures like Bazel does. Every blob a write
 * acknowledged is remembered by digest; reads are checked against the digest
 * as they happen, and all of them are read back and checked once more at the
 * end, with faults stopped. The proxy's RSS is sampled throughout.
 */

export interface SoakOptions {
  /** host:port of the proxy. */
  endpoint: string;
  proxyPid: number;
  fake: FakeUpstream;
  /** The stand-in Nix the proxy runs, for store faults and realisations; optional. */
  nix?: StubNix;
  durationMs: number;
  clients: number;
  /** Channels (connections) the clients share; default clients / 4. */
  connections?: number;
  faults: boolean;
  /** Relative weights of the operations; default write 35, read 30, findMissing 20, execute 15. */
  mix?: Partial<Record<OpKind, number>>;
  /** Which faults to inject, in turn; default all (store faults only with `nix`). */
  faultKinds?: FaultKind[];
  /** Share of the run before memory counts as warmed up; default 0.25. */
  warmupFraction?: number;
  sampleEveryMs?: number;
  metadata?: Record<string, string>;
  /** Called with a line now and then (progress). */
  log?: (line: string) => void;
}

export interface SoakReport {
  durationMs: number;
  clients: number;
  operations: Record<OpKind, number>;
  /** Operations that succeeded, possibly after retries. */
  succeeded: number;
  retries: number;
  /** Operations that still failed after every retry, by final status. */
  failed: Record<string, number>;
  /** Acknowledged blobs. */
  blobsWritten: number;
  bytesWritten: number;
  /** Reads that returned bytes not matching the digest: must be 0. */
  corrupted: number;
  /** Acknowledged blobs the final read-back could not return whole: must be 0. */
  lost: number;
  /** FindMissingBlobs answers that called an acknowledged blob missing: must be 0. */
  reportedMissing: number;
  faults: Record<string, number>;
  rss: {
    samples: Array<{ atMs: number; bytes: number }>;
    atWarmup: number;
    maxAfterWarmup: number;
    firstThirdMedian: number;
    lastThirdMedian: number;
  };
}

export type OpKind = 'write' | 'read' | 'findMissing' | 'execute';
export type FaultKind =
  'upstream-restart' | 'upstream-unavailable' | 'read-reset' | 'upstream-slow' | 'store-unreachable';

interface Blob {
  hash: string;
  sizeBytes: number;
}

const RETRYABLE = new Set<number>([
  Code.UNAVAILABLE,
  Code.DEADLINE_EXCEEDED,
  Code.RESOURCE_EXHAUSTED,
  Code.ABORTED,
  Code.INTERNAL,
  Code.UNKNOWN,
]);
const MAX_ATTEMPTS = 6;
const CALL_DEADLINE_MS = 30_000;
const BYTESTREAM_CHUNK = 64 * 1024;

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Mostly small blobs, some medium, a few large enough for ByteStream (about 11 KiB on average). */
function blobSize(r: number): number {
  if (r < 0.8) return 1 + Math.floor(Math.random() * 4096);
  if (r < 0.99) return 4096 + Math.floor(Math.random() * 28 * 1024);
  return 256 * 1024 + Math.floor(Math.random() * 768 * 1024);
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

class Stats {
  readonly operations: Record<OpKind, number> = { write: 0, read: 0, findMissing: 0, execute: 0 };
  succeeded = 0;
  retries = 0;
  readonly failed: Record<string, number> = {};
  corrupted = 0;
  reportedMissing = 0;
  bytesWritten = 0;
  readonly faults: Record<string, number> = {};
  readonly corruptions: string[] = [];
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? (() => undefined);
  const stats = new Stats();
  const written: Blob[] = [];
  const channels = Array.from(
    { length: Math.max(1, o.connections ?? Math.ceil(o.clients / 4)) },
    () =>
      new grpc.Client(o.endpoint, grpc.credentials.createInsecure(), {
        'grpc.enable_retries': 0,
        'grpc.use_local_subchannel_pool': 1,
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
      }),
  );
  const metadata = o.metadata ?? {};
  const started = Date.now();
  const endAt = started + o.durationMs;
  const samples: Array<{ atMs: number; bytes: number }> = [];
  const sampler = setInterval(() => {
    const bytes = rssBytes(o.proxyPid);
    if (Number.isFinite(bytes)) samples.push({ atMs: Date.now() - started, bytes });
  }, o.sampleEveryMs ?? 1000);
  // The fake records every call; over a long run only the last few matter.
  const trimmer = setInterval(() => o.fake.clearCalls(), 5_000);
  const progress = setInterval(() => {
    const done = Object.values(stats.operations).reduce((a, b) => a + b, 0);
    log(
      `soak: ${Math.round((Date.now() - started) / 1000)}s, ${done} operations, ${written.length} blobs, ${stats.retries} retries, faults ${JSON.stringify(stats.faults)}`,
    );
  }, 10_000);

  /** Runs `attempt` until it succeeds or fails for good; retryable statuses are retried with backoff. */
  async function withRetries(
    kind: OpKind,
    attempt: () => Promise<{ code: number; details: string }>,
  ): Promise<boolean> {
    stats.operations[kind]++;
    for (let i = 1; ; i++) {
      const { code } = await attempt();
      if (code === Code.OK) {
        stats.succeeded++;
        return true;
      }
      if (!RETRYABLE.has(code) || i >= MAX_ATTEMPTS) {
        const key = `${kind}:${codeName(code)}`;
        stats.failed[key] = (stats.failed[key] ?? 0) + 1;
        return false;
      }
      stats.retries++;
      await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** i) * (0.5 + Math.random())));
    }
  }

  const opts = () => ({ metadata, deadlineMs: CALL_DEADLINE_MS });
  const mix: Record<OpKind, number> = { write: 35, read: 30, findMissing: 20, execute: 15, ...o.mix };
  const mixTotal = mix.write + mix.read + mix.findMissing + mix.execute;

  async function write(client: grpc.Client): Promise<void> {
    const data = randomBytes(blobSize(Math.random()));
    const blob = { hash: sha256(data), sizeBytes: data.length };
    const ok = await withRetries('write', async () => {
      if (data.length <= 64 * 1024) {
        const answer = await unary(
          client,
          BATCH_UPDATE,
          encode(MSG.BatchUpdateBlobsRequest, { requests: [{ digest: blob, data }] }),
          opts(),
        );
        if (answer.code !== Code.OK) return answer;
        const status = decode(MSG.BatchUpdateBlobsResponse, answer.messages[0]!).responses?.[0]?.status;
        return { code: Number(status?.code ?? 0), details: String(status?.message ?? '') };
      }
      const uuid = randomBytes(16).toString('hex');
      const requests: Buffer[] = [];
      for (let off = 0; off < data.length; off += BYTESTREAM_CHUNK) {
        requests.push(
          encode(MSG.WriteRequest, {
            resourceName: off === 0 ? `uploads/${uuid}/blobs/${blob.hash}/${blob.sizeBytes}` : '',
            writeOffset: off,
            finishWrite: off + BYTESTREAM_CHUNK >= data.length,
            data: data.subarray(off, off + BYTESTREAM_CHUNK),
          }),
        );
      }
      const answer = await clientStream(client, BYTESTREAM_WRITE, requests, opts());
      if (
        answer.code === Code.OK &&
        Number(decode(MSG.WriteResponse, answer.messages[0]!).committedSize) !== data.length
      ) {
        return { code: Code.DATA_LOSS, details: 'committed_size differs' };
      }
      return answer;
    });
    if (ok) {
      written.push(blob);
      stats.bytesWritten += blob.sizeBytes;
    }
  }

  /** Reads `blob` and checks it against its digest; 'corrupt' is never retried away. */
  async function readOnce(client: grpc.Client, blob: Blob): Promise<{ code: number; details: string }> {
    let data: Buffer;
    let answer: RawAnswer;
    if (blob.sizeBytes <= 64 * 1024) {
      answer = await unary(client, BATCH_READ, encode(MSG.BatchReadBlobsRequest, { digests: [blob] }), opts());
      if (answer.code !== Code.OK) return answer;
      const r = decode(MSG.BatchReadBlobsResponse, answer.messages[0]!).responses?.[0];
      const code = Number(r?.status?.code ?? 0);
      if (code !== Code.OK) return { code, details: String(r?.status?.message ?? '') };
      data = (r?.data as Buffer | undefined) ?? Buffer.alloc(0);
    } else {
      answer = await serverStream(
        client,
        BYTESTREAM_READ,
        encode(MSG.ReadRequest, { resourceName: `blobs/${blob.hash}/${blob.sizeBytes}` }),
        opts(),
      );
      if (answer.code !== Code.OK) return answer;
      data = Buffer.concat(
        answer.messages.map((m) => (decode(MSG.ReadResponse, m).data as Buffer | undefined) ?? Buffer.alloc(0)),
      );
    }
    if (data.length !== blob.sizeBytes || sha256(data) !== blob.hash) {
      stats.corrupted++;
      if (stats.corruptions.length < 10)
        stats.corruptions.push(`${blob.hash}/${blob.sizeBytes}: got ${data.length} bytes hashing to ${sha256(data)}`);
      return { code: Code.DATA_LOSS, details: 'corrupt' };
    }
    return { code: Code.OK, details: '' };
  }

  async function read(client: grpc.Client): Promise<void> {
    if (written.length === 0) return write(client);
    const blob = written[Math.floor(Math.random() * written.length)]!;
    await withRetries('read', () => readOnce(client, blob));
  }

  async function findMissing(client: grpc.Client): Promise<void> {
    const known = Array.from(
      { length: Math.min(written.length, 20) },
      () => written[Math.floor(Math.random() * written.length)]!,
    );
    const unknown = Array.from({ length: 5 }, () => ({
      hash: sha256(randomBytes(16)),
      sizeBytes: 1 + Math.floor(Math.random() * 1000),
    }));
    await withRetries('findMissing', async () => {
      const answer = await unary(
        client,
        FIND_MISSING,
        encode(MSG.FindMissingBlobsRequest, { blobDigests: [...known, ...unknown] }),
        opts(),
      );
      if (answer.code !== Code.OK) return answer;
      const missing = new Set(
        ((decode(MSG.FindMissingBlobsResponse, answer.messages[0]!).missingBlobDigests ?? []) as Blob[]).map(
          (d) => d.hash,
        ),
      );
      for (const b of known) if (missing.has(b.hash)) stats.reportedMissing++;
      return answer;
    });
  }

  async function executeOne(client: grpc.Client): Promise<void> {
    // Like a build tool: upload the Command and the Action, then Execute. A third of the actions
    // name a store path the shared store may lack (a realisation), a third one it has, a third none.
    const r = Math.random();
    const args = ['/bin/sh', '-c', `step ${randomBytes(6).toString('hex')}`];
    if (r < 0.33) args.push(`${fakeStorePath(Math.floor(Math.random() * 2 ** 40), 'soak-fresh')}/bin/tool`);
    else if (r < 0.66) args.push(`${fakeStorePath(Math.floor(Math.random() * 50), 'soak-toolchain')}/bin/cc`);
    const command = commandBlob(args);
    const commandDigest = { hash: sha256(command), sizeBytes: command.length };
    const root = emptyDirectory({ putBlob: (d) => ({ hash: sha256(d), sizeBytes: d.length }) });
    const action = actionBlob(commandDigest, root);
    const actionDigest = { hash: sha256(action), sizeBytes: action.length };
    await withRetries('execute', async () => {
      const up = await unary(
        client,
        BATCH_UPDATE,
        encode(MSG.BatchUpdateBlobsRequest, {
          requests: [
            { digest: commandDigest, data: command },
            { digest: actionDigest, data: action },
          ],
        }),
        opts(),
      );
      if (up.code !== Code.OK) return up;
      const outcome = await execute(client, executeRequest(actionDigest), opts());
      if (outcome.code !== Code.OK) return outcome;
      if (!outcome.done) return { code: Code.UNAVAILABLE, details: 'stream ended without a finished Operation' };
      return { code: outcome.response?.code ?? Code.OK, details: outcome.response?.message ?? '' };
    });
  }

  async function worker(index: number): Promise<void> {
    const client = channels[index % channels.length]!;
    while (Date.now() < endAt) {
      let r = Math.random() * mixTotal;
      if ((r -= mix.write) < 0) await write(client);
      else if ((r -= mix.read) < 0) await read(client);
      else if ((r -= mix.findMissing) < 0) await findMissing(client);
      else await executeOne(client);
    }
  }

  const faultsDone = o.faults ? injectFaults(o, stats, endAt) : Promise.resolve();
  await Promise.all(Array.from({ length: o.clients }, (_, i) => worker(i)));
  await faultsDone;
  clearInterval(progress);
  clearInterval(trimmer);
  clearInterval(sampler);

  // Every acknowledged blob, read back once more with no fault running.
  log(`soak: reading back ${written.length} blobs`);
  let lost = 0;
  let next = 0;
  await Promise.all(
    channels.map(async (client) => {
      while (next < written.length) {
        const blob = written[next++]!;
        let result = await readOnce(client, blob);
        for (let i = 0; i < 3 && result.code !== Code.OK && result.details !== 'corrupt'; i++)
          result = await readOnce(client, blob);
        if (result.code !== Code.OK) lost++;
      }
    }),
  );
  for (const c of channels) c.close();
  o.fake.clearCalls();

  const warmupMs = o.durationMs * (o.warmupFraction ?? 0.25);
  const after = samples.filter((s) => s.atMs >= warmupMs);
  const third = Math.max(1, Math.floor(after.length / 3));
  return {
    durationMs: Date.now() - started,
    clients: o.clients,
    operations: stats.operations,
    succeeded: stats.succeeded,
    retries: stats.retries,
    failed: stats.failed,
    blobsWritten: written.length,
    bytesWritten: stats.bytesWritten,
    corrupted: stats.corrupted,
    lost,
    reportedMissing: stats.reportedMissing,
    faults: stats.faults,
    rss: {
      samples,
      atWarmup: after[0]?.bytes ?? NaN,
      maxAfterWarmup: Math.max(...after.map((s) => s.bytes)),
      firstThirdMedian: median(after.slice(0, third).map((s) => s.bytes)),
      lastThirdMedian: median(after.slice(-third).map((s) => s.bytes)),
    },
  };
}

/**
 * One fault at a time, every few seconds, each undone before the next: the
 * upstream restarting, answering UNAVAILABLE, resetting ByteStream reads,
 * being slow, and (with a stand-in Nix) the shared store unreachable. None
 * in the last tenth of the run, so it ends calm.
 */
async function injectFaults(o: SoakOptions, stats: Stats, endAt: number): Promise<void> {
  const calmFrom = endAt - o.durationMs / 10;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const count = (name: string) => (stats.faults[name] = (stats.faults[name] ?? 0) + 1);
  const kinds = (
    o.faultKinds ?? ['upstream-restart', 'upstream-unavailable', 'read-reset', 'upstream-slow', 'store-unreachable']
  ).filter((k) => o.nix || k !== 'store-unreachable');
  let i = 0;
  while (Date.now() + 3000 < calmFrom) {
    await sleep(1500 + Math.random() * 1500);
    const kind = kinds[i++ % kinds.length]!;
    count(kind);
    switch (kind) {
      case 'upstream-restart':
        await o.fake.stop(0);
        await sleep(200);
        await o.fake.start();
        break;
      case 'upstream-unavailable':
        for (const path of [PATHS.FindMissingBlobs, PATHS.BatchReadBlobs, PATHS.BatchUpdateBlobs, PATHS.Execute]) {
          o.fake.script(path, { status: { code: Code.UNAVAILABLE, message: 'soak: injected' } }, 20);
        }
        await sleep(1000);
        o.fake.clearScripts();
        break;
      case 'read-reset':
        o.fake.script(PATHS.Read, { messages: 1, then: 'reset' }, 5);
        await sleep(1000);
        o.fake.clearScripts();
        break;
      case 'upstream-slow':
        for (const path of [PATHS.FindMissingBlobs, PATHS.BatchReadBlobs, PATHS.Write])
          o.fake.script(path, { delayMs: 300 }, 200);
        await sleep(1000);
        o.fake.clearScripts();
        break;
      case 'store-unreachable':
        o.nix!.set('nix-store', 'unreachable');
        await sleep(1000);
        o.nix!.set('nix-store', 'missing-in-shared');
        break;
    }
  }
}
