import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { startProxy, type RunningProxy } from '../../../src/main';
import { T } from '../../../src/reapi/protos';
import { checkHealth } from '../../../src/server/health-check-client';
import { testLogger } from '../../support/test-logger';
import { startRawServer, type RawServer } from '../metrics/raw-grpc';
import { typed } from '../../support/config-values';

/** `nix-reapi-proxy health`'s check against the situations a probe meets. */

const HEALTH = '/grpc.health.v1.Health/Check';
const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const dir = mkdtempSync(path.join(os.tmpdir(), 'health-check-'));
const cleanups: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
let proxy: RunningProxy;
let upstream: RawServer;

function config(extra: Partial<Config>): Config {
  return {
    ...structuredClone(DEFAULTS),
    ...typed({ listen: '127.0.0.1:0', upstream: `grpc://127.0.0.1:${upstream.port}` }),
    ...extra,
  };
}

/** A port nothing listens on: bound, then released. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

beforeAll(async () => {
  upstream = await startRawServer({});
  cleanups.push(() => upstream.stop());
  proxy = await startProxy(config({}), testLogger());
  cleanups.push(() => proxy.close(500));
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('checkHealth', () => {
  it('exits 0 for a serving proxy', async () => {
    expect(await checkHealth({ address: proxy.endpoint, timeoutMs: 5000 })).toEqual({
      exitCode: 0,
      message: `grpc://${proxy.endpoint}: SERVING`,
    });
  });

  it('asks about one service when told to', async () => {
    const known = await checkHealth({
      address: proxy.endpoint,
      timeoutMs: 5000,
      service: 'build.bazel.remote.execution.v2.Execution',
    });
    expect(known.exitCode).toBe(0);
    const unknown = await checkHealth({ address: proxy.endpoint, timeoutMs: 5000, service: 'acme.Nope' });
    expect(unknown.exitCode).toBe(1);
    expect(unknown.message).toContain("does not know the service 'acme.Nope'");
  });

  it('exits 1 for a server that answers NOT_SERVING', async () => {
    const draining = await startRawServer({
      [HEALTH]: { kind: 'unary', handle: () => Buffer.from(T.HealthCheckResponse.encode({ status: 2 }).finish()) },
    });
    cleanups.push(() => draining.stop());
    const r = await checkHealth({ address: `127.0.0.1:${draining.port}`, timeoutMs: 5000 });
    expect(r.exitCode).toBe(1);
    expect(r.message).toMatch(/NOT_SERVING \(it is shutting down or not ready\)$/);
  });

  it('exits 1 and says so when nothing listens there', async () => {
    const r = await checkHealth({ address: `127.0.0.1:${await deadPort()}`, timeoutMs: 5000 });
    expect(r.exitCode).toBe(1);
    expect(r.message).toContain('cannot reach it');
    expect(r.message).toContain('pass --tls');
  });

  it('exits 1 for a gRPC server without the health service (e.g. the upstream)', async () => {
    const r = await checkHealth({ address: `127.0.0.1:${upstream.port}`, timeoutMs: 5000 });
    expect(r.exitCode).toBe(1);
    expect(r.message).toContain('no grpc.health.v1.Health service');
  });

  it('exits 1 within the timeout when the peer accepts but never answers', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          silent.close(() => r());
          for (const s of sockets) s.destroy();
        }),
    );
    const r = await checkHealth({ address: `127.0.0.1:${(silent.address() as net.AddressInfo).port}`, timeoutMs: 300 });
    expect(r.exitCode).toBe(1);
    expect(r.message).toMatch(/no answer within 300 ms|cannot reach it/);
  });

  it('exits 1 without dialling when a TLS file cannot be read', async () => {
    const missing = path.join(dir, 'missing-ca.pem');
    const r = await checkHealth({ address: proxy.endpoint, timeoutMs: 5000, tls: { ca: missing } });
    expect(r).toEqual({
      exitCode: 1,
      message: `health check of grpcs://${proxy.endpoint} not attempted: cannot read --ca ${missing} (ENOENT)`,
    });
  });

  it('exits 1 when TLS is asked of a plaintext listener', async () => {
    const r = await checkHealth({ address: proxy.endpoint, timeoutMs: 5000, tls: {} });
    expect(r.exitCode).toBe(1);
    expect(r.message).toContain('cannot reach it');
  });

  it.skipIf(!hasOpenssl)('checks a TLS listener with --ca and --server-name', async () => {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=proxy.test',
        '-addext',
        'subjectAltName=DNS:proxy.test',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    expect(existsSync(cert)).toBe(true);
    const tlsProxy = await startProxy(config({ tls: { cert, key } }), testLogger());
    cleanups.push(() => tlsProxy.close(500));
    const ok = await checkHealth({
      address: tlsProxy.endpoint,
      timeoutMs: 5000,
      tls: { ca: cert, serverName: 'proxy.test' },
    });
    expect(ok).toEqual({ exitCode: 0, message: `grpcs://${tlsProxy.endpoint}: SERVING` });
    const wrongName = await checkHealth({
      address: tlsProxy.endpoint,
      timeoutMs: 5000,
      tls: { ca: cert, serverName: 'other.test' },
    });
    expect(wrongName.exitCode).toBe(1);
    const plaintext = await checkHealth({ address: tlsProxy.endpoint, timeoutMs: 5000 });
    expect(plaintext.exitCode).toBe(1);
  });
});
