import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors';
import { encodeLease } from '../../../src/gc/lease-file';
import { pruneRoots, type PruneRequest } from '../../../src/gc/prune-roots';
import { formatPruneReport } from '../../../src/gc/prune-report-format';
import { Code } from '../../../src/reapi/grpc-status';
import type { NixInvocation, NixOutcome, NixRunner } from '../../../src/store/nix-command';
import { parseSharedStoreUrl } from '../../../src/store/store-url';
import { testLogger } from '../../support/test-logger';
import { storePath } from '../store/fake-nix';
import { MemoryRootFs } from './memory-root-fs';

const DIR = '/s/nix/var/nix/gcroots/nix-reapi-proxy';
const LEASES = `${DIR}/.leases`;
const DAY = 86_400_000;
const NOW = 1_000 * DAY;
const A = storePath('a');
const B = storePath('b');
const LIB = storePath('lib');

/** Answers validity and path-info queries for a fixed store; `onPathInfo` runs before the answer. */
class FakeStoreRunner implements NixRunner {
  readonly invocations: NixInvocation[] = [];
  onPathInfo?: () => void;
  constructor(
    private readonly valid: Set<string>,
    private readonly info: Record<string, { narSize: number; references: string[] }>,
  ) {}
  async run(inv: NixInvocation): Promise<NixOutcome> {
    this.invocations.push(inv);
    const paths = inv.args.filter((a) => a.startsWith('/nix/store/'));
    const ok = (stdout: string): NixOutcome => ({ exitCode: 0, signal: null, stdout, stderr: '', ms: 0 });
    if (inv.args.includes('--check-validity')) return ok(paths.filter((p) => !this.valid.has(p)).join('\n'));
    if (inv.args[0] === 'path-info') {
      this.onPathInfo?.();
      const out = new Map<string, unknown>();
      const walk = (p: string) => {
        if (out.has(p)) return;
        out.set(p, { path: p, ...this.info[p]! });
        for (const r of this.info[p]!.references) walk(r);
      };
      paths.forEach(walk);
      return ok(JSON.stringify([...out.values()]));
    }
    throw new Error(`unexpected ${inv.program} ${inv.args.join(' ')}`);
  }
}

function setup(rootAges: Record<string, number>) {
  const fs = new MemoryRootFs(() => NOW);
  fs.addDir(LEASES);
  for (const [p, daysAgo] of Object.entries(rootAges)) {
    fs.nodes.set(`${DIR}/${p.slice(11)}`, { kind: 'link', target: p, mtimeMs: NOW - daysAgo * DAY });
  }
  const runner = new FakeStoreRunner(new Set([A, B, LIB]), {
    [A]: { narSize: 100, references: [LIB] },
    [B]: { narSize: 200, references: [LIB] },
    [LIB]: { narSize: 1000, references: [] },
  });
  const parsed = parseSharedStoreUrl('/s');
  if (!parsed.ok) throw new Error(parsed.problem);
  const held = new Set<string>();
  const ctx = {
    rootsDir: DIR,
    store: parsed.store,
    runner,
    fs,
    now: () => NOW,
    logger: testLogger(),
    exists: async () => true,
    heldHere: () => held,
  };
  const req = (over: Partial<PruneRequest> = {}): PruneRequest => ({
    unusedForMs: 14 * DAY,
    dryRun: false,
    notValidGraceMs: DAY,
    signal: new AbortController().signal,
    ...over,
  });
  const writeLease = (replica: string, paths: string[], writtenAtMs = NOW) =>
    fs.nodes.set(`${LEASES}/${replica}.lease.json`, {
      kind: 'file',
      data: encodeLease({ replica, host: 'h', pid: 1, writtenAtMs, ttlMs: 120_000, paths }),
      mtimeMs: writtenAtMs,
    });
  const hasRoot = (p: string) => fs.link(`${DIR}/${p.slice(11)}`) !== undefined;
  return { fs, runner, ctx, req, held, writeLease, hasRoot };
}

describe('pruneRoots', () => {
  it('drops roots unused for longer than the retention and reports sizes with shared paths counted once', async () => {
    const { ctx, req, hasRoot } = setup({ [A]: 20, [B]: 1 });
    const report = await pruneRoots(ctx, req());
    expect(report.dropped.map((d) => [d.path, d.reason])).toEqual([[A, 'unused']]);
    expect(hasRoot(A)).toBe(false);
    expect(hasRoot(B)).toBe(true);
    expect(report).toMatchObject({ rootsBefore: 2, rootsAfter: 1, rootedBytesBefore: 1300, rootedBytesAfter: 1200 });
  });

  it('changes nothing in a dry run but reports what it would drop', async () => {
    const { fs, ctx, req, hasRoot } = setup({ [A]: 20, [B]: 20 });
    const report = await pruneRoots(ctx, req({ dryRun: true }));
    expect(report.dropped).toHaveLength(2);
    expect(report.rootedBytesAfter).toBe(0);
    expect(fs.count('unlink')).toBe(0);
    expect(fs.count('symlink')).toBe(0);
    expect(fs.count('lutimes')).toBe(0);
    expect(hasRoot(A) && hasRoot(B)).toBe(true);
    expect(formatPruneReport(report, NOW)).toContain('would drop 2 of 2 roots');
  });

  it("never drops a path in another replica's live lease or held by this process; stale leases do not count", async () => {
    const { ctx, req, held, writeLease, hasRoot } = setup({ [A]: 20, [B]: 20, [LIB]: 20 });
    writeLease('other', [A]);
    writeLease('crashed', [B], NOW - 10 * 60_000);
    held.add(LIB);
    const report = await pruneRoots(ctx, req());
    expect(report.dropped.map((d) => d.path)).toEqual([B]);
    expect(hasRoot(A) && hasRoot(LIB)).toBe(true);
    expect(report.keptForLeases).toBe(2);
    expect(report.leases).toEqual({ live: 1, stale: 1 });
  });

  it('spares a root leased between planning and unlinking', async () => {
    const { runner, ctx, req, writeLease, hasRoot } = setup({ [A]: 20 });
    runner.onPathInfo = () => writeLease('late', [A]);
    const report = await pruneRoots(ctx, req());
    expect(report.dropped).toEqual([]);
    expect(report.spared).toEqual([{ path: A, why: 'leased' }]);
    expect(hasRoot(A)).toBe(true);
  });

  it('spares a root a replica used (touched) after it was listed', async () => {
    const { fs, runner, ctx, req, hasRoot } = setup({ [A]: 20 });
    runner.onPathInfo = () => {
      fs.link(`${DIR}/${A.slice(11)}`)!.mtimeMs = NOW;
    };
    const report = await pruneRoots(ctx, req());
    expect(report.spared).toEqual([{ path: A, why: 'used-meanwhile' }]);
    expect(hasRoot(A)).toBe(true);
  });

  it('re-creates a root that became leased while it was being unlinked', async () => {
    const { fs, ctx, req, writeLease, hasRoot } = setup({ [A]: 20, [B]: 20 });
    fs.before = (op, path) => {
      if (op === 'unlink' && path.endsWith(A.slice(11))) writeLease('racer', [A]);
    };
    const report = await pruneRoots(ctx, req());
    expect(report.restored).toEqual([A]);
    expect(hasRoot(A)).toBe(true);
    expect(hasRoot(B)).toBe(false);
    expect(report.dropped.map((d) => d.path)).toEqual([B]);
    expect(report.rootedBytesAfter).toBe(1100);
  });

  it('stops when a recent lease file cannot be read: it may protect anything', async () => {
    const { fs, ctx, req, hasRoot } = setup({ [A]: 20 });
    fs.nodes.set(`${LEASES}/junk.lease.json`, { kind: 'file', data: '{"half', mtimeMs: NOW - 1000 });
    const err = await pruneRoots(ctx, req()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).code).toBe(Code.UNAVAILABLE);
    expect((err as ProxyError).message).toContain('junk.lease.json');
    expect(hasRoot(A)).toBe(true);
  });

  it('treats an unreadable lease older than any lease lives as stale, and removes it', async () => {
    const { fs, ctx, req } = setup({ [A]: 20 });
    const junk = `${LEASES}/junk.lease.json`;
    fs.nodes.set(junk, { kind: 'file', data: '{"half', mtimeMs: NOW - 2 * DAY });
    const report = await pruneRoots(ctx, req());
    expect(report.dropped).toHaveLength(1);
    expect(fs.nodes.has(junk)).toBe(false);
  });

  it('removes half-written leases of crashed replicas once they are old, and leaves fresh ones', async () => {
    const { fs, ctx, req } = setup({});
    const old = `${LEASES}/gone.lease.json.tmp`;
    const fresh = `${LEASES}/busy.lease.json.tmp`;
    fs.nodes.set(old, { kind: 'file', data: '{', mtimeMs: NOW - 2 * DAY });
    fs.nodes.set(fresh, { kind: 'file', data: '{', mtimeMs: NOW });
    await pruneRoots(ctx, req());
    expect(fs.nodes.has(old)).toBe(false);
    expect(fs.nodes.has(fresh)).toBe(true);
  });

  it('leaves entries it did not make alone', async () => {
    const { fs, ctx, req } = setup({ [A]: 20 });
    fs.nodes.set(`${DIR}/${B.slice(11)}`, { kind: 'link', target: '/elsewhere', mtimeMs: 0 });
    fs.nodes.set(`${DIR}/README`, { kind: 'file', data: 'x', mtimeMs: 0 });
    const report = await pruneRoots(ctx, req({ unusedForMs: 0 }));
    expect(report.dropped.map((d) => d.path)).toEqual([A]);
    expect(report.foreign).toBe(2);
    expect(fs.nodes.has(`${DIR}/${B.slice(11)}`)).toBe(true);
  });

  it('asks path-info only about valid roots', async () => {
    const ghost = storePath('ghost');
    const { runner, ctx, req } = setup({ [A]: 1, [ghost]: 2 });
    const report = await pruneRoots(ctx, req());
    const pathInfo = runner.invocations.find((i) => i.args[0] === 'path-info')!;
    expect(pathInfo.args).toContain(A);
    expect(pathInfo.args).not.toContain(ghost);
    expect(report.dropped.map((d) => [d.path, d.reason])).toEqual([[ghost, 'not-valid']]);
  });
});
