import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClosureUnion, unionNarBytes } from '../../../src/gc/closure-union';
import type { PathInfo } from '../../../src/gc/path-info-json';
import { planPrune, type PlanInput, type RootRecord } from '../../../src/gc/prune-plan';
import { storePath } from '../store/fake-nix';

const DAY = 86_400_000;
const NOW = 100 * DAY;

/**
 * A small world: two toolchains sharing libc, a lone tool, a path that is not valid.
 *   cc (100) -> binutils (200) -> libc (1000);  cc -> libc
 *   python (300) -> libc
 *   jq (50)
 */
const P = {
  libc: storePath('libc'),
  binutils: storePath('binutils'),
  cc: storePath('cc'),
  python: storePath('python'),
  jq: storePath('jq'),
  ghost: storePath('ghost'),
};
const INFO = new Map<string, PathInfo>([
  [P.libc, { narSize: 1000, references: [] }],
  [P.binutils, { narSize: 200, references: [P.libc] }],
  [P.cc, { narSize: 100, references: [P.binutils, P.libc, P.cc] }], // self-reference, as Nix reports some
  [P.python, { narSize: 300, references: [P.libc] }],
  [P.jq, { narSize: 50, references: [] }],
]);
const VALID = new Set([P.libc, P.binutils, P.cc, P.python, P.jq]);

function input(roots: RootRecord[], over: Partial<PlanInput> = {}): PlanInput {
  return { roots, leased: new Set(), valid: VALID, info: INFO, nowMs: NOW, notValidGraceMs: DAY, ...over };
}
const used = (path: string, daysAgo: number): RootRecord => ({ path, lastUsedMs: NOW - daysAgo * DAY });

describe('ClosureUnion', () => {
  it('counts shared dependencies once', () => {
    expect(unionNarBytes([P.cc], INFO)).toBe(1300);
    expect(unionNarBytes([P.cc, P.python], INFO)).toBe(1600);
    expect(unionNarBytes([P.cc, P.python, P.jq, P.cc], INFO)).toBe(1650);
  });

  it('addIfWithin leaves the union unchanged when the root does not fit', () => {
    const u = new ClosureUnion(INFO);
    u.add(P.jq);
    expect(u.addIfWithin(P.cc, 1300)).toBe(false);
    expect(u.narBytes).toBe(50);
    expect(u.has(P.libc)).toBe(false);
    expect(u.addIfWithin(P.cc, 1350)).toBe(true);
    expect(u.narBytes).toBe(1350);
  });

  it('walks deep chains without recursion', () => {
    const info = new Map<string, PathInfo>();
    const chain = Array.from({ length: 20_000 }, (_, i) => storePath(`n${i}`));
    chain.forEach((p, i) => info.set(p, { narSize: 1, references: i + 1 < chain.length ? [chain[i + 1]!] : [] }));
    expect(unionNarBytes([chain[0]!], info)).toBe(20_000);
  });
});

describe('planPrune', () => {
  const cases: Array<{
    name: string;
    in: PlanInput;
    dropped: Array<[string, string]>;
    before: number;
    after: number;
    over?: number;
    keptForLeases?: number;
  }> = [
    {
      name: 'no rules: nothing dropped',
      in: input([used(P.cc, 30), used(P.jq, 1)]),
      dropped: [],
      before: 1350,
      after: 1350,
    },
    {
      name: 'retention drops roots unused for at least unusedForMs',
      in: input([used(P.cc, 30), used(P.python, 14), used(P.jq, 13.9)], { unusedForMs: 14 * DAY }),
      dropped: [
        [P.cc, 'unused'],
        [P.python, 'unused'],
      ],
      before: 1650,
      after: 50,
    },
    {
      name: 'retention 0 drops every root not leased',
      in: input([used(P.cc, 0), used(P.jq, 0)], { unusedForMs: 0, leased: new Set([P.jq]) }),
      dropped: [[P.cc, 'unused']],
      before: 1350,
      after: 50,
      keptForLeases: 1,
    },
    {
      name: 'a leased root is never dropped, however old',
      in: input([used(P.cc, 300)], { unusedForMs: DAY, leased: new Set([P.cc]) }),
      dropped: [],
      before: 1300,
      after: 1300,
      keptForLeases: 1,
    },
    {
      name: 'a root to an invalid path is dropped after the grace, kept before it',
      in: input([used(P.ghost, 2), { path: storePath('young-ghost'), lastUsedMs: NOW - 1000 }]),
      dropped: [[P.ghost, 'not-valid']],
      before: 0,
      after: 0,
    },
    {
      name: 'with retention 0, an invalid root goes at once',
      in: input([{ path: P.ghost, lastUsedMs: NOW }], { unusedForMs: 0 }),
      dropped: [[P.ghost, 'not-valid']],
      before: 0,
      after: 0,
    },
    {
      name: 'budget: least recently used first; a kept root keeps its shared dependency',
      // cc is oldest; dropping it frees binutils and cc (300), libc stays for python.
      in: input([used(P.cc, 3), used(P.python, 2), used(P.jq, 1)], { budgetBytes: 1400 }),
      dropped: [[P.cc, 'over-budget']],
      before: 1650,
      after: 1350,
    },
    {
      name: 'budget: once one root does not fit, every older one goes too',
      // MRU order: jq (50), cc (+1300 = 1350), python (+300 = 1650 > 1400) -> python dropped; nothing older.
      in: input([used(P.python, 3), used(P.cc, 2), used(P.jq, 1)], { budgetBytes: 1400 }),
      dropped: [[P.python, 'over-budget']],
      before: 1650,
      after: 1350,
    },
    {
      name: 'budget: an older small root goes even if it would fit (strict LRU)',
      in: input([used(P.jq, 3), used(P.python, 2), used(P.cc, 1)], { budgetBytes: 1360 }),
      dropped: [
        [P.jq, 'over-budget'],
        [P.python, 'over-budget'],
      ],
      before: 1650,
      after: 1300,
    },
    {
      name: 'budget: leased roots count first and stay even over budget',
      in: input([used(P.cc, 1), used(P.jq, 2)], { budgetBytes: 1000, leased: new Set([P.cc]) }),
      dropped: [[P.jq, 'over-budget']],
      before: 1350,
      after: 1300,
      over: 300,
    },
    {
      name: 'budget after retention: the budget applies to what retention kept',
      in: input([used(P.cc, 20), used(P.python, 2), used(P.jq, 1)], { unusedForMs: 14 * DAY, budgetBytes: 1000 }),
      dropped: [
        [P.cc, 'unused'],
        [P.python, 'over-budget'],
      ],
      before: 1650,
      after: 50,
    },
    {
      name: 'ties in last use are broken by path, deterministically',
      in: input([used(P.jq, 1), used(P.python, 1)], { budgetBytes: 1300 }),
      dropped: [[P.jq < P.python ? P.python : P.jq, 'over-budget']],
      before: 1350,
      after: P.jq < P.python ? 50 : 1300,
    },
  ];

  it.each(cases)('$name', (c) => {
    const plan = planPrune(c.in);
    expect(plan.drops.map((d) => [d.path, d.reason])).toEqual(c.dropped);
    expect(plan.rootedBytesBefore).toBe(c.before);
    expect(plan.rootedBytesAfter).toBe(c.after);
    expect(plan.overBudgetBytes).toBe(c.over ?? 0);
    expect(plan.keptForLeases).toBe(c.keptForLeases ?? 0);
    expect(plan.kept).toBe(c.in.roots.length - c.dropped.length);
  });

  it('properties: leased roots stay, kept unleased roots are the most recent, and the rest fits the budget', () => {
    const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const paths = names.map((n) => storePath(n, 7));
    const arb = fc.record({
      sizes: fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 8, maxLength: 8 }),
      // references only to later paths: a DAG
      refs: fc.array(fc.array(fc.integer({ min: 0, max: 7 }), { maxLength: 3 }), { minLength: 8, maxLength: 8 }),
      rootIdx: fc.uniqueArray(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 8 }),
      ages: fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 8, maxLength: 8 }),
      leasedIdx: fc.uniqueArray(fc.integer({ min: 0, max: 7 }), { maxLength: 3 }),
      budget: fc.integer({ min: 0, max: 5000 }),
    });
    fc.assert(
      fc.property(arb, (w) => {
        const info = new Map<string, PathInfo>(
          paths.map((p, i) => [
            p,
            { narSize: w.sizes[i]!, references: w.refs[i]!.filter((j) => j > i).map((j) => paths[j]!) },
          ]),
        );
        const roots = w.rootIdx.map((i) => ({ path: paths[i]!, lastUsedMs: NOW - w.ages[i]! * DAY }));
        const leased = new Set(w.leasedIdx.map((i) => paths[i]!));
        const plan = planPrune({
          roots,
          leased,
          valid: new Set(paths),
          info,
          nowMs: NOW,
          notValidGraceMs: DAY,
          budgetBytes: w.budget,
        });
        const dropped = new Set(plan.drops.map((d) => d.path));
        for (const p of leased) expect(dropped.has(p)).toBe(false);
        const kept = roots.filter((r) => !dropped.has(r.path));
        expect(plan.rootedBytesAfter).toBe(
          unionNarBytes(
            kept.map((r) => r.path),
            info,
          ),
        );
        if (plan.overBudgetBytes === 0) expect(plan.rootedBytesAfter).toBeLessThanOrEqual(w.budget);
        // Every dropped root was used no later than every kept unleased root.
        for (const d of plan.drops) {
          for (const k of kept) if (!leased.has(k.path)) expect(d.lastUsedMs).toBeLessThanOrEqual(k.lastUsedMs);
        }
        // Maximality: the most recent dropped root would not have fit.
        const latest = [...plan.drops].sort((a, b) => b.lastUsedMs - a.lastUsedMs)[0];
        if (latest) {
          const more = unionNarBytes([...kept.map((r) => r.path), latest.path], info);
          expect(more).toBeGreaterThan(w.budget);
        }
      }),
      { numRuns: 300 },
    );
  });
});
