import { describe, expect, it } from 'vitest';
import { ExecutionEntry } from '../../../src/execute/execution-entry';
import { finishedOperation, operationHead, queuedOperation } from '../../../src/execute/operation-messages';
import { OperationRegistry } from '../../../src/execute/operation-registry';
import { encodeFrame } from '../../../src/rpc/grpc-frame';
import { T } from '../../../src/reapi/protos';
import { sha256Digest } from './fixtures';

const ACTION = sha256Digest(Buffer.from('action'));

function entry(
  name = 'operations/nix-reapi-proxy/1',
  graceMs = 60_000,
  onAbandoned: (e: ExecutionEntry) => void = () => undefined,
) {
  return new ExecutionEntry(name, ACTION, encodeFrame(Buffer.from('request')), graceMs, onAbandoned);
}

function upstreamOp(name: string, done: boolean): Buffer {
  return Buffer.from(T.Operation.encode({ name, done }).finish());
}

describe('ExecutionEntry', () => {
  it('starts preparing, with our QUEUED Operation ready to send', () => {
    const e = entry();
    expect(e.state).toBe('preparing');
    expect(operationHead(e.queued)).toEqual({ name: e.name, done: false });
    expect(e.queued).toEqual(queuedOperation(e.name, ACTION));
  });

  it('learns the upstream name from the first relayed Operation and the final one from the done Operation', () => {
    const e = entry();
    e.setState('forwarding');
    e.observeUpstream(upstreamOp('up/1', false));
    expect(e.upstreamName).toBe('up/1');
    expect(e.state).toBe('forwarding');
    const done = upstreamOp('up/1', true);
    e.observeUpstream(done);
    expect(e.state).toBe('finished');
    expect(e.finalOperation).toEqual(done);
  });

  it('ignores relayed messages that do not decode', () => {
    const e = entry();
    e.setState('forwarding');
    e.observeUpstream(Buffer.from([0x0a, 0x05, 0x61]));
    expect(e.upstreamName).toBeUndefined();
  });

  it.each<[string, (e: ExecutionEntry, c: AbortController) => void, string]>([
    ['a state change', (e) => e.setState('ready'), 'changed'],
    ['an upstream name', (e) => e.observeUpstream(upstreamOp('up', false)), 'changed'],
    ['the call aborting', (_e, c) => c.abort(), 'aborted'],
  ])('waitForChange wakes on %s', async (_name, act, expected) => {
    const e = entry();
    const c = new AbortController();
    const waiting = e.waitForChange(c.signal, 60_000);
    act(e, c);
    expect(await waiting).toBe(expected);
  });

  it('waitForChange ticks when nothing happens', async () => {
    expect(await entry().waitForChange(new AbortController().signal, 1)).toBe('tick');
  });

  it('is abandoned once nobody has been attached for the grace period', async () => {
    let abandoned: ExecutionEntry | undefined;
    const gone = new Promise<void>((resolve) => {
      const e = entry('n', 5, (x) => {
        abandoned = x;
        resolve();
      });
      const detach = e.attach();
      detach();
      detach(); // twice is harmless
    });
    await gone;
    expect(abandoned?.name).toBe('n');
  });

  it('is not abandoned while a call stays attached, nor once finished', async () => {
    let abandoned = 0;
    const a = entry('a', 1, () => abandoned++);
    const detachA = a.attach();
    const b = entry('b', 1, () => abandoned++);
    b.attach()();
    b.setState('finished', { finalOperation: finishedOperation('b', ACTION, { code: 9, message: 'x' }) });
    // A third entry that is abandoned tells us the timers of the others had their chance.
    await new Promise<void>((resolve) => entry('c', 5, () => resolve()).attach()());
    expect(abandoned).toBe(0);
    detachA();
  });
});

describe('OperationRegistry', () => {
  it('finds entries by name and forgets deleted ones', () => {
    const r = new OperationRegistry();
    const e = entry('x');
    r.add(e);
    expect(r.get('x')).toBe(e);
    r.delete(e);
    expect(r.get('x')).toBeUndefined();
  });

  it('deletes only the entry it is given', () => {
    const r = new OperationRegistry();
    const older = entry('x');
    const newer = entry('x');
    r.add(older);
    r.add(newer);
    r.delete(older);
    expect(r.get('x')).toBe(newer);
  });

  it('is bounded in entries', () => {
    const r = new OperationRegistry({ maxEntries: 2, maxBytes: 1e9, ttlMs: 60_000 });
    for (const n of ['a', 'b', 'c']) r.add(entry(n));
    expect(r.get('a')).toBeUndefined();
    expect(r.get('c')).toBeDefined();
    expect(r.size).toBe(2);
  });

  it('is bounded in bytes, re-measuring an entry that grew', () => {
    const r = new OperationRegistry({ maxEntries: 100, maxBytes: 4000, ttlMs: 60_000 });
    const a = entry('a');
    const b = entry('b');
    r.add(a);
    r.add(b);
    expect(r.size).toBe(2);
    b.setState('finished', { finalOperation: Buffer.alloc(3000) });
    r.touch(b);
    expect(r.get('a')).toBeUndefined();
    expect(r.get('b')).toBe(b);
  });

  it('forgets names after their time to live', () => {
    let now = 1000;
    const r = new OperationRegistry({ maxEntries: 10, maxBytes: 1e9, ttlMs: 100 }, { now: () => now });
    r.add(entry('a'));
    now += 99;
    expect(r.get('a')).toBeDefined();
    now += 2;
    expect(r.get('a')).toBeUndefined();
  });
});
