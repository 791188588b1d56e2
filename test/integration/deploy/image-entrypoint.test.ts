import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { T } from '../../../src/reapi/protos';
import { CLI, REPO_ROOT, startProxy, type ProxyProcess } from '../../support/proxy-process';
import { execForm, only, parseDockerfile } from '../../unit/deploy/dockerfile-parse';
import { find, renderKustomization, type Manifest } from '../../unit/deploy/kustomize-lite';
import { scrapeUntil, valueOf } from '../metrics/prometheus-text';
import { RawClient, startRawServer, type RawServer } from '../metrics/raw-grpc';

/**
 * The container, without a container engine: the image's ENTRYPOINT and CMD,
 * with the Buildbarn overlay's ConfigMap as its config file and the
 * Deployment's environment, run here. Only what differs outside the cluster
 * is substituted (as flags, which win over the file): loopback listen
 * addresses, a fake upstream and a local chroot store instead of ssh-ng.
 * Then the image's HEALTHCHECK command, run the same way, must find it healthy.
 */

const run = promisify(execFile);
const IMAGE_APP = '/opt/nix-reapi-proxy';
const CONFIG_DIR = '/etc/nix-reapi-proxy';

const runtime = parseDockerfile(path.join(REPO_ROOT, 'Dockerfile')).stages.at(-1)!;
const overlay = renderKustomization(path.join(REPO_ROOT, 'deploy', 'kubernetes', 'buildbarn'));
const deployment = find(overlay.resources, 'Deployment', 'nix-reapi-proxy');
const container = deployment.spec.template.spec.containers.find((c: Manifest) => c.name === 'proxy');
const configMap = find(overlay.resources, 'ConfigMap', 'nix-reapi-proxy-config');

const dir = mkdtempSync(path.join(os.tmpdir(), 'image-entrypoint-'));
const configDir = path.join(dir, 'etc-nix-reapi-proxy');
const store = path.join(dir, 'shared-store');
/** Image paths to where the same files are here. */
const local = (p: string) =>
  p.replace(IMAGE_APP, REPO_ROOT).replace(CONFIG_DIR, configDir).replace('/home/nix-reapi-proxy', dir);

let upstream: RawServer;
let proxy: ProxyProcess | undefined;

beforeAll(async () => {
  // The ConfigMap mounted at /etc/nix-reapi-proxy, file for file.
  mkdirSync(configDir);
  for (const [name, text] of Object.entries(configMap.data as Record<string, string>))
    writeFileSync(path.join(configDir, name), text);
  mkdirSync(path.join(store, 'nix', 'store'), { recursive: true });
  await run('nix-store', ['--store', store, '--init']);
  upstream = await startRawServer({
    '/build.bazel.remote.execution.v2.Capabilities/GetCapabilities': {
      kind: 'unary',
      handle: () => Buffer.from(T.ServerCapabilities.encode({}).finish()),
    },
  });
});

afterAll(async () => {
  await proxy?.stop(1000);
  await upstream?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function healthcheckCommand(): string[] {
  const ins = only(runtime, 'HEALTHCHECK');
  return execForm({ ...ins, args: ins.args.replace(/^(--\S+\s+)*CMD\s+/, '') }).map(local);
}

describe('the image entrypoint with the Kubernetes config', () => {
  it('runs the CLI this repository builds', () => {
    const entrypoint = execForm(only(runtime, 'ENTRYPOINT'));
    expect(entrypoint[0]).toBe('node');
    expect(local(entrypoint[1]!)).toBe(CLI);
    expect(container.command).toBeUndefined();
  });

  it('starts a proxy that the image HEALTHCHECK finds SERVING, and that counts calls', async () => {
    const args = (container.args as string[]).map(local);
    expect(args).toEqual(execForm(only(runtime, 'CMD')).map(local));
    const env = Object.fromEntries(
      (container.env as Array<{ name: string; value: string }>).map((e) => [e.name, local(e.value)]),
    );
    expect(env.NIX_SSHOPTS).toBe(`-F ${configDir}/ssh_config`);
    proxy = await startProxy(
      [
        ...args,
        '--listen',
        '127.0.0.1:0',
        '--metrics-listen',
        '127.0.0.1:0',
        '--upstream',
        `grpc://127.0.0.1:${upstream.port}`,
        '--shared-store',
        store,
        '--visible-at',
        path.join(store, 'nix', 'store'),
      ],
      { env: { ...env, NIX_REAPI_PROXY_LOG_LEVEL: 'info' } },
    );
    const listening = proxy.logLines().find((l) => l.msg === 'listening')!;
    expect(listening.sharedStore).toBe(store);
    const metrics = String(listening.metrics);
    expect(metrics).toMatch(/^127\.0\.0\.1:\d+$/);

    // HEALTHCHECK derives its address from the config's listen setting
    // (0.0.0.0:8980 in the container); here that setting points at this proxy.
    const [program, ...rest] = healthcheckCommand();
    expect(program).toBe('node');
    const health = await run(process.execPath, rest, {
      env: { ...process.env, NIX_REAPI_PROXY_LISTEN: proxy.endpoint },
    });
    expect(health.stdout.trim()).toBe(`grpc://${proxy.endpoint}: SERVING`);
    // As in `kubectl exec ... health --address`, from docs/deployment.md.
    const byAddress = await run(process.execPath, [CLI, 'health', '--address', proxy.endpoint]);
    expect(byAddress.stdout).toContain('SERVING');

    const client = new RawClient(proxy.endpoint);
    try {
      expect((await client.unary('/build.bazel.remote.execution.v2.Capabilities/GetCapabilities')).code).toBe(0);
    } finally {
      client.close();
    }
    const P = 'nix_reapi_proxy_calls_total';
    const healthChecks = { service: 'grpc.health.v1.Health', method: 'Check', code: 'OK' };
    const capabilities = {
      service: 'build.bazel.remote.execution.v2.Capabilities',
      method: 'GetCapabilities',
      code: 'OK',
    };
    const s = await scrapeUntil(metrics, (x) => valueOf(x, P, healthChecks) >= 2 && valueOf(x, P, capabilities) >= 1);
    expect(valueOf(s, P, healthChecks)).toBe(2);
    expect(valueOf(s, P, capabilities)).toBe(1);
  });

  it('makes the HEALTHCHECK fail once the proxy has stopped', async () => {
    const endpoint = proxy!.endpoint;
    expect(await proxy!.stop(1000)).toBe(0);
    const [, ...rest] = healthcheckCommand();
    const failed = await run(process.execPath, rest, {
      env: { ...process.env, NIX_REAPI_PROXY_LISTEN: endpoint },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('cannot reach it');
  });
});
