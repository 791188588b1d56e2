import { createHash, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../../src/main';
import { Code } from '../../../src/reapi/grpc-status';
import {
  FakeUpstream,
  MSG,
  PATHS,
  decode,
  encode,
  sha256Digest,
  statusDetails,
  type RecordedCall,
  type StartedFake,
} from '../../support/fake-upstream';
import { requestMetadataBytes, withUnknownFields } from './proto-bytes';
import { startPassthroughProxy } from './proxy-rig';
import { call, metadataObject, newClient, unary, type Answer, type Kind } from './raw-calls';
import { headerValues, startRecordingUpstream } from './recording-h2-upstream';

/**
 * Every REAPI method through the proxy, compared with the same call made
 * straight to the upstream: the upstream must receive the same request bytes
 * and metadata, and the client must receive the same headers, messages,
 * status, details and trailers. Messages carry unknown (future) fields in
 * both directions.
 */

const METHODS: Array<[name: string, path: string, kind: Kind]> = [
  ['Execute', PATHS.Execute, 'serverStream'],
  ['WaitExecution', PATHS.WaitExecution, 'serverStream'],
  ['GetActionResult', PATHS.GetActionResult, 'unary'],
  ['UpdateActionResult', PATHS.UpdateActionResult, 'unary'],
  ['FindMissingBlobs', PATHS.FindMissingBlobs, 'unary'],
  ['BatchUpdateBlobs', PATHS.BatchUpdateBlobs, 'unary'],
  ['BatchReadBlobs', PATHS.BatchReadBlobs, 'unary'],
  ['GetTree', PATHS.GetTree, 'serverStream'],
  ['GetCapabilities', PATHS.GetCapabilities, 'unary'],
  ['ByteStream.Read', PATHS.Read, 'serverStream'],
  ['ByteStream.Write', PATHS.Write, 'clientStream'],
  ['ByteStream.QueryWriteStatus', PATHS.QueryWriteStatus, 'unary'],
  ['Operations.ListOperations', PATHS.ListOperations, 'unary'],
  ['Operations.GetOperation', PATHS.GetOperation, 'unary'],
  ['Operations.DeleteOperation', PATHS.DeleteOperation, 'unary'],
  ['Operations.CancelOperation', PATHS.CancelOperation, 'unary'],
  ['Operations.WaitOperation', PATHS.WaitOperation, 'unary'],
  ['Fetch.FetchBlob', PATHS.FetchBlob, 'unary'],
  ['Fetch.FetchDirectory', PATHS.FetchDirectory, 'unary'],
  ['Push.PushBlob', PATHS.PushBlob, 'unary'],
  ['Push.PushDirectory', PATHS.PushDirectory, 'unary'],
];

const REQUEST_METADATA = 'build.bazel.remote.execution.v2.requestmetadata-bin';
/** Every byte value, so no base64 or header handling can get away with a lossy copy. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

let fake: FakeUpstream;
let started: StartedFake;
let proxy: RunningProxy;
let direct: grpc.Client;
let proxied: grpc.Client;

beforeAll(async () => {
  fake = new FakeUpstream();
  started = await fake.start();
  proxy = await startPassthroughProxy(started.url);
  direct = newClient(started.address);
  proxied = newClient(proxy.endpoint);
});

afterEach(() => fake.clearScripts());

afterAll(async () => {
  direct?.close();
  proxied?.close();
  await proxy?.close(100);
  await started?.stop();
});

/** Client metadata as Bazel and Buck2 send it, plus repeated and binary entries of every byte value. */
function clientMetadata(callTag: string, tag: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-test-tag', callTag);
  md.set(
    REQUEST_METADATA,
    requestMetadataBytes({ toolName: 'bazel', toolVersion: '4.2.3', actionId: `action-${tag}`, toolInvocationId: tag }),
  );
  md.set('authorization', 'Bearer passthrough-token');
  md.add('x-repeated', 'first');
  md.add('x-repeated', 'second');
  md.add('x-binary-bin', ALL_BYTES);
  md.add('x-binary-bin', Buffer.alloc(0));
  md.add('x-binary-bin', Buffer.from([0xff]));
  return md;
}

/** Request messages: a real message of the method's request type would do, but arbitrary fields prove more. */
function requests(kind: Kind, tag: string): Buffer[] {
  const first = withUnknownFields(encode(MSG.FindMissingBlobsRequest, { instanceName: `tenant/${tag}` }), tag);
  if (kind !== 'clientStream') return [first];
  return [
    first,
    withUnknownFields(Buffer.alloc(40_000, 7), `${tag}-2`),
    Buffer.alloc(0),
    withUnknownFields(Buffer.from('last'), `${tag}-3`),
  ];
}

function responses(tag: string): Buffer[] {
  return [
    withUnknownFields(encode(MSG.Operation, { name: `operations/${tag}`, done: false }), tag),
    // Bigger than one HTTP/2 DATA frame (16 KiB) and one stream window chunk.
    withUnknownFields(Buffer.alloc(100_000, 0xa5), `${tag}-big`),
    Buffer.alloc(0),
  ];
}

/** Makes the same call straight to the upstream and through the proxy; returns both answers and both upstream records. */
async function bothWays(
  kind: Kind,
  path: string,
  extra: (tag: string) => Partial<Parameters<FakeUpstream['script']>[1]>,
) {
  const out: Array<{ answer: Answer; seen: RecordedCall; sent: Buffer[]; metadata: grpc.Metadata }> = [];
  const tag = `t-${randomUUID()}`;
  fake.script(path, extra(tag), 2);
  for (const client of [direct, proxied]) {
    const callTag = `${tag}-${client === direct ? 'direct' : 'proxied'}`;
    const sent = requests(kind, tag);
    const metadata = clientMetadata(callTag, tag);
    const seen = fake.waitForCall(path, (c) => c.metadata.get('x-test-tag')[0] === callTag);
    const answer = await call(client, kind, path, sent, { metadata });
    const record = await seen;
    await record.ended;
    out.push({ answer, seen: record, sent, metadata });
  }
  return { tag, direct: out[0]!, proxied: out[1]! };
}

/** Deep equality of big Buffers is slow in expect(); hashes compare at once and still catch any changed byte. */
function fingerprints(messages: Buffer[]): string[] {
  return messages.map((m) => `${m.length}:${createHash('sha256').update(m).digest('hex')}`);
}

function comparable(answer: Answer) {
  return {
    // Dates differ between two answers; everything else must not.
    headers: metadataObject(answer.headers, ['date']),
    messages: fingerprints(answer.messages),
    code: answer.code,
    details: answer.details,
    trailers: metadataObject(answer.trailers, ['date']),
  };
}

describe('every method: bytes, metadata, status, details and trailers pass unchanged', () => {
  it.each(METHODS)(
    '%s: OK with response headers, messages with unknown fields, and trailers',
    async (_name, path, kind) => {
      const both = await bothWays(kind, path, (tag) => ({
        headers: { 'x-response-head': `head ${tag}`, 'x-response-head-bin': ALL_BYTES },
        responses: responses(tag),
        trailers: { 'x-response-trailer': 'trailer value', 'x-response-trailer-bin': Buffer.from([0, 255, 1]) },
      }));
      const { proxied: p, direct: d } = both;

      // What the upstream received through the proxy is what the client sent.
      expect(fingerprints(p.seen.requests)).toEqual(fingerprints(p.sent));
      expect(p.seen.metadata.get(REQUEST_METADATA)).toEqual(p.metadata.get(REQUEST_METADATA));
      expect(p.seen.metadata.get('x-binary-bin')).toEqual([ALL_BYTES, Buffer.alloc(0), Buffer.from([0xff])]);
      expect(p.seen.metadata.get('authorization')).toEqual(['Bearer passthrough-token']);
      // ...and exactly what it receives from the client directly, header for header.
      expect(metadataObject(p.seen.metadata, ['x-test-tag'])).toEqual(metadataObject(d.seen.metadata, ['x-test-tag']));
      expect(p.seen.outcome).toBe('status');

      // What the client received through the proxy is what it receives directly.
      expect(p.answer.code).toBe(Code.OK);
      expect(p.answer.messages.length).toBe(kind === 'serverStream' ? 3 : 1);
      expect(fingerprints(p.answer.messages)).toEqual(
        fingerprints(responses(both.tag).slice(0, p.answer.messages.length)),
      );
      expect(p.answer.headers?.get('x-response-head-bin')).toEqual([ALL_BYTES]);
      expect(p.answer.trailers.get('x-response-trailer-bin')).toEqual([Buffer.from([0, 255, 1])]);
      expect(comparable(p.answer)).toEqual(comparable(d.answer));
    },
  );

  it.each(METHODS)(
    '%s: an error status with a message, grpc-status-details-bin and trailers',
    async (_name, path, kind) => {
      const details = statusDetails(Code.FAILED_PRECONDITION, 'blobs missing', [
        {
          typeUrl: 'type.googleapis.com/google.rpc.PreconditionFailure',
          value: encode(MSG.PreconditionFailure, {
            violations: [{ type: 'MISSING', subject: `blobs/${'ab'.repeat(32)}/42`, description: 'gone' }],
          }),
        },
      ]);
      const both = await bothWays(kind, path, (tag) => ({
        headers: { 'x-response-head': 'before the error' },
        // Streams send one message first: an error after data must still arrive as an error.
        responses: responses(tag),
        messages: kind === 'serverStream' ? 1 : 0,
        status: { code: Code.FAILED_PRECONDITION, message: `set-up failed: ünïcode, 100% \n ${tag}`, details },
        trailers: { 'x-error-trailer': 'kept', 'retry-hint-bin': Buffer.from([1, 2, 3]) },
      }));
      const { proxied: p, direct: d } = both;
      expect(fingerprints(p.seen.requests)).toEqual(fingerprints(p.sent));
      expect(p.answer.code).toBe(Code.FAILED_PRECONDITION);
      expect(p.answer.details).toContain('ünïcode, 100% \n');
      expect(p.answer.trailers.get('grpc-status-details-bin')).toEqual([details]);
      expect(p.answer.trailers.get('retry-hint-bin')).toEqual([Buffer.from([1, 2, 3])]);
      expect(p.answer.messages.length).toBe(kind === 'serverStream' ? 1 : 0);
      expect(comparable(p.answer)).toEqual(comparable(d.answer));
    },
  );
});

describe('default upstream behaviour through the proxy', () => {
  it('ByteStream resource names with several-segment instance names pass unchanged', async () => {
    const instance = `tenant/${randomUUID()}/linux-x86_64`;
    const data = Buffer.from(`segments ${randomUUID()}`);
    const digest = sha256Digest(data);
    const writeName = `${instance}/uploads/${randomUUID()}/blobs/${digest.hash}/${digest.sizeBytes}/optional/metadata`;
    const write = await call(proxied, 'clientStream', PATHS.Write, [
      encode(MSG.WriteRequest, { resourceName: writeName, writeOffset: 0, data: data.subarray(0, 5) }),
      encode(MSG.WriteRequest, { writeOffset: 5, data: data.subarray(5), finishWrite: true }),
    ]);
    expect(write.code).toBe(Code.OK);
    expect(fake.writes().at(-1)).toMatchObject({ resourceName: writeName, instanceName: instance, digest });

    const readName = `${instance}/blobs/${digest.hash}/${digest.sizeBytes}`;
    const read = await call(proxied, 'serverStream', PATHS.Read, [encode(MSG.ReadRequest, { resourceName: readName })]);
    expect(read.code).toBe(Code.OK);
    expect(Buffer.concat(read.messages.map((m) => decode(MSG.ReadResponse, m).data as Buffer))).toEqual(data);
    // The fake keeps instances apart: the blob is not under a shorter name, so nothing was rewritten.
    const shorter = await call(proxied, 'serverStream', PATHS.Read, [
      encode(MSG.ReadRequest, { resourceName: `${instance.split('/')[0]}/blobs/${digest.hash}/${digest.sizeBytes}` }),
    ]);
    expect(shorter.code).toBe(Code.NOT_FOUND);

    const status = await unary(
      proxied,
      PATHS.QueryWriteStatus,
      encode(MSG.QueryWriteStatusRequest, { resourceName: writeName }),
    );
    expect(status.code).toBe(Code.OK);
  });

  it('an Execute stream relays every Operation the upstream sends, in order', async () => {
    const request = withUnknownFields(
      encode(MSG.ExecuteRequest, { instanceName: 'main', actionDigest: { hash: 'ab'.repeat(32), sizeBytes: 3 } }),
      'exec',
    );
    const answer = await call(proxied, 'serverStream', PATHS.Execute, [request]);
    expect(answer.code).toBe(Code.OK);
    const seen = fake.calls(PATHS.Execute).find((c) => c.requests[0]?.equals(request));
    expect(seen?.responses).toEqual(answer.messages);
    expect(answer.messages).toHaveLength(2);
  });
});

describe('methods the proxy does not know', () => {
  const FUTURE = '/build.bazel.remote.execution.v3.FutureService/NewMethod';

  it('an unknown method path reaches the upstream, and its answer comes back', async () => {
    const recording = await startRecordingUpstream({ code: Code.ABORTED, message: 'future method seen' });
    const local = await startPassthroughProxy(recording.url);
    const client = newClient(local.endpoint);
    try {
      const body = withUnknownFields(Buffer.from('payload'), 'future');
      const md = new grpc.Metadata();
      md.set('x-future', 'yes');
      const answer = await unary(client, FUTURE, body, { metadata: md });
      expect(answer).toMatchObject({ code: Code.ABORTED, details: 'future method seen' });
      const seen = await recording.next(FUTURE);
      expect(headerValues(seen, 'x-future')).toEqual(['yes']);
      // One gRPC frame: uncompressed flag, big-endian length, the message bytes as sent.
      expect(seen.body).toEqual(Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]));
    } finally {
      client.close();
      await local.close(100);
      await recording.stop();
    }
  });

  it('an upstream that does not implement a path answers UNIMPLEMENTED through the proxy as it does directly', async () => {
    const d = await unary(direct, FUTURE, Buffer.from('x'));
    const p = await unary(proxied, FUTURE, Buffer.from('x'));
    expect(p.code).toBe(Code.UNIMPLEMENTED);
    expect(comparable(p)).toEqual(comparable(d));
  });
});
