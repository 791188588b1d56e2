import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { startProxy, type RunningProxy } from '../../../src/main';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { checkHealth } from '../../../src/server/health-check-client';
import { testLogger } from '../../support/test-logger';
import { RawClient, startRawServer, type RawServer } from './raw-grpc';
import { httpGet, scrape, scrapeUntil, valueOf, type Sample } from './prometheus-text';
import { typed } from '../../support/config-values';

/**
 * A build's worth of REAPI calls through the proxy (with metrics on), in the
 * order Bazel makes them per action, then a scrape: every call is counted
 * once under its service, method and final status, and timed.
 */

const V2 = 'build.bazel.remote.execution.v2';
const PATHS = {
  capabilities: `/${V2}.Capabilities/GetCapabilities`,
  getActionResult: `/${V2}.ActionCache/GetActionResult`,
  findMissing: `/${V2}.ContentAddressableStorage/FindMissingBlobs`,
  write: '/google.bytestream.ByteStream/Write',
  execute: `/${V2}.Execution/Execute`,
  read: '/google.bytestream.ByteStream/Read',
};
const ACTIONS = 3;
const P = 'nix_reapi_proxy_';

let upstream: RawServer;
let proxy: RunningProxy;
let client: RawClient;

beforeAll(async () => {
  const doneOperation = Buffer.from(T.Operation.encode({ name: 'operations/1', done: true }).finish());
  upstream = await startRawServer({
    [PATHS.capabilities]: { kind: 'unary', handle: () => Buffer.from(T.ServerCapabilities.encode({}).finish()) },
    [PATHS.getActionResult]: {
      kind: 'unary',
      handle: () => ({ code: Code.NOT_FOUND, details: 'no result', metadata: undefined as never }),
    },
    [PATHS.findMissing]: { kind: 'unary', handle: () => Buffer.alloc(0) },
    [PATHS.write]: { kind: 'clientStream', handle: () => Buffer.alloc(0) },
    [PATHS.execute]: {
      kind: 'serverStream',
      handle: () => [Buffer.from(T.Operation.encode({ name: 'operations/1' }).finish()), doneOperation],
    },
    [PATHS.read]: {
      kind: 'serverStream',
      handle: () => [Buffer.from(T.ReadResponse.encode({ data: Buffer.from('output') }).finish())],
    },
  });
  const config: Config = {
    ...structuredClone(DEFAULTS),
    ...typed({ listen: '127.0.0.1:0', metricsListen: '127.0.0.1:0', upstream: `grpc://127.0.0.1:${upstream.port}` }),
  };
  proxy = await startProxy(config, testLogger());
  client = new RawClient(proxy.endpoint);
});

afterAll(async () => {
  client?.close();
  await proxy?.close(1000);
  await upstream?.stop();
});

const calls = (s: Sample[], path: string, code: string) => {
  const [, service, method] = /^\/(.*)\/(.*)$/.exec(path)!;
  return valueOf(s, `${P}calls_total`, { service: service!, method: method!, code });
};
const timed = (s: Sample[], path: string) => {
  const [, service, method] = /^\/(.*)\/(.*)$/.exec(path)!;
  return valueOf(s, `${P}call_duration_seconds_count`, { service: service!, method: method! });
};

describe('metrics after a proxied build', () => {
  it('serves /metrics on its own listener, separate from the gRPC port', () => {
    expect(proxy.metricsEndpoint).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(proxy.metricsEndpoint).not.toBe(proxy.endpoint);
  });

  it('counts each call once by service, method and status, and times it', async () => {
    const before = await scrape(proxy.metricsEndpoint!);

    expect((await client.unary(PATHS.capabilities)).code).toBe(Code.OK);
    for (let i = 0; i < ACTIONS; i++) {
      expect((await client.unary(PATHS.getActionResult)).code).toBe(Code.NOT_FOUND);
      expect((await client.unary(PATHS.findMissing)).code).toBe(Code.OK);
      expect((await client.clientStream(PATHS.write, [Buffer.from('input')])).code).toBe(Code.OK);
      const execute = await client.serverStream(PATHS.execute);
      expect(execute.code).toBe(Code.OK);
      expect(execute.responses).toHaveLength(2);
      expect((await client.serverStream(PATHS.read)).code).toBe(Code.OK);
    }
    expect((await client.unary('/acme.Secret/Method')).code).toBe(Code.UNIMPLEMENTED);
    expect((await checkHealth({ address: proxy.endpoint, timeoutMs: 5000 })).exitCode).toBe(0);
    expect(upstream.received.filter((p) => p === PATHS.execute)).toHaveLength(ACTIONS);

    const delta = (after: Sample[], f: (s: Sample[]) => number) => f(after) - f(before);
    const expected: Array<[string, string, number]> = [
      [PATHS.capabilities, 'OK', 1],
      [PATHS.getActionResult, 'NOT_FOUND', ACTIONS],
      [PATHS.findMissing, 'OK', ACTIONS],
      [PATHS.write, 'OK', ACTIONS],
      [PATHS.execute, 'OK', ACTIONS],
      [PATHS.read, 'OK', ACTIONS],
      ['/grpc.health.v1.Health/Check', 'OK', 1],
    ];
    const after = await scrapeUntil(
      proxy.metricsEndpoint!,
      (s) =>
        expected.every(([path, code, n]) => delta(s, (x) => calls(x, path, code)) >= n) &&
        delta(s, (x) => valueOf(x, `${P}calls_total`, { service: 'other', method: 'other', code: 'UNIMPLEMENTED' })) >=
          1,
    );
    for (const [path, code, n] of expected) {
      expect({ path, code, counted: delta(after, (x) => calls(x, path, code)) }).toEqual({ path, code, counted: n });
      expect({ path, timed: delta(after, (x) => timed(x, path)) }).toEqual({ path, timed: n });
    }
    expect(
      delta(after, (x) => valueOf(x, `${P}calls_total`, { service: 'other', method: 'other', code: 'UNIMPLEMENTED' })),
    ).toBe(1);
    // Nothing else moved: no failed Executes, no stray codes.
    expect(delta(after, (x) => calls(x, PATHS.execute, 'UNAVAILABLE'))).toBe(0);
    const totalBefore = before.filter((s) => s.name === `${P}calls_total`).reduce((a, s) => a + s.value, 0);
    const totalAfter = after.filter((s) => s.name === `${P}calls_total`).reduce((a, s) => a + s.value, 0);
    expect(totalAfter - totalBefore).toBe(1 + 5 * ACTIONS + 1 + 1);
  });

  it('exports process metrics and the version', async () => {
    const s = await scrape(proxy.metricsEndpoint!);
    expect(s.some((x) => x.name === 'process_resident_memory_bytes')).toBe(true);
    expect(s.find((x) => x.name === `${P}build_info`)?.labels.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it.each([
    ['/', 'GET', 404],
    ['/metrics/extra', 'GET', 404],
    ['/metrics', 'POST', 405],
    ['/metrics', 'HEAD', 200],
    ['/metrics?name[]=x', 'GET', 200],
  ])('answers %s %s with %i', async (path, method, status) => {
    const r = await httpGet(`http://${proxy.metricsEndpoint}${path}`, method);
    expect(r.status).toBe(status);
    if (method === 'HEAD') expect(r.body).toBe('');
  });
});
