import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config/config';
import type { RunningProxy } from '../../../src/main';
import { Code } from '../../../src/reapi/grpc-status';
import { FakeUpstream, MSG, PATHS, encode, type StartedFake } from '../../support/fake-upstream';
import { requestMetadataBytes } from './proto-bytes';
import { startPassthroughProxy } from './proxy-rig';
import { newClient, unary, type Answer } from './raw-calls';
import { makeTestPki, type TestPki } from './test-certs';

/**
 * TLS on both sides of the proxy: a TLS listener (optionally requiring client
 * certificates signed by a given CA) and a grpcs:// upstream (optionally with
 * a client certificate of the proxy's own). Certificates are made per run.
 */

const REQUEST_METADATA = 'build.bazel.remote.execution.v2.requestmetadata-bin';

let pki: TestPki;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(() => {
  pki = makeTestPki();
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  pki?.remove();
});

async function fakeUpstream(tls?: { clientCa?: boolean }): Promise<{ fake: FakeUpstream; started: StartedFake }> {
  const fake = new FakeUpstream(
    tls
      ? { tls: { cert: pki.pem.serverCert, key: pki.pem.serverKey, ...(tls.clientCa ? { clientCa: pki.pem.ca } : {}) } }
      : {},
  );
  const started = await fake.start();
  cleanups.push(() => started.stop());
  return { fake, started };
}

async function proxyFor(upstream: string, overrides: Partial<Config>): Promise<RunningProxy> {
  const proxy = await startPassthroughProxy(upstream, overrides);
  cleanups.push(() => proxy.close(100));
  return proxy;
}

function client(endpoint: string, credentials: grpc.ChannelCredentials): grpc.Client {
  const c = newClient(endpoint, credentials);
  cleanups.push(() => c.close());
  return c;
}

/** A FindMissingBlobs carrying requestmetadata-bin; resolves with the answer and what the upstream saw. */
async function findMissing(c: grpc.Client, fake: FakeUpstream): Promise<{ answer: Answer }> {
  const tag = randomUUID();
  const md = new grpc.Metadata();
  md.set('x-test-tag', tag);
  const requestMetadata = requestMetadataBytes({ toolName: 'bazel', actionId: tag });
  md.set(REQUEST_METADATA, requestMetadata);
  const answer = await unary(c, PATHS.FindMissingBlobs, encode(MSG.FindMissingBlobsRequest, { instanceName: 'tls' }), {
    metadata: md,
    deadline: Date.now() + 20_000,
  });
  if (answer.code !== Code.OK) return { answer };
  const seen = await fake.waitForCall(PATHS.FindMissingBlobs, (r) => r.metadata.get('x-test-tag')[0] === tag);
  expect(seen.metadata.get(REQUEST_METADATA)).toEqual([requestMetadata]);
  return { answer };
}

const trusting = () => grpc.credentials.createSsl(pki.pem.ca);
const withClientCert = () => grpc.credentials.createSsl(pki.pem.ca, pki.pem.clientKey, pki.pem.clientCert);
const withRogueCert = () => grpc.credentials.createSsl(pki.pem.ca, pki.pem.rogueClientKey, pki.pem.rogueClientCert);

describe('TLS listener', () => {
  let fake: FakeUpstream;
  let proxy: RunningProxy;

  beforeAll(async () => {
    const up = await fakeUpstream();
    fake = up.fake;
    proxy = await proxyFor(up.started.url, { tls: { cert: pki.files.serverCert, key: pki.files.serverKey } });
  });

  it('a client that trusts the CA gets through to a plaintext upstream, metadata intact', async () => {
    const { answer } = await findMissing(client(proxy.endpoint, trusting()), fake);
    expect(answer.code, answer.details).toBe(Code.OK);
  });

  it('a plaintext client is refused', async () => {
    const { answer } = await findMissing(client(proxy.endpoint, grpc.credentials.createInsecure()), fake);
    expect(answer.code).toBe(Code.UNAVAILABLE);
  });

  it('a client that does not trust the CA is refused', async () => {
    const { answer } = await findMissing(client(proxy.endpoint, grpc.credentials.createSsl()), fake);
    expect(answer.code).toBe(Code.UNAVAILABLE);
  });
});

describe('TLS listener requiring client certificates (mTLS)', () => {
  let fake: FakeUpstream;
  let proxy: RunningProxy;

  beforeAll(async () => {
    const up = await fakeUpstream();
    fake = up.fake;
    proxy = await proxyFor(up.started.url, {
      tls: { cert: pki.files.serverCert, key: pki.files.serverKey, clientCa: pki.files.ca },
    });
  });

  it('a client certificate signed by the CA is accepted', async () => {
    const { answer } = await findMissing(client(proxy.endpoint, withClientCert()), fake);
    expect(answer.code, answer.details).toBe(Code.OK);
  });

  it('no client certificate: refused', async () => {
    const { answer } = await findMissing(client(proxy.endpoint, trusting()), fake);
    expect(answer.code).toBe(Code.UNAVAILABLE);
  });

  it('a client certificate signed by another CA: refused', async () => {
    const { answer } = await findMissing(client(proxy.endpoint, withRogueCert()), fake);
    expect(answer.code).toBe(Code.UNAVAILABLE);
  });

  it('the proxy keeps serving good clients after refusing others', async () => {
    const { answer } = await findMissing(client(proxy.endpoint, withClientCert()), fake);
    expect(answer.code).toBe(Code.OK);
  });
});

describe('grpcs:// upstream', () => {
  it('with the upstream’s CA configured: calls and metadata pass', async () => {
    const { fake, started } = await fakeUpstream({});
    expect(started.url).toMatch(/^grpcs:/);
    const proxy = await proxyFor(started.url, { upstreamTls: { ca: pki.files.ca } });
    const { answer } = await findMissing(client(proxy.endpoint, grpc.credentials.createInsecure()), fake);
    expect(answer.code, answer.details).toBe(Code.OK);
  });

  it('without the CA (system roots only): UNAVAILABLE naming the upstream', async () => {
    const { fake, started } = await fakeUpstream({});
    const proxy = await proxyFor(started.url, {});
    const { answer } = await findMissing(client(proxy.endpoint, grpc.credentials.createInsecure()), fake);
    expect(answer.code).toBe(Code.UNAVAILABLE);
    expect(answer.details).toContain(started.address);
  });

  it('requiring a client certificate: the proxy’s own certificate is accepted', async () => {
    const { fake, started } = await fakeUpstream({ clientCa: true });
    const proxy = await proxyFor(started.url, {
      upstreamTls: { ca: pki.files.ca, cert: pki.files.clientCert, key: pki.files.clientKey },
    });
    const { answer } = await findMissing(client(proxy.endpoint, grpc.credentials.createInsecure()), fake);
    expect(answer.code, answer.details).toBe(Code.OK);
  });

  it('requiring a client certificate the proxy does not have: an error naming the upstream', async () => {
    const { fake, started } = await fakeUpstream({ clientCa: true });
    const proxy = await proxyFor(started.url, { upstreamTls: { ca: pki.files.ca } });
    const { answer } = await findMissing(client(proxy.endpoint, grpc.credentials.createInsecure()), fake);
    expect(answer.code).toBe(Code.UNAVAILABLE);
    expect(answer.details).toContain(started.address);
  });

  it('TLS on both sides at once, with client certificates on both', async () => {
    const { fake, started } = await fakeUpstream({ clientCa: true });
    const proxy = await proxyFor(started.url, {
      tls: { cert: pki.files.serverCert, key: pki.files.serverKey, clientCa: pki.files.ca },
      upstreamTls: { ca: pki.files.ca, cert: pki.files.clientCert, key: pki.files.clientKey },
    });
    const { answer } = await findMissing(client(proxy.endpoint, withClientCert()), fake);
    expect(answer.code, answer.details).toBe(Code.OK);
  });
});
