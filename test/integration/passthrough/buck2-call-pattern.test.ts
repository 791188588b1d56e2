import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../../src/main';
import { Code } from '../../../src/reapi/grpc-status';
import {
  FakeUpstream,
  MSG,
  PATHS,
  decode,
  encode,
  sha256Digest,
  type Digest,
  type StartedFake,
} from '../../support/fake-upstream';
import { requestMetadataBytes } from './proto-bytes';
import { startPassthroughProxy } from './proxy-rig';
import { newClient, serverStream, unary } from './raw-calls';

/**
 * One remote action the way Buck2's RE client runs it, through the proxy:
 * separate channels for the engine, action cache and CAS; GetCapabilities
 * first (it fails without exec_enabled and sizes batches by
 * max_batch_total_size_bytes); small blobs by BatchUpdateBlobs after
 * FindMissingBlobs; one Execute stream and never WaitExecution; outputs by
 * BatchReadBlobs; RequestMetadata with tool_name "buck2" on every call, plus
 * the headers from its http_headers setting.
 */

const INSTANCE = 'buck2/main';
const REQUEST_METADATA = 'build.bazel.remote.execution.v2.requestmetadata-bin';
const PROXY_LIMIT = 2 * 1024 * 1024;

let fake: FakeUpstream;
let started: StartedFake;
let proxy: RunningProxy;
const output = Buffer.from(`compiled ${randomUUID()}\n`);
let outputDigest: Digest;

beforeAll(async () => {
  fake = new FakeUpstream({
    // The executor's result: one output file, and the execution_metadata Buck2 requires.
    actionResult: () => ({
      exitCode: 0,
      outputFiles: [{ path: 'out/main.o', digest: outputDigest, isExecutable: false }],
      executionMetadata: {
        worker: 'fake-executor',
        queuedTimestamp: { seconds: 1 },
        workerCompletedTimestamp: { seconds: 2 },
      },
    }),
  });
  started = await fake.start();
  outputDigest = fake.putBlob(output, INSTANCE);
  proxy = await startPassthroughProxy(started.url, { maxMessageBytes: PROXY_LIMIT });
});

afterAll(async () => {
  await proxy?.close(100);
  await started?.stop();
});

describe('Buck2’s call pattern', () => {
  it('GetCapabilities, FindMissingBlobs, BatchUpdateBlobs, one Execute stream, BatchReadBlobs: all pass with buck2 metadata intact', async () => {
    // Buck2 opens one channel per configured address; a private subchannel pool keeps them apart here too.
    const channel = () =>
      newClient(proxy.endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const engine = channel();
    const actionCache = channel();
    const cas = channel();
    try {
      const invocation = randomUUID();
      const sentMetadata: Buffer[] = [];
      const metadata = (actionId?: string): grpc.Metadata => {
        const md = new grpc.Metadata();
        const bytes = requestMetadataBytes({
          toolName: 'buck2',
          toolVersion: '2024-06-01',
          toolInvocationId: invocation,
          ...(actionId ? { actionId } : {}),
        });
        sentMetadata.push(bytes);
        md.set(REQUEST_METADATA, bytes);
        md.set('x-buck2-tenant', 'team-a');
        md.set('authorization', 'Bearer buck2-token');
        return md;
      };

      // 1. Capabilities first.
      const caps = await unary(
        engine,
        PATHS.GetCapabilities,
        encode(MSG.GetCapabilitiesRequest, { instanceName: INSTANCE }),
        { metadata: metadata() },
      );
      expect(caps.code).toBe(Code.OK);
      const capabilities = decode(MSG.ServerCapabilities, caps.messages[0]!);
      expect(capabilities.executionCapabilities.execEnabled).toBe(true);
      const batchLimit = Number(capabilities.cacheCapabilities.maxBatchTotalSizeBytes);
      expect(batchLimit).toBe(PROXY_LIMIT);

      // 2. The action's blobs.
      const source = Buffer.from(`int main() { return 0; } // ${invocation}\n`);
      const sourceDigest = sha256Digest(source);
      const inputRoot = encode(MSG.Directory, { files: [{ name: 'main.c', digest: sourceDigest }] });
      const command = encode('build.bazel.remote.execution.v2.Command', {
        arguments: ['cc', '-c', 'main.c', '-o', 'out/main.o'],
        outputPaths: ['out/main.o'],
      });
      const action = encode('build.bazel.remote.execution.v2.Action', {
        commandDigest: sha256Digest(command),
        inputRootDigest: sha256Digest(inputRoot),
      });
      const blobs = [source, inputRoot, command, action];
      const digests = blobs.map(sha256Digest);
      const actionId = sha256Digest(action).hash;

      const missing = await unary(
        cas,
        PATHS.FindMissingBlobs,
        encode(MSG.FindMissingBlobsRequest, { instanceName: INSTANCE, blobDigests: digests }),
        {
          metadata: metadata(actionId),
        },
      );
      expect(missing.code).toBe(Code.OK);
      expect(decode(MSG.FindMissingBlobsResponse, missing.messages[0]!).missingBlobDigests).toHaveLength(4);

      const upload = encode(MSG.BatchUpdateBlobsRequest, {
        instanceName: INSTANCE,
        requests: blobs.map((data, i) => ({ digest: digests[i], data })),
      });
      expect(upload.length).toBeLessThan(batchLimit);
      const uploaded = await unary(cas, PATHS.BatchUpdateBlobs, upload, { metadata: metadata(actionId) });
      expect(uploaded.code).toBe(Code.OK);
      for (const r of decode(MSG.BatchUpdateBlobsResponse, uploaded.messages[0]!).responses)
        expect(r.status?.code ?? 0).toBe(0);
      for (const d of digests) expect(fake.hasBlob(d, INSTANCE)).toBe(true);

      // 3. One Execute stream, read to the end; no WaitExecution.
      const executed = await serverStream(
        engine,
        PATHS.Execute,
        encode(MSG.ExecuteRequest, {
          instanceName: INSTANCE,
          actionDigest: sha256Digest(action),
          skipCacheLookup: false,
        }),
        { metadata: metadata(actionId) },
      );
      expect(executed.code).toBe(Code.OK);
      const last = decode(MSG.Operation, executed.messages.at(-1)!);
      expect(last.done).toBe(true);
      const response = decode(MSG.ExecuteResponse, last.response.value);
      expect(response.status?.code ?? 0).toBe(0);
      expect(response.result.executionMetadata.worker).toBe('fake-executor');
      expect(response.result.outputFiles[0].digest).toEqual(outputDigest);

      // 4. The outputs, by batch.
      const read = await unary(
        cas,
        PATHS.BatchReadBlobs,
        encode(MSG.BatchReadBlobsRequest, { instanceName: INSTANCE, digests: [outputDigest] }),
        {
          metadata: metadata(actionId),
        },
      );
      expect(read.code).toBe(Code.OK);
      expect(decode(MSG.BatchReadBlobsResponse, read.messages[0]!).responses[0].data).toEqual(output);

      // The upstream saw exactly these calls, in this order, each with the metadata as sent.
      const ours = (c: { metadata: grpc.Metadata }) => {
        const value = c.metadata.get(REQUEST_METADATA)[0];
        return Buffer.isBuffer(value) && sentMetadata.some((m) => m.equals(value));
      };
      const seen = fake.calls().filter(ours);
      expect(seen.map((c) => c.path)).toEqual([
        PATHS.GetCapabilities,
        PATHS.FindMissingBlobs,
        PATHS.BatchUpdateBlobs,
        PATHS.Execute,
        PATHS.BatchReadBlobs,
      ]);
      expect(seen.map((c) => c.metadata.get(REQUEST_METADATA)[0])).toEqual(sentMetadata);
      for (const c of seen) {
        expect(c.metadata.get('x-buck2-tenant')).toEqual(['team-a']);
        expect(c.metadata.get('authorization')).toEqual(['Bearer buck2-token']);
      }
      expect(fake.calls(PATHS.WaitExecution)).toHaveLength(0);
    } finally {
      engine.close();
      actionCache.close();
      cas.close();
    }
  });

  it('an action-cache hit on the separate action-cache channel returns the stored ActionResult bytes', async () => {
    const actionCache = newClient(proxy.endpoint, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
    });
    try {
      const actionDigest = sha256Digest(Buffer.from(`cached action ${randomUUID()}`));
      const stored = encode(MSG.ActionResult, { exitCode: 0, executionMetadata: { worker: 'earlier-run' } });
      fake.putActionResult(actionDigest, stored, INSTANCE);
      const md = new grpc.Metadata();
      md.set(REQUEST_METADATA, requestMetadataBytes({ toolName: 'buck2', actionId: actionDigest.hash }));
      const hit = await unary(
        actionCache,
        PATHS.GetActionResult,
        encode(MSG.GetActionResultRequest, { instanceName: INSTANCE, actionDigest }),
        { metadata: md },
      );
      expect(hit.code).toBe(Code.OK);
      expect(hit.messages[0]).toEqual(stored);
    } finally {
      actionCache.close();
    }
  });
});
