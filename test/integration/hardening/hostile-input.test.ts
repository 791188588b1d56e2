import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../src/reapi/grpc-status';
import { STORE_PATH_RE } from '../../../src/nix/store-path';
import {
  actionBlob,
  commandBlob,
  deepTree,
  directoryBlob,
  distinctPaths,
  emptyDirectory,
  fakeStorePath,
  nearMissFlood,
  nestedGroups,
  prefixFlood,
  wideTree,
  zipBomb,
  type Digest,
} from '../../corpus/hostile/generate';
import { FakeUpstream, PATHS, sha256Digest } from '../../support/fake-upstream';
import {
  WAIT_EXECUTION,
  execute,
  executeRequest,
  rawClient,
  serverStream,
  trailerViolations,
} from '../../support/hardening/grpc-raw';
import { fdSummary, peakRssBytes, settle, snapshot } from '../../support/hardening/process-probe';
import { StubNix } from '../../support/hardening/stub-nix';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';
import { T } from '../../../src/reapi/protos';

/**
 * Hostile input through the real proxy process, in front of a fake upstream
 * whose CAS holds the hostile Actions, Commands and trees, with a stand-in Nix
 * that reports every store path missing and records every argument it is
 * given. Each case states the exact gRPC status (or the finished Operation's
 * ExecuteResponse.status) and that the message names the problem. Memory is
 * the proxy's peak RSS, checked once all cases ran; time is bounded by the
 * test timeouts only.
 */

interface LookalikeCase {
  name: string;
  text?: string;
  hex?: string;
  paths: string[];
}

const CORPUS = join(__dirname, '..', '..', 'corpus', 'hostile');
const LOOKALIKES = (
  JSON.parse(readFileSync(join(CORPUS, 'store-path-strings.json'), 'utf8')) as { cases: LookalikeCase[] }
).cases;
const BAD_MESSAGES = (
  JSON.parse(readFileSync(join(CORPUS, 'protobuf-messages.json'), 'utf8')) as {
    cases: Array<{ name: string; hex: string }>;
  }
).cases;

/**
 * Peak resident memory of the proxy over the whole file. Measured: ~85 MB
 * idle, ~370 MB after the 1,000,000-node tree (the default limits.treeNodes
 * is what bounds it), everything else adds little.
 */
const PEAK_RSS_LIMIT = 600 * 1024 * 1024;
const SENTINEL = '/tmp/nix-reapi-proxy-pwned';

let fake: FakeUpstream;
let proxy: ProxyProcess;
let client: grpc.Client;
let work: string;
let nix: StubNix;
let baseline: ReturnType<typeof snapshot>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'hostile-input-'));
  mkdirSync(join(work, 'store'));
  nix = new StubNix(join(work, 'nix-bin'));
  nix.set('nix-store', 'invalid');
  nix.set('nix', 'invalid');
  fake = new FakeUpstream({ separateInstances: false });
  const started = await fake.start();
  proxy = await startProxy(
    ['--upstream', started.url, '--shared-store', join(work, 'store'), '--nix-bin-dir', nix.dir],
    {
      env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' },
    },
  );
  client = rawClient(proxy.endpoint, undefined, { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  // Open every pooled upstream connection (used round-robin), then take the reference counts.
  for (let i = 0; i < 4; i++)
    expect((await execute(client, executeRequest(plainAction(`warm-up-${i}`)))).code).toBe(Code.OK);
  baseline = snapshot(proxy.pid);
});

afterAll(async () => {
  client?.close();
  await proxy?.stop();
  await fake?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

function put(data: Uint8Array): Digest {
  return fake.putBlob(data);
}

function actionWith(command: Buffer, root: Digest = emptyDirectory(fake)): Digest {
  return put(actionBlob(put(command), root));
}

function plainAction(salt: string): Digest {
  return actionWith(commandBlob(['/bin/true', salt]));
}

const bytesOf = (c: LookalikeCase): Buffer =>
  c.hex !== undefined ? Buffer.from(c.hex, 'hex') : Buffer.from(c.text!, 'utf8');
/** Protobuf string fields must be UTF-8; the corpus's raw-byte cases go into file contents only. */
const isText = (c: LookalikeCase): boolean => c.hex === undefined;

async function expectStatus(action: Digest | Buffer, code: number, message: RegExp): Promise<void> {
  const request = Buffer.isBuffer(action) ? action : executeRequest(action);
  const outcome = await execute(client, request);
  expect({ code: outcome.code, details: outcome.details }).toMatchObject({
    code,
    details: expect.stringMatching(message),
  });
}

async function expectMissingPaths(action: Digest, paths: readonly string[]): Promise<void> {
  const outcome = await execute(client, executeRequest(action));
  expect(outcome.code).toBe(Code.OK);
  expect(outcome.response?.code).toBe(Code.FAILED_PRECONDITION);
  expect(new Set(outcome.response?.subjects)).toEqual(new Set(paths));
  expect(outcome.response?.message).toContain(paths[0]);
}

async function expectForwarded(action: Digest): Promise<void> {
  const before = fake.calls(PATHS.Execute).length;
  const outcome = await execute(client, executeRequest(action));
  expect({ code: outcome.code, details: outcome.details }).toEqual({ code: Code.OK, details: 'OK' });
  expect(outcome.response?.code ?? 0).toBe(Code.OK);
  expect(fake.calls(PATHS.Execute).length).toBe(before + 1);
}

describe('digests and messages that are not what they claim', () => {
  it('an action digest the CAS does not have: FAILED_PRECONDITION with a MISSING violation for it', async () => {
    const missing = sha256Digest(Buffer.from('never uploaded'));
    const outcome = await execute(client, executeRequest(missing));
    expect(outcome.code).toBe(Code.FAILED_PRECONDITION);
    expect(trailerViolations(outcome.trailers)).toContainEqual({
      type: 'MISSING',
      subject: `blobs/${missing.hash}/${missing.sizeBytes}`,
    });
  });

  it.each([
    ['a hash that is not hex', { hash: 'z'.repeat(64), sizeBytes: 3 }, Code.INVALID_ARGUMENT, /action_digest.*hex/],
    [
      'a hash of no digest function length',
      { hash: 'a'.repeat(63), sizeBytes: 3 },
      Code.INVALID_ARGUMENT,
      /matches no digest function/,
    ],
    [
      'a path-traversal hash',
      { hash: '../../etc/passwd', sizeBytes: 3 },
      Code.INVALID_ARGUMENT,
      /action digest hash|action_digest/,
    ],
    ['a size of 2^53', { hash: 'a'.repeat(64), sizeBytes: 2 ** 53 }, Code.INVALID_ARGUMENT, /size_bytes/],
    ['a size of 1 TiB', { hash: 'a'.repeat(64), sizeBytes: 2 ** 40 }, Code.RESOURCE_EXHAUSTED, /max_message_bytes/],
    ['no digest at all', undefined, Code.INVALID_ARGUMENT, /action_digest is missing/],
  ])('an action digest with %s: the field and the problem are named', async (_name, digest, code, message) => {
    const request = Buffer.from(T.ExecuteRequest.encode({ actionDigest: digest }).finish());
    await expectStatus(request, code, message);
  });

  it('an ExecuteRequest that does not decode: INVALID_ARGUMENT', async () => {
    await expectStatus(Buffer.from('0affffffff0f', 'hex'), Code.INVALID_ARGUMENT, /ExecuteRequest does not decode/);
  });

  it.each(BAD_MESSAGES.map((c) => [c.name, c.hex]))(
    'an Action blob that is not a message (%s): INVALID_ARGUMENT naming the Action',
    async (_name, hex) => {
      await expectStatus(put(Buffer.from(hex, 'hex')), Code.INVALID_ARGUMENT, /Action/);
    },
  );

  it('an Action blob of a million nested group starts: INVALID_ARGUMENT, the proxy keeps serving', async () => {
    await expectStatus(put(nestedGroups(1_000_000)), Code.INVALID_ARGUMENT, /Action/);
  });

  it.each([
    ['a Command', () => put(commandBlob(['/bin/sh', '-c', 'true']))],
    ['a Directory', () => put(directoryBlob({ files: [{ name: 'a', digest: sha256Digest(Buffer.from('a')) }] }))],
    ['the empty blob', () => put(Buffer.alloc(0))],
  ])('%s given as the Action: INVALID_ARGUMENT naming the Action field', async (_name, make) => {
    await expectStatus(make(), Code.INVALID_ARGUMENT, /Action\.(command_digest|input_root_digest)|not a valid Action/);
  });

  it.each(BAD_MESSAGES.map((c) => [c.name, c.hex]))(
    'a Command blob that is not a message (%s): INVALID_ARGUMENT naming the Command',
    async (_name, hex) => {
      const action = put(actionBlob(put(Buffer.from(hex, 'hex')), emptyDirectory(fake)));
      await expectStatus(action, Code.INVALID_ARGUMENT, /not a valid Command message \(Command/);
    },
  );

  it.each([
    [
      'invalid UTF-8 in an argument',
      commandBlob([Buffer.from([0x2f, 0xff, 0xfe])]),
      /Command\.arguments: string at byte 0 is not valid UTF-8/,
    ],
    [
      'invalid UTF-8 in an environment variable',
      commandBlob([], [['PATH', Buffer.from([0xc3, 0x28])]]),
      /Command\.environment_variables\.value: string .* not valid UTF-8/,
    ],
    [
      'an argument sent as a varint',
      Buffer.from('0801', 'hex'),
      /Command\.arguments: wire type 0 at byte 0 where 2 is expected/,
    ],
    [
      'an argument whose length runs past the end',
      Buffer.from('0a05616263', 'hex'),
      /Command\.arguments: value at byte 0 runs past the end/,
    ],
  ])(
    'a Command with %s: INVALID_ARGUMENT naming the field (a lenient decoder would read something else)',
    async (_name, blob, message) => {
      await expectStatus(actionWith(blob), Code.INVALID_ARGUMENT, message);
    },
  );

  it.each(BAD_MESSAGES.map((c) => [c.name, c.hex]))(
    'an input root that is not a Directory (%s): INVALID_ARGUMENT naming the directory',
    async (_name, hex) => {
      const action = put(actionBlob(put(commandBlob(['/bin/true'])), put(Buffer.from(hex, 'hex'))));
      await expectStatus(action, Code.INVALID_ARGUMENT, /input root|input directory|digest of/);
    },
  );

  it.each([
    ['a path traversal', '../../etc/passwd'],
    ['our prefix without a UUID, and a newline', 'operations/nix-reapi-proxy/not-a-uuid\n'],
    ['a NUL', '\u0000'],
    // Longer names make the upstream's own NOT_FOUND message too large for its trailers.
    ['4,000 characters', 'x'.repeat(4000)],
  ])('a WaitExecution for a name with %s: NOT_FOUND from the upstream', async (_what, name) => {
    const answer = await serverStream(
      client,
      WAIT_EXECUTION,
      Buffer.from(T.WaitExecutionRequest.encode({ name }).finish()),
      { deadlineMs: 10_000 },
    );
    expect(answer.code).toBe(Code.NOT_FOUND);
  });
});

describe('sizes far beyond a real action', () => {
  it('a Command with 100,000 arguments and no store paths is forwarded unchanged', async () => {
    const args = Array.from({ length: 100_000 }, (_, i) => `--flag-${i}=value`);
    await expectForwarded(actionWith(commandBlob(args)));
  });

  it('a Command with 100,000 arguments, 1,000 of them naming one store path: FAILED_PRECONDITION naming it', async () => {
    const path = fakeStorePath(1, 'toolchain', 100);
    const args = Array.from({ length: 100_000 }, (_, i) => (i % 100 === 0 ? `${path}/bin/cc` : `-D${i}`));
    await expectMissingPaths(actionWith(commandBlob(args)), [path]);
  });

  it('a Command naming 20,000 distinct store paths: RESOURCE_EXHAUSTED naming limits.storePathsPerAction', async () => {
    await expectStatus(
      actionWith(commandBlob(distinctPaths(20_000, 0, 101).split(' '))),
      Code.RESOURCE_EXHAUSTED,
      /10000 distinct Nix store paths.*limits\.storePathsPerAction/,
    );
  });

  it('an input file naming 20,000 distinct store paths: RESOURCE_EXHAUSTED naming limits.storePathsPerAction', async () => {
    const file = put(Buffer.from(distinctPaths(20_000, 0, 102)));
    const root = put(directoryBlob({ files: [{ name: 'paths.txt', digest: file }] }));
    await expectStatus(
      actionWith(commandBlob(['/bin/true']), root),
      Code.RESOURCE_EXHAUSTED,
      /limits\.storePathsPerAction/,
    );
  });

  it('an environment variable with a 1,000,000-character name naming 500 store paths: the answer names them, its size stays bounded', async () => {
    const paths = distinctPaths(500, 0, 103).split(' ');
    const outcome = await execute(
      client,
      executeRequest(actionWith(commandBlob(['/bin/true'], [['N'.repeat(1_000_000), paths.join(' ')]]))),
    );
    expect(outcome.code).toBe(Code.OK);
    expect(outcome.response?.code).toBe(Code.FAILED_PRECONDITION);
    // The store side reports the first 100 of them.
    expect(outcome.response?.subjects).toHaveLength(100);
    expect(paths).toEqual(expect.arrayContaining(outcome.response!.subjects));
    expect(outcome.response?.message).toMatch(/\(referenced by environment variable N+\.\.\.\)/);
    expect(outcome.response!.message.length).toBeLessThan(10_000);
    expect(outcome.messages[outcome.messages.length - 1]!.length).toBeLessThan(1024 * 1024);
  });

  it('a Command larger than the message limit: RESOURCE_EXHAUSTED naming max_message_bytes', async () => {
    await expectStatus(
      actionWith(commandBlob([prefixFlood(5 * 1024 * 1024)])),
      Code.RESOURCE_EXHAUSTED,
      /the Command blob .* is 5242885 bytes, more than the proxy's limit of 4194304 \(max_message_bytes\)/,
    );
  });

  it('an input tree 10,000 levels deep: RESOURCE_EXHAUSTED naming limits.treeDepth', async () => {
    await expectStatus(
      actionWith(commandBlob(['/bin/true']), deepTree(fake, 10_000)),
      Code.RESOURCE_EXHAUSTED,
      /deeper than 256 .*limits\.treeDepth/,
    );
  });

  it('an input tree of 1,000,000 files in 1,000 directories: RESOURCE_EXHAUSTED naming limits.treeNodes', async () => {
    await expectStatus(
      actionWith(commandBlob(['/bin/true']), wideTree(fake, 1000, 1000)),
      Code.RESOURCE_EXHAUSTED,
      /more than 1000000 nodes.*limits\.treeNodes/,
    );
  });

  it('a directory of 100,000 entries (larger than the message limit): RESOURCE_EXHAUSTED naming max_message_bytes', async () => {
    const file = put(Buffer.from('x'));
    const root = put(
      directoryBlob({ files: Array.from({ length: 100_000 }, (_, i) => ({ name: `file-number-${i}`, digest: file })) }),
    );
    await expectStatus(
      actionWith(commandBlob(['/bin/true']), root),
      Code.RESOURCE_EXHAUSTED,
      /input directory the input root \(blob .*\) is \d+ bytes, more than the proxy's limit of 4194304 \(max_message_bytes\)/,
    );
  });

  it('a Merkle zip bomb (2^64 files in 65 blobs): RESOURCE_EXHAUSTED naming limits.treeNodes, counted without expanding', async () => {
    await expectStatus(
      actionWith(commandBlob(['/bin/true']), zipBomb(fake, 64)),
      Code.RESOURCE_EXHAUSTED,
      /limits\.treeNodes/,
    );
  });

  it('a zip bomb as wide as it is deep (200 levels of 10 references each): RESOURCE_EXHAUSTED', async () => {
    await expectStatus(
      actionWith(commandBlob(['/bin/true']), zipBomb(fake, 200, 10)),
      Code.RESOURCE_EXHAUSTED,
      /limits\.treeNodes/,
    );
  });

  it.each([
    ['nothing but /nix/store/ prefixes', () => prefixFlood(4_000_000)],
    ['prefixes each followed by a hash and a name one character too long', () => nearMissFlood(4_000_000)],
  ])('a 4,000,000-byte argument of %s: no store path found, forwarded', async (_name, make) => {
    await expectForwarded(actionWith(commandBlob([make()])));
  });

  it.each([
    ['nothing but /nix/store/ prefixes', () => prefixFlood(1024 * 1024)],
    ['near-miss store paths', () => nearMissFlood(1024 * 1024)],
  ])('a 1 MiB input file of %s (scanned whole): no store path found, forwarded', async (_name, make) => {
    const root = put(directoryBlob({ files: [{ name: 'flood', digest: put(make()) }] }));
    await expectForwarded(actionWith(commandBlob(['/bin/true']), root));
  });
});

describe('strings that look like store paths, with injection attempts (test/corpus/hostile/store-path-strings.json)', () => {
  it.each(LOOKALIKES.map((c) => [c.name, c]))('%s', async (_name, c) => {
    const bytes = bytesOf(c);
    const file = put(Buffer.concat([Buffer.from('#!/bin/sh\n'), bytes, Buffer.from('\n')]));
    const root = put(
      directoryBlob({
        files: [{ name: isText(c) ? bytes : 'script', digest: file }],
        symlinks: isText(c) ? [{ name: 'link', target: bytes }] : [],
      }),
    );
    const action = actionWith(
      commandBlob(isText(c) ? ['/bin/sh', bytes] : ['/bin/sh'], isText(c) ? [['HOSTILE', bytes]] : []),
      root,
    );
    if (c.paths.length === 0) await expectForwarded(action);
    else await expectMissingPaths(action, c.paths);
  });

  it('Nix was only ever given whole, strict store paths as arguments, and nothing ran the injected commands', () => {
    const seen = nix
      .calls()
      .flat()
      .filter((a) => a.startsWith('/nix/store'));
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.filter((a) => !STORE_PATH_RE.test(a))).toEqual([]);
    expect(existsSync(SENTINEL)).toBe(false);
  });
});

describe('afterwards', () => {
  it('the proxy serves a normal action, its peak memory stayed bounded, and it holds no extra descriptors or processes', async () => {
    await expectForwarded(plainAction('after-hostile'));
    const peak = peakRssBytes(proxy.pid);
    expect(peak).toBeLessThan(PEAK_RSS_LIMIT);
    const after = await settle(
      () => snapshot(proxy.pid),
      (s) => s.fds <= baseline.fds && s.children.length === 0,
    );
    expect({ fds: after.fds, kinds: fdSummary(after.fdTargets), children: after.children }).toEqual({
      fds: expect.any(Number),
      kinds: expect.any(Object),
      children: [],
    });
    expect(
      after.fds,
      JSON.stringify({ before: fdSummary(baseline.fdTargets), after: fdSummary(after.fdTargets) }),
    ).toBeLessThanOrEqual(baseline.fds);
  });
});
