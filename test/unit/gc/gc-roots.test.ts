import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors';
import { GcRoots, LEASE_TTL_REFRESHES } from '../../../src/gc/gc-roots';
import { decodeLease } from '../../../src/gc/lease-file';
import type { Metrics } from '../../../src/metrics/metrics';
import { NO_METRICS } from '../../../src/metrics/metrics';
import { Code } from '../../../src/reapi/grpc-status';
import { testLogger } from '../../support/test-logger';
import { storePath } from '../store/fake-nix';
import { MemoryRootFs } from './memory-root-fs';

const STORE = '/store';
const DIR = '/store/nix/var/nix/gcroots/nix-reapi-proxy';
const LEASE = `${DIR}/.leases/r1.lease.json`;
const HOUR = 3_600_000;
const LINGER = 300_000;
const REFRESH = 30_000;

function setup(opts: { storeExists?: boolean } = {}) {
  let now = 1_000_000_000_000;
  const fs = new MemoryRootFs(() => now);
  if (opts.storeExists !== false) fs.addDir(STORE);
  const added: number[] = [];
  const metrics: Metrics = { ...NO_METRICS, gcRoots: (c) => added.push(c.added) };
  const roots = new GcRoots({
    dir: DIR,
    mustExist: STORE,
    replica: 'r1',
    host: 'test',
    pid: 1,
    fs,
    now: () => now,
    touchIntervalMs: HOUR,
    lingerMs: LINGER,
    leaseRefreshMs: REFRESH,
    maxHeldPaths: 1000,
    logger: testLogger(),
    metrics,
  });
  return {
    fs,
    roots,
    added,
    advance: (ms: number) => (now += ms),
    now: () => now,
    rootOf: (p: string) => fs.link(`${DIR}/${p.slice('/nix/store/'.length)}`),
    leased: () => {
      const n = fs.nodes.get(LEASE);
      if (n?.kind !== 'file') return undefined;
      const d = decodeLease(n.data);
      if (!d.ok) throw new Error(d.problem);
      return d.lease;
    },
  };
}

const A = storePath('a');
const B = storePath('b');

async function rejection(p: Promise<unknown>): Promise<ProxyError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProxyError);
  return err as ProxyError;
}

describe('GcRoots', () => {
  it('roots each fresh path after writing a lease that names it; the root points at the logical store path', async () => {
    const { fs, roots, rootOf, leased, now, added } = setup();
    await roots.acquire([A, B, A]);
    expect(rootOf(A)).toEqual({ kind: 'link', target: A, mtimeMs: now() });
    expect(rootOf(B)?.target).toBe(B);
    expect(leased()?.paths.sort()).toEqual([A, B].sort());
    expect(leased()?.ttlMs).toBe(REFRESH * LEASE_TTL_REFRESHES);
    const leaseDone = fs.calls.findIndex((c) => c.op === 'rename');
    const firstSymlink = fs.calls.findIndex((c) => c.op === 'symlink');
    expect(leaseDone).toBeGreaterThanOrEqual(0);
    expect(leaseDone).toBeLessThan(firstSymlink);
    expect(added).toEqual([2]);
  });

  it('makes no filesystem call for paths it already holds, in use or lingering', async () => {
    const { fs, roots, advance } = setup();
    const first = await roots.acquire([A, B]);
    const calls = fs.count();
    const second = await roots.acquire([A]);
    second.release();
    first.release();
    advance(LINGER - 1);
    (await roots.acquire([A, B])).release();
    await roots.settled();
    expect(fs.count()).toBe(calls);
  });

  it('records a use on the root at most once per touch interval, also when a path enters again', async () => {
    const { fs, roots, advance, rootOf } = setup();
    (await roots.acquire([A])).release();
    const created = rootOf(A)!.mtimeMs;
    advance(HOUR - 1);
    await roots.refresh(); // the linger is over: A is forgotten, and enters again below
    expect(roots.heldPaths().size).toBe(0);
    (await roots.acquire([A])).release();
    await roots.settled();
    expect(fs.count('lutimes')).toBe(1); // the one at creation
    expect(rootOf(A)!.mtimeMs).toBe(created);
  });

  it('touches a held path in the background once the interval has passed', async () => {
    const { fs, roots, advance, rootOf, now } = setup();
    const held = await roots.acquire([A]); // in use all along, so never forgotten
    advance(HOUR);
    (await roots.acquire([A])).release();
    (await roots.acquire([A])).release();
    await roots.settled();
    expect(fs.count('lutimes')).toBe(2);
    expect(rootOf(A)!.mtimeMs).toBe(now());
    held.release();
  });

  it('keeps a released path for the linger, then forgets it and drops it from the lease', async () => {
    const { roots, advance, leased } = setup();
    (await roots.acquire([A])).release();
    const held = await roots.acquire([B]);
    advance(LINGER - 1);
    await roots.refresh();
    expect(roots.heldPaths()).toEqual(new Set([A, B]));
    advance(1);
    await roots.refresh();
    expect(roots.heldPaths()).toEqual(new Set([B]));
    expect(leased()?.paths).toEqual([B]);
    held.release();
  });

  it('adopts a root another replica made, touching it only when its last use is older than the interval', async () => {
    const { fs, roots, now } = setup();
    fs.addDir(DIR);
    const fileA = `${DIR}/${A.slice(11)}`;
    const fileB = `${DIR}/${B.slice(11)}`;
    fs.nodes.set(fileA, { kind: 'link', target: A, mtimeMs: now() - 10 });
    fs.nodes.set(fileB, { kind: 'link', target: B, mtimeMs: now() - 2 * HOUR });
    await roots.acquire([A, B]);
    expect(fs.link(fileA)!.mtimeMs).toBe(now() - 10);
    expect(fs.link(fileB)!.mtimeMs).toBe(now());
  });

  it('creates one root for concurrent acquires of a fresh path; both resolve only once it exists', async () => {
    const { fs, roots, rootOf } = setup();
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    fs.before = (op) => (op === 'symlink' ? gate : undefined);
    let secondDone = false;
    const first = roots.acquire([A]);
    const second = roots.acquire([A]).then((l) => {
      secondDone = true;
      return l;
    });
    await new Promise((r) => setImmediate(r));
    expect(secondDone).toBe(false);
    open();
    await Promise.all([first, second]);
    expect(fs.count('symlink')).toBe(1);
    expect(rootOf(A)).toBeDefined();
  });

  it('rejects UNAVAILABLE when a root cannot be made, holds nothing, and tries again next time', async () => {
    const { fs, roots, rootOf } = setup();
    fs.failures.push({ op: 'symlink', code: 'EACCES' });
    const err = await rejection(roots.acquire([A]));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.reason).toBe('GC_ROOTS_UNAVAILABLE');
    expect(err.message).toContain('EACCES');
    expect(roots.heldPaths().size).toBe(0);
    fs.failures = [];
    await roots.acquire([A]);
    expect(rootOf(A)).toBeDefined();
  });

  it('makes no root when the lease cannot be written', async () => {
    const { fs, roots } = setup();
    fs.failures.push({ op: 'writeFile', code: 'ENOSPC' });
    const err = await rejection(roots.acquire([A]));
    expect(err.message).toContain('full');
    expect(fs.count('symlink')).toBe(0);
  });

  it('refuses to create the roots directory while the store directory is missing', async () => {
    const { fs, roots } = setup({ storeExists: false });
    const err = await rejection(roots.acquire([A]));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toContain('/store does not exist');
    expect(fs.count('mkdirp')).toBe(0);
  });

  it('re-creates a root that a touch finds gone', async () => {
    const { fs, roots, advance, rootOf, added } = setup();
    const held = await roots.acquire([A]);
    fs.nodes.delete(`${DIR}/${A.slice(11)}`);
    advance(HOUR);
    (await roots.acquire([A])).release();
    await roots.settled();
    expect(rootOf(A)).toBeDefined();
    expect(added).toEqual([1, 1]);
    held.release();
  });

  it('checks every held root again when its lease lapsed, before new acquires proceed', async () => {
    const { fs, roots, advance, rootOf } = setup();
    const held = await roots.acquire([A, B]);
    fs.nodes.delete(`${DIR}/${A.slice(11)}`); // a prune took it while our lease looked stale
    advance(REFRESH * LEASE_TTL_REFRESHES + 1);
    await roots.refresh();
    expect(rootOf(A)).toBeDefined();
    held.release();
  });

  it('ignores strings that are not store paths', async () => {
    const { fs, roots } = setup();
    await roots.acquire(['/nix/store/short', '/etc/passwd', '../x']);
    expect(fs.count()).toBe(0);
    expect(roots.heldPaths().size).toBe(0);
  });

  it('release is idempotent: a double release does not end another holder early', async () => {
    const { roots, advance } = setup();
    const a = await roots.acquire([A]);
    const b = await roots.acquire([A]);
    a.release();
    a.release();
    advance(LINGER * 2);
    await roots.refresh();
    expect(roots.heldPaths()).toEqual(new Set([A]));
    b.release();
  });

  it('close removes the lease file', async () => {
    const { fs, roots } = setup();
    (await roots.acquire([A])).release();
    expect(fs.nodes.has(LEASE)).toBe(true);
    await roots.close();
    expect(fs.nodes.has(LEASE)).toBe(false);
  });
});
