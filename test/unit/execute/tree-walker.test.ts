import { describe, expect, it } from 'vitest';
import { digestKey, DigestFunction, type BlobDigest } from '../../../src/execute/digests';
import { createWalkMemo, TreeWalker, type TreeWalkLimits, type WalkOptions } from '../../../src/execute/tree-walker';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { FakeCas, P, sha256Digest } from './fixtures';

const LIMITS: TreeWalkLimits = {
  treeNodes: 1_000_000,
  treeDepth: 256,
  storePathsPerAction: 10_000,
  scanFileBytes: 1024 * 1024,
  scanTotalBytes: 256 * 1024 * 1024,
  maxDirectoryBytes: 4 * 1024 * 1024,
};

function setup(limits: Partial<TreeWalkLimits> = {}, memoEntries = 10_000) {
  const cas = new FakeCas();
  const walker = new TreeWalker(createWalkMemo(memoEntries));
  const options = (extra: Partial<WalkOptions> = {}): WalkOptions => ({
    fetch: cas.fetch,
    digestFunction: DigestFunction.SHA256,
    limits: { ...LIMITS, ...limits },
    signal: new AbortController().signal,
    ...extra,
  });
  return { cas, walker, options };
}

async function walkError(promise: Promise<unknown>): Promise<ProxyError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ProxyError);
    return err as ProxyError;
  }
  throw new Error('walk did not fail');
}

describe('TreeWalker: what it finds', () => {
  it('finds paths in file contents, symlink targets and names, with where', async () => {
    const { cas, walker, options } = setup();
    const script = cas.file(`#!${P.bash}/bin/sh\nexec ${P.clang}/bin/cc "$@"\n`);
    const plain = cas.file('no store paths in here, only text that is long enough to be scanned at all');
    const lib = cas.dir({ symlinks: [{ name: 'libc.so', target: `${P.glibc}/lib/libc.so.6` }] });
    const root = cas.dir({
      files: [
        { name: 'cc-wrapper', digest: script, executable: true },
        { name: 'README', digest: plain },
      ],
      dirs: [{ name: 'lib', digest: lib }],
      symlinks: [{ name: 'python', target: `${P.python}/bin/python3` }],
    });
    const result = await walker.walk(root, options());
    expect(Object.fromEntries(result.references)).toEqual({
      [P.bash]: 'input file cc-wrapper',
      [P.clang]: 'input file cc-wrapper',
      [P.python]: 'symlink python in .',
      [P.glibc]: 'symlink libc.so in lib',
    });
    // root, 2 files, 1 symlink, lib, its symlink
    expect(result.nodes).toBe(6);
    expect(result.height).toBe(1);
    expect(result.complete).toBe(true);
  });

  it('handles an empty input root', async () => {
    const { cas, walker, options } = setup();
    const root = cas.dir({});
    const result = await walker.walk(root, options());
    expect(result.references.size).toBe(0);
    expect(result.nodes).toBe(1);
  });

  it('does not read files too short to hold a store path', async () => {
    const { cas, walker, options } = setup();
    const tiny = cas.file('x');
    const root = cas.dir({ files: [{ name: 'x', digest: tiny }] });
    await walker.walk(root, options());
    expect(cas.readsOf(tiny)).toBe(0);
  });
});

describe('TreeWalker: memoisation', () => {
  it('reads and scans a subtree shared by many directories once', async () => {
    const { cas, walker, options } = setup();
    const tool = cas.file(`exec ${P.clang}/bin/clang`);
    const shared = cas.dir({ files: [{ name: 'tool', digest: tool }] });
    const parents = Array.from({ length: 20 }, (_, i) =>
      cas.dir({
        dirs: [{ name: 'shared', digest: shared }],
        files: [{ name: `id${i}`, digest: cas.file(`unique file number ${i} with enough text to scan`) }],
      }),
    );
    const root = cas.dir({ dirs: parents.map((digest, i) => ({ name: `p${i}`, digest })) });
    const result = await walker.walk(root, options());
    expect([...result.references.keys()]).toEqual([P.clang]);
    expect(cas.readsOf(shared)).toBe(1);
    expect(cas.readsOf(tool)).toBe(1);
    // root + 20 parents (each: itself, a file, shared dir with its file)
    expect(result.nodes).toBe(1 + 20 * 4);
    expect(result.stats.directoriesFetched).toBe(1 + 20 + 1);
    // One round per level, plus the files of the last level.
    expect(result.stats.rounds).toBe(4);
  });

  it('walks a tree seen before with zero reads', async () => {
    const { cas, walker, options } = setup();
    const tool = cas.file(`exec ${P.clang}/bin/clang`);
    const root = cas.dir({ dirs: [{ name: 'bin', digest: cas.dir({ files: [{ name: 'cc', digest: tool }] }) }] });
    const first = await walker.walk(root, options());
    const callsBefore = cas.calls;
    const second = await walker.walk(root, options());
    expect(cas.calls).toBe(callsBefore);
    expect([...second.references.keys()]).toEqual([P.clang]);
    expect(second.nodes).toBe(first.nodes);
    expect(second.height).toBe(first.height);
    expect(second.stats.memoHits).toBe(1);
  });

  it('reads only the new parts of a tree that shares subtrees with one seen before', async () => {
    const { cas, walker, options } = setup();
    const tool = cas.file(`exec ${P.clang}/bin/clang`);
    const toolchain = cas.dir({ files: [{ name: 'cc', digest: tool }] });
    const rootA = cas.dir({ dirs: [{ name: 'tc', digest: toolchain }] });
    await walker.walk(rootA, options());
    const src = cas.file(`#include "${P.zlib}/include/zlib.h" and some more text`);
    const rootB = cas.dir({ dirs: [{ name: 'tc', digest: toolchain }], files: [{ name: 'main.c', digest: src }] });
    const result = await walker.walk(rootB, options());
    expect(cas.readsOf(toolchain)).toBe(1);
    expect(cas.readsOf(tool)).toBe(1);
    expect(Object.fromEntries(result.references)).toEqual({
      [P.clang]: 'input directory tc',
      [P.zlib]: 'input file main.c',
    });
  });

  it('counts a zip bomb of depth 60 without expanding it and refuses it by treeNodes', async () => {
    const { cas, walker, options } = setup();
    const leafFile = cas.file(`a file that mentions ${P.bash} once`);
    let level = cas.dir({ files: [{ name: 'f', digest: leafFile }] });
    const levels: BlobDigest[] = [level];
    for (let i = 0; i < 60; i++) {
      level = cas.dir({
        dirs: [
          { name: 'a', digest: level },
          { name: 'b', digest: level },
        ],
      });
      levels.push(level);
    }
    const err = await walkError(walker.walk(level, options()));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toContain('limits.treeNodes');
    for (const d of levels) expect(cas.readsOf(d)).toBe(1);
    expect(cas.readsOf(leafFile)).toBe(1);
  });

  it('counts every reference of a shared subtree exactly', async () => {
    const { cas, walker, options } = setup({ treeNodes: Number.MAX_SAFE_INTEGER });
    const leafFile = cas.file(`a file that mentions ${P.bash} once`);
    let level = cas.dir({ files: [{ name: 'f', digest: leafFile }] });
    let expected = 2;
    for (let i = 0; i < 20; i++) {
      level = cas.dir({
        dirs: [
          { name: 'a', digest: level },
          { name: 'b', digest: level },
        ],
        files: [{ name: 'g', digest: leafFile }],
      });
      expected = 1 + 1 + 2 * expected;
    }
    const result = await walker.walk(level, options());
    expect(result.nodes).toBe(expected);
    expect(result.height).toBe(20);
    expect(result.stats.directoriesFetched).toBe(21);
    expect([...result.references.keys()]).toEqual([P.bash]);
  });
});

describe('TreeWalker: limits and errors', () => {
  it('refuses a tree with more nodes than limits.treeNodes', async () => {
    const { cas, walker, options } = setup({ treeNodes: 10 });
    const files = Array.from({ length: 10 }, (_, i) => ({ name: `f${i}`, digest: cas.file(`f${i}`) }));
    const root = cas.dir({ files });
    const err = await walkError(walker.walk(root, options()));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.reason).toBe('TREE_TOO_LARGE');
  });

  it('accepts a tree of exactly limits.treeNodes nodes', async () => {
    const { cas, walker, options } = setup({ treeNodes: 10 });
    const files = Array.from({ length: 9 }, (_, i) => ({ name: `f${i}`, digest: cas.file(`f${i}`) }));
    const result = await walker.walk(cas.dir({ files }), options());
    expect(result.nodes).toBe(10);
  });

  it.each<[string, number, number, boolean]>([
    ['a chain as deep as the limit', 5, 5, true],
    ['a chain one deeper than the limit', 6, 5, false],
  ])('%s', async (_name, depth, limit, ok) => {
    const { cas, walker, options } = setup({ treeDepth: limit });
    let d = cas.dir({});
    for (let i = 0; i < depth; i++) d = cas.dir({ dirs: [{ name: `l${depth - i}`, digest: d }] });
    const walk = walker.walk(d, options());
    if (ok) expect((await walk).height).toBe(depth);
    else {
      const err = await walkError(walk);
      expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
      expect(err.message).toContain('limits.treeDepth');
    }
  });

  it('measures depth along the deepest path even when a subtree is first seen shallow', async () => {
    const { cas, walker, options } = setup({ treeDepth: 4 });
    const sub = cas.dir({ dirs: [{ name: 'x', digest: cas.dir({ dirs: [{ name: 'y', digest: cas.dir({}) }] }) }] }); // height 2
    const deep = cas.dir({ dirs: [{ name: 'd2', digest: cas.dir({ dirs: [{ name: 'sub', digest: sub }] }) }] }); // sub at depth 3
    const root = cas.dir({
      dirs: [
        { name: 'sub', digest: sub },
        { name: 'd1', digest: deep },
      ],
    });
    const err = await walkError(walker.walk(root, options()));
    expect(err.message).toContain('limits.treeDepth');
  });

  it('refuses more store paths than limits.storePathsPerAction', async () => {
    const { cas, walker, options } = setup({ storePathsPerAction: 2 });
    const root = cas.dir({ files: [{ name: 'a', digest: cas.file(`${P.bash} ${P.clang} ${P.glibc}`) }] });
    const err = await walkError(walker.walk(root, options()));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.reason).toBe('TOO_MANY_STORE_PATHS');
  });

  it('refuses more store paths than the limit across files', async () => {
    const { cas, walker, options } = setup({ storePathsPerAction: 2 });
    const root = cas.dir({
      files: [
        { name: 'a', digest: cas.file(`uses ${P.bash} here`) },
        { name: 'b', digest: cas.file(`uses ${P.clang} here`) },
        { name: 'c', digest: cas.file(`uses ${P.glibc} here`) },
      ],
    });
    const err = await walkError(walker.walk(root, options()));
    expect(err.reason).toBe('TOO_MANY_STORE_PATHS');
  });

  it('skips files over limits.scanFileBytes without failing', async () => {
    const { cas, walker, options } = setup({ scanFileBytes: 100 });
    const big = cas.file(`${P.clang} ${'x'.repeat(200)}`);
    const small = cas.file(`uses ${P.bash} here`);
    const root = cas.dir({
      files: [
        { name: 'big', digest: big },
        { name: 'small', digest: small },
      ],
    });
    const result = await walker.walk(root, options());
    expect([...result.references.keys()]).toEqual([P.bash]);
    expect(cas.readsOf(big)).toBe(0);
    expect(result.stats.filesSkippedLarge).toBe(1);
    expect(result.complete).toBe(true);
  });

  it('skips files past limits.scanTotalBytes, reports it, and scans them on a later walk', async () => {
    const { cas, walker, options } = setup({ scanTotalBytes: 120 });
    const a = cas.file(`first ${P.bash} ${'a'.repeat(50)}`);
    const b = cas.file(`second ${P.clang} ${'b'.repeat(50)}`);
    const sub = cas.dir({ files: [{ name: 'b', digest: b }] });
    const root = cas.dir({ files: [{ name: 'a', digest: a }], dirs: [{ name: 'sub', digest: sub }] });
    const first = await walker.walk(root, options());
    expect(first.complete).toBe(false);
    expect(first.stats.filesSkippedBudget).toBe(1);
    expect([...first.references.keys()]).toEqual([P.bash]);
    // The incomplete directories were not memoised; the scanned file was.
    const second = await walker.walk(root, options());
    expect(second.complete).toBe(true);
    expect(new Set(second.references.keys())).toEqual(new Set([P.bash, P.clang]));
    expect(cas.readsOf(a)).toBe(1);
    expect(cas.readsOf(b)).toBe(1);
    expect(cas.readsOf(root)).toBe(2);
  });

  it('names the digest of a directory that does not decode (INVALID_ARGUMENT)', async () => {
    const { cas, walker, options } = setup();
    const garbage = cas.put(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    const root = cas.dir({ dirs: [{ name: 'bad', digest: garbage }] });
    const err = await walkError(walker.walk(root, options()));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain(digestKey(garbage));
    expect(err.message).toContain("'bad'");
  });

  it('refuses a malformed digest inside a directory (INVALID_ARGUMENT)', async () => {
    const { cas, walker, options } = setup();
    const root = cas.dir({ files: [{ name: 'f', digest: { hash: '../../etc', sizeBytes: 3 } }] });
    const err = await walkError(walker.walk(root, options()));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain('input file f');
  });

  it('refuses a directory blob larger than maxDirectoryBytes', async () => {
    const { cas, walker, options } = setup({ maxDirectoryBytes: 10 });
    const root = cas.dir({ files: [{ name: 'a-long-enough-name', digest: sha256Digest(Buffer.from('x')) }] });
    const err = await walkError(walker.walk(root, options()));
    expect(err.reason).toBe('DIRECTORY_TOO_LARGE');
  });

  it('passes on the CAS MISSING error and memoises nothing from the failed walk', async () => {
    const { cas, walker, options } = setup();
    const absent = sha256Digest(Buffer.from(`not uploaded ${P.bash} with enough text`));
    const sub = cas.dir({ files: [{ name: 'x', digest: cas.file(`uses ${P.clang} here`) }] });
    const root = cas.dir({ dirs: [{ name: 'sub', digest: sub }], files: [{ name: 'gone', digest: absent }] });
    const err = await walkError(walker.walk(root, options()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.violations).toEqual([
      expect.objectContaining({ type: 'MISSING', subject: `blobs/${digestKey(absent)}` }),
    ]);
    cas.put(Buffer.from(`not uploaded ${P.bash} with enough text`));
    const result = await walker.walk(root, options());
    expect(new Set(result.references.keys())).toEqual(new Set([P.bash, P.clang]));
    expect(cas.readsOf(sub)).toBe(2);
    expect(cas.readsOf(root)).toBe(2);
  });

  it('stops with the signal reason when aborted', async () => {
    const { cas, walker, options } = setup();
    const root = cas.dir({});
    const controller = new AbortController();
    const reason = new ProxyError(Code.DEADLINE_EXCEEDED, 'PREPARE_TIMEOUT', 'too slow');
    controller.abort(reason);
    const err = await walkError(walker.walk(root, options({ signal: controller.signal })));
    expect(err).toBe(reason);
  });

  it('keeps memo keys apart per digest function', async () => {
    const { cas, walker, options } = setup();
    const root = cas.dir({ files: [{ name: 'a', digest: cas.file(`uses ${P.clang} here`) }] });
    await walker.walk(root, options());
    const calls = cas.calls;
    await walker.walk(root, options({ digestFunction: DigestFunction.BLAKE3 }));
    expect(cas.calls).toBeGreaterThan(calls);
  });
});
