import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { WriteAhead, type WriteAheadSlot } from '../../../src/passthrough/write-ahead';

/** A writable with Node's usual 16 KiB mark whose reader takes nothing until `drainAll()`. */
function stalled(): Writable & { drainAll(): void } {
  const pending: Array<() => void> = [];
  const w = new Writable({
    highWaterMark: 16 * 1024,
    write(_chunk, _enc, cb) {
      pending.push(cb);
    },
  });
  return Object.assign(w, {
    drainAll() {
      // Each callback lets the next buffered chunk through; keep going until the buffer is empty.
      while (pending.length > 0) pending.shift()!();
    },
  });
}

const chunk = Buffer.alloc(64 * 1024);
const slot = (): WriteAheadSlot => ({ held: false });

/** Writes until `write` says pause; returns how many chunks went in. */
function fill(ahead: WriteAhead, w: Writable, s: WriteAheadSlot, max = 100): number {
  for (let i = 1; i <= max; i++) if (!ahead.write(w, chunk, s)) return i;
  return max;
}

describe('WriteAhead', () => {
  it('lets a stream run up to perStreamBytes ahead of its reader, then asks to pause', () => {
    const ahead = new WriteAhead(2, 256 * 1024);
    const w = stalled();
    const s = slot();
    expect(fill(ahead, w, s)).toBe(4);
    expect(w.writableLength).toBe(256 * 1024);
    expect(s.held).toBe(true);
    expect(ahead.streamsAhead).toBe(1);
  });

  it('past maxStreams, a stream pauses at Node’s own mark', () => {
    const ahead = new WriteAhead(1, 256 * 1024);
    const [a, b] = [stalled(), stalled()];
    fill(ahead, a, slot());
    const sb = slot();
    expect(ahead.write(b, chunk, sb)).toBe(false);
    expect(sb.held).toBe(false);
    expect(b.writableLength).toBe(64 * 1024);
  });

  it('gives its place back on drain, and the place can be taken again', async () => {
    const ahead = new WriteAhead(1, 256 * 1024);
    const w = stalled();
    const s = slot();
    fill(ahead, w, s);
    const drained = new Promise((r) => w.once('drain', r));
    w.drainAll();
    await drained;
    expect(s.held).toBe(false);
    expect(ahead.streamsAhead).toBe(0);
    expect(fill(ahead, w, s)).toBe(4);
    expect(ahead.streamsAhead).toBe(1);
  });

  it('gives its place back when the stream closes without draining', async () => {
    const ahead = new WriteAhead(1, 256 * 1024);
    const w = stalled();
    const s = slot();
    fill(ahead, w, s);
    const closed = new Promise((r) => w.once('close', r));
    w.destroy();
    await closed;
    expect(s.held).toBe(false);
    expect(ahead.streamsAhead).toBe(0);
  });

  it('writes below the mark pass straight through without taking a place', () => {
    const ahead = new WriteAhead(1, 256 * 1024);
    const w = stalled();
    const s = slot();
    expect(ahead.write(w, Buffer.alloc(100), s)).toBe(true);
    expect(s.held).toBe(false);
    expect(ahead.streamsAhead).toBe(0);
  });
});
