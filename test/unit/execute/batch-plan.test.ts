import { describe, expect, it } from 'vitest';
import { planBatches, responseEntryOverhead, RESPONSE_SLACK_BYTES } from '../../../src/execute/batch-plan';
import type { BlobDigest } from '../../../src/execute/digests';

const d = (i: number, size: number): BlobDigest => ({ hash: i.toString(16).padStart(64, '0'), sizeBytes: size });

describe('planBatches', () => {
  const max = 10_000;
  const budget = max - RESPONSE_SLACK_BYTES;
  const cost = (x: BlobDigest): number => x.sizeBytes + responseEntryOverhead(x);

  it.each<[string, BlobDigest[], number, number]>([
    ['nothing', [], 0, 0],
    ['one small blob', [d(1, 10)], 1, 0],
    ['many small blobs in one batch', Array.from({ length: 20 }, (_, i) => d(i, 100)), 1, 0],
    ['blobs that need two batches', Array.from({ length: 4 }, (_, i) => d(i, 3000)), 2, 0],
    ['a blob bigger than a response goes to ByteStream', [d(1, max), d(2, 10)], 1, 1],
    ['an empty blob still costs its entry', [d(1, 0)], 1, 0],
  ])('%s', (_name, digests, batches, streamed) => {
    const plan = planBatches(digests, max);
    expect(plan.batches).toHaveLength(batches);
    expect(plan.streamed).toHaveLength(streamed);
    for (const batch of plan.batches) expect(batch.reduce((s, x) => s + cost(x), 0)).toBeLessThanOrEqual(budget);
    expect([...plan.batches.flat(), ...plan.streamed].sort((a, b) => a.hash.localeCompare(b.hash))).toEqual(
      [...digests].sort((a, b) => a.hash.localeCompare(b.hash)),
    );
  });

  it('caps the number of digests per batch', () => {
    const plan = planBatches(
      Array.from({ length: 25 }, (_, i) => d(i, 1)),
      1_000_000,
      10,
    );
    expect(plan.batches.map((b) => b.length)).toEqual([10, 10, 5]);
  });
});
