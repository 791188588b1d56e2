import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { collectActionReferences, type References } from '../../../src/execute/action-references';
import { forwardableMetadata } from '../../../src/execute/client-metadata';
import { DigestFunction, resolveDigestFunction, toBlobDigest, type BlobDigest } from '../../../src/execute/digests';
import { operationHead } from '../../../src/execute/operation-messages';
import { createWalkMemo, TreeWalker, type TreeWalkLimits } from '../../../src/execute/tree-walker';
import { ProxyError } from '../../../src/errors';
import { findStorePaths } from '../../../src/nix/reference-scanner';
import { isStorePath, NIXBASE32_ALPHABET } from '../../../src/nix/store-path';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { FakeCas } from '../execute/fixtures';

/**
 * Properties of what the Execute path decodes from clients: digests, the
 * store paths of an Action and Command, the input tree walk (against a
 * naive recursive oracle, limits included), Operation heads from the
 * upstream and the metadata passed on with CAS reads.
 */

const storePathArb = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...NIXBASE32_ALPHABET), minLength: 32, maxLength: 32 }),
    fc.constantFrom('gcc', 'bash-5.2', 'x', 'py3.11'),
  )
  .map(([h, n]) => `/nix/store/${h}-${n}`);
/** Text that often holds store paths, sub-paths and near-misses. */
const textArb = fc
  .array(
    fc.oneof(
      storePathArb,
      storePathArb.map((p) => `${p}/bin/x`),
      fc.constantFrom('/nix/store/', ' ', ';', '\n', '$(', '..'),
      fc.string({ maxLength: 6 }),
    ),
    { maxLength: 5 },
  )
  .map((parts) => parts.join(''));

describe('digests', () => {
  it('a client digest is either valid (lower-case hex, safe non-negative size) or INVALID_ARGUMENT', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 130 }),
          fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF/.'), minLength: 60, maxLength: 70 }),
        ),
        fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 25 }), fc.constant(null), fc.bigInt().map(String)),
        fc.constantFrom(0, 1, 2, 3, 5, 6, 8, 9, 42),
        (hash, sizeBytes, fn) => {
          try {
            const d = toBlobDigest({ hash, sizeBytes: sizeBytes as number }, fn, 'field');
            expect(d.hash).toMatch(/^[0-9a-f]+$/);
            expect(Number.isSafeInteger(d.sizeBytes) && d.sizeBytes >= 0).toBe(true);
          } catch (err) {
            expect(err).toBeInstanceOf(ProxyError);
            expect((err as ProxyError).code).toBe(Code.INVALID_ARGUMENT);
            expect((err as ProxyError).message.length).toBeLessThan(400);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('the digest function is a known one or INVALID_ARGUMENT', () => {
    fc.assert(
      fc.property(fc.integer({ min: -5, max: 100 }), fc.string({ maxLength: 200 }), (requested, hash) => {
        try {
          expect(Object.values(DigestFunction)).toContain(resolveDigestFunction(requested, hash));
        } catch (err) {
          expect((err as ProxyError).code).toBe(Code.INVALID_ARGUMENT);
        }
      }),
    );
  });
});

describe('Action and Command references', () => {
  const propArb = fc.record({ name: fc.option(textArb), value: fc.option(textArb) });
  it('finds exactly the store paths in arguments, environment values, working directory and platform properties, within the limit', () => {
    fc.assert(
      fc.property(
        fc.record({
          arguments: fc.array(textArb, { maxLength: 5 }),
          environmentVariables: fc.array(propArb, { maxLength: 3 }),
          workingDirectory: fc.option(textArb),
          platform: fc.record({ properties: fc.array(propArb, { maxLength: 3 }) }),
        }),
        fc.record({ platform: fc.option(fc.record({ properties: fc.array(propArb, { maxLength: 3 }) })) }),
        fc.integer({ min: 1, max: 12 }),
        (command, action, max) => {
          const texts = [
            ...command.arguments,
            ...command.environmentVariables.map((e) => e.value ?? ''),
            command.workingDirectory ?? '',
            ...command.platform.properties.flatMap((p) => [p.name ?? '', p.value ?? '']),
            ...(action.platform?.properties ?? []).flatMap((p) => [p.name ?? '', p.value ?? '']),
          ];
          const expected = new Set(texts.flatMap((t) => findStorePaths(t)));
          const into: References = new Map();
          try {
            collectActionReferences(action, command, into, max);
          } catch (err) {
            expect((err as ProxyError).code).toBe(Code.RESOURCE_EXHAUSTED);
            expect(expected.size).toBeGreaterThan(max);
            return;
          }
          expect(new Set(into.keys())).toEqual(expected);
          for (const p of into.keys()) expect(isStorePath(p)).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

interface TreeSpec {
  files: Array<{ name: string; content: string }>;
  dirs: Array<{ name: string; child: TreeSpec }>;
  symlinks: Array<{ name: string; target: string }>;
}

/** Trees up to `depth` levels below the root, at most two subdirectories each (so at most 31 directories). */
function treeArb(depth: number): fc.Arbitrary<TreeSpec> {
  return fc.record({
    files: fc.array(fc.record({ name: textArb, content: fc.oneof(textArb, fc.constant('')) }), { maxLength: 3 }),
    dirs:
      depth === 0
        ? fc.constant([])
        : fc.array(fc.record({ name: fc.string({ maxLength: 4 }), child: treeArb(depth - 1) }), { maxLength: 2 }),
    symlinks: fc.array(fc.record({ name: fc.string({ maxLength: 4 }), target: textArb }), { maxLength: 2 }),
  });
}

/** The obvious recursive reading of a tree: every path in every name, target and file, nodes per reference, height. */
function oracle(t: TreeSpec): { paths: Set<string>; nodes: number; height: number } {
  const paths = new Set<string>();
  const add = (s: string): void => findStorePaths(s).forEach((p) => paths.add(p));
  let nodes = 1 + t.files.length + t.symlinks.length;
  let height = 0;
  for (const f of t.files) {
    add(f.name);
    add(f.content);
  }
  for (const s of t.symlinks) {
    add(s.name);
    add(s.target);
  }
  for (const d of t.dirs) {
    add(d.name);
    const sub = oracle(d.child);
    sub.paths.forEach((p) => paths.add(p));
    nodes += sub.nodes;
    height = Math.max(height, sub.height + 1);
  }
  return { paths, nodes, height };
}

function store(cas: FakeCas, t: TreeSpec): BlobDigest {
  return cas.dir({
    files: t.files.map((f) => ({ name: f.name, digest: cas.put(f.content) })),
    dirs: t.dirs.map((d) => ({ name: d.name, digest: store(cas, d.child) })),
    symlinks: t.symlinks,
  });
}

const LIMITS: TreeWalkLimits = {
  treeNodes: 1_000_000,
  treeDepth: 256,
  storePathsPerAction: 10_000,
  scanFileBytes: 1024 * 1024,
  scanTotalBytes: 64 * 1024 * 1024,
  maxDirectoryBytes: 4 * 1024 * 1024,
};

describe('input tree walk', () => {
  it('finds what the naive recursive reading finds, counts the same nodes, and refuses exactly the trees over the limits', async () => {
    await fc.assert(
      fc.asyncProperty(
        treeArb(4),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        async (tree, treeNodes, treeDepth, warm) => {
          const cas = new FakeCas();
          const root = store(cas, tree);
          const walker = new TreeWalker(createWalkMemo(1000));
          const expected = oracle(tree);
          const options = {
            fetch: cas.fetch,
            digestFunction: DigestFunction.SHA256,
            signal: new AbortController().signal,
          };
          const limits = { ...LIMITS, treeNodes, treeDepth };
          // A first walk fills the memo (when it succeeds): the second, served from it, must judge the same.
          if (warm) await walker.walk(root, { ...options, limits }).catch(() => undefined);
          const over = expected.nodes > treeNodes || expected.height > treeDepth;
          try {
            const result = await walker.walk(root, { ...options, limits });
            expect(over).toBe(false);
            expect(new Set(result.references.keys())).toEqual(expected.paths);
            expect(result.nodes).toBe(expected.nodes);
            expect(result.height).toBe(expected.height);
          } catch (err) {
            if (!(err instanceof ProxyError)) throw err;
            expect(over).toBe(true);
            expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
            expect(['TREE_TOO_LARGE', 'TREE_TOO_DEEP']).toContain(err.reason);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('arbitrary bytes as a directory: a result or INVALID_ARGUMENT / FAILED_PRECONDITION, never another error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
        const cas = new FakeCas();
        const root = cas.put(bytes);
        try {
          await new TreeWalker(createWalkMemo(10)).walk(root, {
            fetch: cas.fetch,
            digestFunction: DigestFunction.SHA256,
            signal: new AbortController().signal,
            limits: LIMITS,
          });
        } catch (err) {
          expect(err).toBeInstanceOf(ProxyError);
          expect([Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION]).toContain((err as ProxyError).code);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('upstream Operation heads and forwarded metadata', () => {
  it('reads name and done of any Operation, and nothing from bytes that are not one', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), fc.boolean(), fc.uint8Array({ maxLength: 40 }), (name, done, junk) => {
        const bytes = Buffer.from(
          T.Operation.encode({ name, done, metadata: { type_url: 'x', value: junk } }).finish(),
        );
        expect(operationHead(bytes)).toEqual({ name, done });
        const head = operationHead(junk);
        if (head !== undefined) expect(typeof head.name).toBe('string');
      }),
    );
  });

  it('never passes on pseudo-headers, grpc- headers or transport headers, whatever the client sent', () => {
    const keyArb = fc.oneof(
      fc.constantFrom(
        ':path',
        'grpc-timeout',
        'GRPC-Encoding',
        'te',
        'content-type',
        'user-agent',
        'authorization',
        'x-bin',
        'requestmetadata-bin',
      ),
      fc.string({ maxLength: 10 }),
    );
    fc.assert(
      fc.property(
        fc.dictionary(
          keyArb,
          fc.oneof(fc.string({ maxLength: 20 }), fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 })),
        ),
        (metadata) => {
          for (const [key, value] of forwardableMetadata(metadata)) {
            expect(
              key.startsWith(':') || key.startsWith('grpc-') || ['te', 'content-type', 'user-agent'].includes(key),
            ).toBe(false);
            if (key.endsWith('-bin')) expect(Buffer.isBuffer(value)).toBe(true);
          }
        },
      ),
    );
  });
});
