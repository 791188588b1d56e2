import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../src/reapi/grpc-status';
import { actionBlob, commandBlob, emptyDirectory, type Digest } from '../../corpus/hostile/generate';
import { FakeUpstream, PATHS } from '../../support/fake-upstream';
import { execute, executeRequest, rawClient } from '../../support/hardening/grpc-raw';
import { childPids, settle } from '../../support/hardening/process-probe';
import { buildPaths, makeChrootStore, nixAvailable, run, validIn } from '../../support/nix-fixtures';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * Store faults on real Nix stores: the shared store's disk filling up (a
 * chroot store on a small tmpfs), the proxy killed (SIGKILL, with its Nix
 * processes) in the middle of a copy and a new proxy realising again, and two
 * proxy replicas realising the same closure into one store at once. In each
 * case nothing half-copied is ever valid, and the next Execute gets a complete
 * path. Skipped without Nix; the tmpfs case also without the right to mount.
 */

const canRun = nixAvailable();
const CLIENT_DEADLINE_MS = 120_000;

let work: string;
let fake: FakeUpstream;
let upstream: string;
const proxies: ProxyProcess[] = [];
const clients: grpc.Client[] = [];
const hostPaths: string[] = [];

beforeAll(async () => {
  if (!canRun) return;
  work = await mkdtemp(join(tmpdir(), 'faults-real-nix-'));
  fake = new FakeUpstream({ separateInstances: false });
  upstream = (await fake.start()).url;
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const p of proxies) await p.stop(1000);
  await fake?.stop();
  if (work) {
    for (const dir of mounted) spawnSync('umount', ['-l', dir]);
    await rm(work, { recursive: true, force: true });
  }
  // The large paths this file built in the host store are no use to anyone afterwards.
  if (hostPaths.length > 0) spawnSync('nix-store', ['--delete', ...hostPaths], { stdio: 'ignore', timeout: 60_000 });
});

const mounted: string[] = [];

async function proxyFor(store: string, extra: string[] = []): Promise<{ proxy: ProxyProcess; client: grpc.Client }> {
  const proxy = await startProxy(
    [
      '--upstream',
      upstream,
      '--shared-store',
      store,
      '--substituter',
      'local',
      '--no-require-sigs',
      '--cache-validity-ttl',
      '1ms',
      ...extra,
    ],
    { env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info' } },
  );
  const client = rawClient(proxy.endpoint);
  proxies.push(proxy);
  clients.push(client);
  return { proxy, client };
}

function actionFor(paths: readonly string[], salt: string): Digest {
  const command = fake.putBlob(commandBlob(['/bin/sh', '-c', paths.map((p) => `${p}/bin/run`).join(' && '), salt]));
  return fake.putBlob(actionBlob(command, emptyDirectory(fake)));
}

/** A store path holding one file of `megabytes` MiB of zeros, built in the host store. */
async function bigPath(megabytes: number): Promise<string> {
  const salt = Math.random().toString(36).slice(2);
  const file = join(work, `big-${salt}.nix`);
  writeFileSync(
    file,
    `derivation { name = "big-${salt}"; system = builtins.currentSystem; builder = "/bin/sh";
       args = [ "-c" "/bin/mkdir $out && /bin/dd if=/dev/zero of=$out/blob bs=1048576 count=${megabytes} 2>/dev/null" ]; }`,
  );
  const drv = (await run('nix-instantiate', [file])).trim();
  const out = (await run('nix-store', ['--realise', drv])).trim();
  hostPaths.push(out);
  return out;
}

function verifies(store: string, path: string): boolean {
  return (
    spawnSync('nix-store', ['--store', store, '--verify-path', path], { stdio: 'ignore', timeout: 60_000 }).status === 0
  );
}

function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = join(work, 'mount-probe');
  mkdirSync(probe, { recursive: true });
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'ignore' }).status === 0;
  if (ok) spawnSync('umount', [probe]);
  return ok;
}

async function executeOk(client: grpc.Client, action: Digest): Promise<void> {
  const outcome = await execute(client, executeRequest(action), { deadlineMs: CLIENT_DEADLINE_MS });
  expect({ code: outcome.code, details: outcome.details, response: outcome.response?.code }).toEqual({
    code: Code.OK,
    details: 'OK',
    response: Code.OK,
  });
}

describe.skipIf(!canRun)('real stores', () => {
  it("the shared store's disk fills up: UNAVAILABLE naming the full disk, nothing half-copied is valid; with room again the next Execute copies it whole", async (ctx) => {
    if (!canMount()) ctx.skip();
    const dir = join(work, 'small-disk');
    mkdirSync(dir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', dir]);
    mounted.push(dir);
    const store = await makeChrootStore(join(dir, 'store'));
    const path = await bigPath(16);
    const { proxy, client } = await proxyFor(store, ['--limits-realise-retries', '0']);
    const action = actionFor([path], 'disk-full');

    const full = await execute(client, executeRequest(action), { deadlineMs: CLIENT_DEADLINE_MS });
    expect({ code: full.code, details: full.details }).toEqual({
      code: Code.UNAVAILABLE,
      details: expect.stringMatching(/shared Nix store .* cannot be written: .*No space left on device/),
    });
    expect(await validIn(store, [path])).toEqual(new Set());
    expect(fake.calls(PATHS.Execute).some((c) => c.requests[0]?.equals(executeRequest(action)))).toBe(false);

    execFileSync('mount', ['-o', 'remount,size=64m', dir]);
    await executeOk(client, action);
    expect(await validIn(store, [path])).toEqual(new Set([path]));
    expect(verifies(store, path)).toBe(true);
    await proxy.stop();
  });

  it('the proxy is killed with its Nix processes in the middle of a copy: the half-copied path is not valid, and a new proxy copies it whole', async () => {
    const store = await makeChrootStore(join(work, 'killed'));
    const path = await bigPath(160);
    const target = join(store, 'nix', 'store', basename(path));
    const first = await proxyFor(store);
    const action = actionFor([path], 'killed');
    const running = execute(first.client, executeRequest(action), { deadlineMs: CLIENT_DEADLINE_MS });

    // Wait for the copy to start writing into the store, then kill the proxy and the copy (a machine going down).
    const copying = await settle(
      () => existsSync(target),
      (present) => present,
      60_000,
    );
    expect(copying).toBe(true);
    const nixGroups = childPids(first.proxy.pid);
    process.kill(first.proxy.pid, 'SIGKILL');
    for (const pid of nixGroups) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Already finished.
      }
    }
    expect((await running).code).toBe(Code.UNAVAILABLE);
    expect(await validIn(store, [path])).toEqual(new Set());

    const second = await proxyFor(store);
    await executeOk(second.client, action);
    expect(await validIn(store, [path])).toEqual(new Set([path]));
    expect(verifies(store, path)).toBe(true);
    expect(readFileSync(join(target, 'blob')).length).toBe(160 * 1024 * 1024);
    expect(
      await settle(
        () => childPids(second.proxy.pid),
        (c) => c.length === 0,
      ),
    ).toEqual([]);
    await second.proxy.stop();
  });

  it('two proxy replicas realise the same closure into one store at once: both actions run, the closure is valid', async () => {
    const store = await makeChrootStore(join(work, 'replicas'));
    const spec = Array.from({ length: 30 }, (_, i) => ({
      name: `p${i}`,
      deps: i > 0 ? [`p${i - 1}`] : [],
      files: { 'bin/run': `#!/bin/sh\necho ${i}\n` },
      executable: ['bin/run'],
    }));
    const built = await buildPaths(spec);
    const top = built.p29!;
    const all = Object.values(built);
    const a = await proxyFor(store);
    const b = await proxyFor(store);
    const actionA = actionFor([top], 'replica-a');
    const actionB = actionFor([top, built.p15!], 'replica-b');
    await Promise.all([
      executeOk(a.client, actionA),
      executeOk(b.client, actionB),
      executeOk(a.client, actionB),
      executeOk(b.client, actionA),
    ]);
    expect(await validIn(store, all)).toEqual(new Set(all));
    for (const p of [top, built.p0!]) expect(verifies(store, p)).toBe(true);
    for (const r of [a, b])
      expect(
        await settle(
          () => childPids(r.proxy.pid),
          (c) => c.length === 0,
        ),
      ).toEqual([]);
    await a.proxy.stop();
    await b.proxy.stop();
  });
});
