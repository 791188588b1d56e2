import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../src/reapi/grpc-status';
import { actionBlob, commandBlob, emptyDirectory, fakeStorePath, type Digest } from '../../corpus/hostile/generate';
import { FakeUpstream, MSG, PATHS, encode, sha256Digest } from '../../support/fake-upstream';
import {
  BYTESTREAM_READ,
  FIND_MISSING,
  GET_CAPABILITIES,
  execute,
  executeRequest,
  rawClient,
  serverStream,
  unary,
  type RawAnswer,
} from '../../support/hardening/grpc-raw';
import { waitForLog } from '../../support/hardening/proxy-logs';
import { settle } from '../../support/hardening/process-probe';
import { StubNix } from '../../support/hardening/stub-nix';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';
import { makeTestPki, type TestPki } from '../passthrough/test-certs';

/**
 * Access control at the proxy: bearer tokens from authTokensFile (refused
 * UNAUTHENTICATED without one, the header forwarded unchanged with one,
 * re-read on SIGHUP and on change), client certificates naming the client,
 * per-client limits on realisations (RESOURCE_EXHAUSTED naming the limit and
 * the client), and substituters no client can add to. Nix is the stand-in of
 * stub-nix.ts, so realisations are instant, blocked, or measured as the test
 * needs.
 */

const TOKENS: Record<string, string> = {
  alice: 'alice-0123456789abcdef',
  bob: 'bob-0123456789abcdef00',
  carol: 'carol-0123456789abcdef',
  dave: 'dave-0123456789abcdef0',
  erin: 'erin-0123456789abcdef0',
  grace: 'grace-0123456789abcdef',
};
const FRANK = 'frank-0123456789abcdef';
const DEADLINE_MS = 60_000;

let work: string;
let tokenFile: string;
let storeDir: string;
let cacheUrl: string;
let nix: StubNix;
let fake: FakeUpstream;
let proxy: ProxyProcess;
let client: grpc.Client;

function tokenLines(tokens: Record<string, string>): string {
  return (
    Object.entries(tokens)
      .map(([name, token]) => `${name}:${token}`)
      .join('\n') + '\n'
  );
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'access-control-'));
  storeDir = join(work, 'store');
  mkdirSync(storeDir);
  const cache = join(work, 'cache');
  mkdirSync(cache);
  writeFileSync(join(cache, 'nix-cache-info'), 'StoreDir: /nix/store\n');
  cacheUrl = `file://${cache}`;
  tokenFile = join(work, 'tokens');
  writeFileSync(tokenFile, `# clients of this proxy\n${tokenLines(TOKENS)}`);
  nix = new StubNix(join(work, 'nix-bin'));
  nix.sharedStore = storeDir;
  nix.narSize = 1024;
  fake = new FakeUpstream({ separateInstances: false });
  const up = await fake.start();
  proxy = await startProxy(
    [
      '--upstream',
      up.url,
      '--shared-store',
      storeDir,
      '--substituter',
      cacheUrl,
      '--nix-bin-dir',
      nix.dir,
      '--auth-tokens-file',
      tokenFile,
      '--limits-client-concurrent-realisations',
      '1',
      '--limits-client-realised-bytes-per-hour',
      '1KiB',
    ],
    { env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' } },
  );
  client = rawClient(proxy.endpoint);
});

afterAll(async () => {
  client?.close();
  await proxy?.stop();
  await fake?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const as = (name: keyof typeof TOKENS | 'frank') => ({
  authorization: `Bearer ${name === 'frank' ? FRANK : TOKENS[name]}`,
});

/** An action naming a store path nobody asked for before (the proxy caches validity). */
function actionWithPath(label: string): { action: Digest; path: string } {
  const path = fakeStorePath(Math.floor(Math.random() * 2 ** 40), label);
  const command = fake.putBlob(commandBlob(['/bin/sh', '-c', `${path}/bin/run`]));
  return { action: fake.putBlob(actionBlob(command, emptyDirectory(fake))), path };
}

function run(action: Digest, metadata: Record<string, string> = {}) {
  return execute(client, executeRequest(action), { metadata, deadlineMs: DEADLINE_MS });
}

const findMissing = encode(MSG.FindMissingBlobsRequest, { blobDigests: [sha256Digest(Buffer.from('x'))] });

describe('bearer tokens (authTokensFile)', () => {
  it.each([
    ['without a token', {}, /requires a bearer token: send the header "authorization: Bearer <token>"/],
    [
      'with an unknown token',
      { authorization: 'Bearer not-a-token-of-this-proxy' },
      /does not accept this bearer token: it is not in the proxy's authTokensFile/,
    ],
    ['with another scheme', { authorization: `Basic ${TOKENS.alice}` }, /requires a bearer token/],
  ])(
    '%s: every method is refused UNAUTHENTICATED with a message saying what to send, and nothing reaches the upstream',
    async (_what, metadata, message) => {
      const before = fake.calls().length;
      const { action } = actionWithPath('refused');
      const answers: RawAnswer[] = [
        await run(action, metadata),
        await unary(client, FIND_MISSING, findMissing, { metadata }),
        await unary(client, GET_CAPABILITIES, Buffer.alloc(0), { metadata }),
        await serverStream(
          client,
          BYTESTREAM_READ,
          encode(MSG.ReadRequest, { resourceName: `blobs/${action.hash}/${action.sizeBytes}` }),
          { metadata },
        ),
      ];
      for (const a of answers)
        expect({ code: a.code, details: a.details }).toEqual({
          code: Code.UNAUTHENTICATED,
          details: expect.stringMatching(message),
        });
      expect(fake.calls().length).toBe(before);
    },
  );

  it('with an accepted token: served, and the upstream sees the authorization header unchanged on forwarded calls, the relayed Execute and the CAS reads', async () => {
    nix.setBoth('valid');
    fake.clearCalls();
    const { action } = actionWithPath('accepted');
    const outcome = await run(action, as('alice'));
    expect({ code: outcome.code, response: outcome.response?.code }).toEqual({ code: Code.OK, response: Code.OK });
    expect((await unary(client, FIND_MISSING, findMissing, { metadata: as('alice') })).code).toBe(Code.OK);
    for (const path of [PATHS.Execute, PATHS.BatchReadBlobs, PATHS.FindMissingBlobs]) {
      const calls = fake.calls(path);
      expect(calls.length, path).toBeGreaterThan(0);
      for (const c of calls) expect(c.metadata.get('authorization'), path).toEqual([`Bearer ${TOKENS.alice}`]);
    }
  });

  it('health checks need no token', async () => {
    expect((await unary(client, '/grpc.health.v1.Health/Check', Buffer.alloc(0))).code).toBe(Code.OK);
  });

  it('the file is re-read on SIGHUP and when it changes; a bad file leaves the tokens in force', async () => {
    const withFrank = { ...TOKENS, frank: FRANK } as Record<string, string>;
    delete withFrank.bob;
    writeFileSync(tokenFile, tokenLines(withFrank));
    let from = proxy.logLines().length;
    process.kill(proxy.pid, 'SIGHUP');
    expect(await waitForLog(proxy, (l) => l.msg === 'auth tokens reloaded', from)).toMatchObject({ tokens: 6 });
    expect((await unary(client, FIND_MISSING, findMissing, { metadata: as('bob') })).code).toBe(Code.UNAUTHENTICATED);
    expect((await unary(client, FIND_MISSING, findMissing, { metadata: as('frank') })).code).toBe(Code.OK);

    from = proxy.logLines().length;
    writeFileSync(tokenFile, 'frank:short\n');
    expect(
      await waitForLog(proxy, (l) => l.msg === 'auth tokens not reloaded; the previous tokens stay in force', from),
    ).toMatchObject({
      problem: expect.stringMatching(/line 1: the token is shorter than 16 characters/),
    });
    expect((await unary(client, FIND_MISSING, findMissing, { metadata: as('frank') })).code).toBe(Code.OK);

    from = proxy.logLines().length;
    writeFileSync(tokenFile, tokenLines(TOKENS));
    expect(await waitForLog(proxy, (l) => l.msg === 'auth tokens reloaded', from)).toMatchObject({
      why: 'file changed',
      tokens: 6,
    });
    expect((await unary(client, FIND_MISSING, findMissing, { metadata: as('frank') })).code).toBe(Code.UNAUTHENTICATED);
    expect((await unary(client, FIND_MISSING, findMissing, { metadata: as('bob') })).code).toBe(Code.OK);
  });

  it('a proxy whose token file is bad does not start, and says which line is wrong', async () => {
    const bad = join(work, 'bad-tokens');
    writeFileSync(bad, `ok:${TOKENS.alice}\nci bot:x\n`);
    await expect(startProxy(['--upstream', 'grpc://127.0.0.1:1', '--auth-tokens-file', bad])).rejects.toThrow(
      /authTokensFile .*line 2: expected TOKEN or NAME:TOKEN/,
    );
  });
});

describe('per-client limits', () => {
  it('a client with limits.clientConcurrentRealisations running gets RESOURCE_EXHAUSTED naming it and the limit; other clients are not held back', async () => {
    nix.hold();
    nix.set('nix-store', 'missing-in-shared');
    nix.set('nix', 'wait-release');
    try {
      const copies = () => nix.calls().filter((a) => a[0] === 'copy').length;
      const before = copies();
      const first = run(actionWithPath('carol-1').action, as('carol'));
      await settle(copies, (n) => n > before, 20_000);
      const second = await run(actionWithPath('carol-2').action, as('carol'));
      expect({ code: second.code, details: second.details }).toEqual({
        code: Code.RESOURCE_EXHAUSTED,
        details: expect.stringMatching(
          /client 'carol' already has 1 realisations of Nix store paths running.*limits\.clientConcurrentRealisations = 1/,
        ),
      });
      const other = run(actionWithPath('erin-1').action, as('erin'));
      nix.release();
      expect((await first).code).toBe(Code.OK);
      expect((await other).code).toBe(Code.OK);
    } finally {
      nix.release();
    }
  });

  it('a client past limits.clientRealisedBytesPerHour gets RESOURCE_EXHAUSTED naming it and the limit, for realisations only', async () => {
    nix.set('nix-store', 'missing-in-shared');
    nix.set('nix', 'valid');
    const first = actionWithPath('dave-1');
    const from = proxy.logLines().length;
    expect((await run(first.action, as('dave'))).code).toBe(Code.OK);
    expect(
      await waitForLog(proxy, (l) => l.msg === 'realised bytes counted' && l.client === 'dave', from),
    ).toMatchObject({ bytes: 1024 });
    const second = await run(actionWithPath('dave-2').action, as('dave'));
    expect({ code: second.code, details: second.details }).toEqual({
      code: Code.RESOURCE_EXHAUSTED,
      details: expect.stringMatching(
        /client 'dave' had 1024 bytes of Nix store paths realised in the last hour.*limits\.clientRealisedBytesPerHour = 1024/,
      ),
    });
    // Nothing to realise: not limited (the path is valid now, and remembered so).
    expect((await run(first.action, as('dave'))).code).toBe(Code.OK);
    expect((await run(actionWithPath('grace-1').action, as('grace'))).code).toBe(Code.OK);
  });
});

describe('substituters', () => {
  it('a client cannot make the proxy use a substituter of its choosing (arguments, environment, platform properties)', async () => {
    nix.set('nix-store', 'missing-in-shared');
    nix.set('nix', 'valid');
    const evil = 'https://evil.example/cache';
    const path = fakeStorePath(Math.floor(Math.random() * 2 ** 40), 'wants-a-cache');
    const platform = {
      properties: [
        { name: 'substituters', value: evil },
        { name: 'extra-substituters', value: evil },
        { name: 'nix.conf', value: `substituters = ${evil}` },
      ],
    };
    const command = fake.putMessage('build.bazel.remote.execution.v2.Command', {
      arguments: ['nix-build', '--option', 'substituters', evil, '--substituters', evil, `${path}/bin/x`],
      environmentVariables: [
        { name: 'NIX_CONFIG', value: `substituters = ${evil}\nextra-substituters = ${evil}` },
        { name: 'NIX_SUBSTITUTERS', value: evil },
      ],
      platform,
    });
    const action = fake.putMessage('build.bazel.remote.execution.v2.Action', {
      commandDigest: command,
      inputRootDigest: emptyDirectory(fake),
      platform,
    });
    const callsBefore = new Set(nix.calls().map((c) => c.join('\0')));
    expect((await run(action, as('bob'))).code).toBe(Code.OK);

    const calls = nix.calls().filter((c) => !callsBefore.has(c.join('\0')));
    expect(calls.some((c) => c[0] === 'copy' && c.includes(path))).toBe(true);
    const valueAfter = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
    for (const args of calls) {
      for (const from of valueAfter(args, '--from')) expect(from).toBe(cacheUrl);
      for (const store of valueAfter(args, '--store')) expect([storeDir, cacheUrl]).toContain(store);
      for (const to of valueAfter(args, '--to')) expect(to).toBe(storeDir);
      expect(args.join(' ')).not.toContain('evil');
    }
    for (const env of nix.environments()) {
      expect(env).not.toContain('evil');
      expect(env).toMatch(/^substituters =$/m);
    }
  });
});

describe('client certificates (tls.clientCa)', () => {
  let pki: TestPki;
  let tlsProxy: ProxyProcess;

  beforeAll(async () => {
    pki = makeTestPki();
    tlsProxy = await startProxy(
      [
        '--upstream',
        `grpc://${(await fake.start()).address}`,
        '--shared-store',
        storeDir,
        '--substituter',
        cacheUrl,
        '--nix-bin-dir',
        nix.dir,
        '--tls-cert',
        pki.files.serverCert,
        '--tls-key',
        pki.files.serverKey,
        '--tls-client-ca',
        pki.files.ca,
        '--limits-client-realised-bytes-per-hour',
        '1GiB',
      ],
      { env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' } },
    );
  });

  afterAll(async () => {
    await tlsProxy?.stop();
    pki?.remove();
  });

  const tlsClient = (cert?: { key: Buffer; cert: Buffer }) =>
    rawClient(tlsProxy.endpoint, grpc.credentials.createSsl(pki.pem.ca, cert?.key ?? null, cert?.cert ?? null), {
      'grpc.ssl_target_name_override': 'localhost',
    });

  it.each([
    ['no certificate', undefined],
    ['a certificate from another CA', 'rogue'],
  ] as const)('a client with %s cannot connect (the TLS handshake fails: UNAVAILABLE)', async (_what, which) => {
    const c = tlsClient(which === 'rogue' ? { key: pki.pem.rogueClientKey, cert: pki.pem.rogueClientCert } : undefined);
    try {
      expect((await unary(c, FIND_MISSING, findMissing, { deadlineMs: 10_000 })).code).toBe(Code.UNAVAILABLE);
    } finally {
      c.close();
    }
  });

  it("a client with a certificate is served and is named by its certificate's subject", async () => {
    nix.set('nix-store', 'missing-in-shared');
    nix.set('nix', 'valid');
    const c = tlsClient({ key: pki.pem.clientKey, cert: pki.pem.clientCert });
    try {
      const from = tlsProxy.logLines().length;
      const outcome = await execute(c, executeRequest(actionWithPath('by-cert').action), { deadlineMs: DEADLINE_MS });
      expect(outcome.code).toBe(Code.OK);
      expect(await waitForLog(tlsProxy, (l) => l.msg === 'realised bytes counted', from)).toMatchObject({
        client: 'test client',
      });
    } finally {
      c.close();
    }
  });
});
