import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameSizeGuard } from '../../../src/rpc/frame-size-guard';

function frame(length: number): Buffer {
  const out = Buffer.alloc(5 + length, 0xab);
  out[0] = 0;
  out.writeUInt32BE(length, 1);
  return out;
}

/** Feeds `bytes` to a fresh guard in pieces cut at `cuts`; returns the first non -1 answer, or -1. */
function feed(limit: number, bytes: Buffer, cuts: number[]): number {
  const guard = new FrameSizeGuard(limit);
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    if (p <= prev) continue;
    const r = guard.check(bytes.subarray(prev, p));
    if (r >= 0) return r;
    prev = p;
  }
  return -1;
}

describe('FrameSizeGuard', () => {
  const cases: Array<{ name: string; frames: number[]; limit: number; cuts: number[]; expected: number }> = [
    { name: 'one small frame in one chunk', frames: [10], limit: 100, cuts: [], expected: -1 },
    { name: 'frame exactly at the limit', frames: [100], limit: 100, cuts: [], expected: -1 },
    { name: 'frame one byte over the limit', frames: [101], limit: 100, cuts: [], expected: 101 },
    { name: 'prefix split after 1 byte', frames: [200], limit: 100, cuts: [1], expected: 200 },
    { name: 'prefix split after 4 bytes', frames: [200], limit: 100, cuts: [4], expected: 200 },
    { name: 'prefix split byte by byte', frames: [200], limit: 100, cuts: [1, 2, 3, 4], expected: 200 },
    { name: 'second frame too large, same chunk', frames: [10, 300], limit: 100, cuts: [], expected: 300 },
    { name: 'second frame prefix split across chunks', frames: [10, 300], limit: 100, cuts: [17], expected: 300 },
    {
      name: 'many small frames, chunks mid-payload',
      frames: [50, 50, 50, 0, 50],
      limit: 100,
      cuts: [7, 60, 111, 170],
      expected: -1,
    },
    { name: 'empty frames', frames: [0, 0, 0], limit: 0, cuts: [2, 5, 9], expected: -1 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(feed(c.limit, Buffer.concat(c.frames.map(frame)), c.cuts)).toBe(c.expected);
    });
  }

  it('finds the first oversized frame however the stream is cut into chunks', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 64 }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 64 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (lengths, limit, cuts) => {
          const expected = lengths.find((l) => l > limit) ?? -1;
          // Bytes after the first oversized frame's prefix are never looked at, so stop the stream there.
          const upTo = expected >= 0 ? lengths.indexOf(expected) : lengths.length - 1;
          const bytes = Buffer.concat(lengths.slice(0, upTo + 1).map(frame));
          expect(feed(limit, bytes, cuts)).toBe(expected);
        },
      ),
    );
  });
});
