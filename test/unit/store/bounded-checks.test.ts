import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { BoundedChecks } from '../../../src/store/bounded-checks';
import type { PathSource, SharedStore } from '../../../src/store/shared-store';
import { storePath } from './fake-nix';

/** A store whose checks stay open until released, recording each check's paths and signal. */
class HeldStore implements SharedStore {
  readonly url = '/fake-store';
  readonly invalid = new Set<string>();
  readonly checks: Array<{ paths: string[]; signal: AbortSignal; release: (err?: Error) => void }> = [];
  private arrived: Array<() => void> = [];

  findInvalid(paths: readonly string[], signal: AbortSignal): Promise<string[]> {
    return new Promise((resolve, reject) => {
      this.checks.push({
        paths: [...paths],
        signal,
        release: (err) => (err ? reject(err) : resolve(paths.filter((p) => this.invalid.has(p)))),
      });
      for (const a of this.arrived.splice(0)) a();
    });
  }

  copyFrom(_source: PathSource, _paths: readonly string[], _signal: AbortSignal): Promise<void> {
    return Promise.resolve();
  }

  /** Resolves once `n` checks have reached the store. */
  async reached(n: number): Promise<void> {
    while (this.checks.length < n) await new Promise<void>((r) => this.arrived.push(r));
  }
}

const live = (): AbortSignal => new AbortController().signal;
const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => storePath(n));

describe('BoundedChecks', () => {
  it('runs checks at once while slots are free', async () => {
    const store = new HeldStore();
    const checks = new BoundedChecks(store, 2);
    const one = checks.findInvalid([a!], live());
    const two = checks.findInvalid([b!], live());
    await store.reached(2);
    store.invalid.add(a!);
    store.checks.forEach((c) => c.release());
    expect(await one).toEqual([a]);
    expect(await two).toEqual([]);
  });

  it('merges every check that waited for a slot into one, and gives each caller its own answer', async () => {
    const store = new HeldStore();
    const checks = new BoundedChecks(store, 1);
    store.invalid.add(b!).add(d!);
    const first = checks.findInvalid([a!], live());
    await store.reached(1);
    const waiting = [
      checks.findInvalid([b!, c!], live()),
      checks.findInvalid([c!, d!], live()),
      checks.findInvalid([b!], live()),
    ];
    store.checks[0]!.release();
    await store.reached(2);
    expect([...store.checks[1]!.paths].sort()).toEqual([b, c, d].sort());
    store.checks[1]!.release();
    expect(await first).toEqual([]);
    expect(await Promise.all(waiting)).toEqual([[b], [d], [b]]);
    expect(store.checks).toHaveLength(2);
  });

  it('a waiting caller that gives up is answered CANCELLED at once and left out of the merged check', async () => {
    const store = new HeldStore();
    const checks = new BoundedChecks(store, 1);
    const first = checks.findInvalid([a!], live());
    await store.reached(1);
    const quitter = new AbortController();
    const gaveUp = checks.findInvalid([b!], quitter.signal);
    const stays = checks.findInvalid([c!], live());
    quitter.abort();
    await expect(gaveUp).rejects.toMatchObject({ code: Code.CANCELLED });
    store.checks[0]!.release();
    await store.reached(2);
    expect(store.checks[1]!.paths).toEqual([c]);
    store.checks[1]!.release();
    expect(await stays).toEqual([]);
    expect(await first).toEqual([]);
  });

  it('cancels the merged Nix process only when every caller in it gave up', async () => {
    const store = new HeldStore();
    const checks = new BoundedChecks(store, 1);
    void checks.findInvalid([a!], live());
    await store.reached(1);
    const quitters = [new AbortController(), new AbortController()];
    const calls = quitters.map((q, i) => checks.findInvalid([i ? b! : c!], q.signal).catch((e: unknown) => e));
    store.checks[0]!.release();
    await store.reached(2);
    const merged = store.checks[1]!;
    quitters[0]!.abort();
    expect(merged.signal.aborted).toBe(false);
    quitters[1]!.abort();
    expect(merged.signal.aborted).toBe(true);
    merged.release(new ProxyError(Code.CANCELLED, 'CANCELLED', 'killed'));
    for (const r of await Promise.all(calls)) expect(r).toMatchObject({ code: Code.CANCELLED });
  });

  it('a failed merged check fails every caller in it, and later checks still run', async () => {
    const store = new HeldStore();
    const checks = new BoundedChecks(store, 1);
    void checks.findInvalid([a!], live());
    await store.reached(1);
    const waiting = [checks.findInvalid([b!], live()), checks.findInvalid([c!], live())];
    store.checks[0]!.release();
    await store.reached(2);
    store.checks[1]!.release(new ProxyError(Code.UNAVAILABLE, 'STORE_UNAVAILABLE', 'store down'));
    for (const r of await Promise.all(waiting.map((w) => w.catch((e: unknown) => e))))
      expect(r).toMatchObject({ code: Code.UNAVAILABLE });
    const later = checks.findInvalid([d!], live());
    await store.reached(3);
    store.checks[2]!.release();
    expect(await later).toEqual([]);
  });

  it('refuses a caller that already gave up without asking the store', async () => {
    const store = new HeldStore();
    const quitter = new AbortController();
    quitter.abort();
    await expect(new BoundedChecks(store, 1).findInvalid([a!], quitter.signal)).rejects.toMatchObject({
      code: Code.CANCELLED,
    });
    expect(store.checks).toHaveLength(0);
  });
});
