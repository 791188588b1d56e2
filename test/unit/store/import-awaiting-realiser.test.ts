import { describe, expect, it } from 'vitest';
import { ImportAwaitingRealiser } from '../../../src/store/import-awaiting-realiser';
import { ImportsInFlight } from '../../../src/store/imports-in-flight';
import type { PathOutcome, Realiser } from '../../../src/store/shared-store';
import { testLogger } from '../../support/test-logger';

const A = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a';
const B = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b';

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** An inner realiser that records when it was called and with what. */
function recording(): Realiser & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    async realise(paths) {
      calls.push([...paths]);
      return new Map<string, PathOutcome>(paths.map((p) => [p, { ok: true, joined: false }]));
    },
  };
}

describe('ImportAwaitingRealiser', () => {
  it('realises at once when nothing asked for is being imported', async () => {
    const inner = recording();
    const r = new ImportAwaitingRealiser(inner, new ImportsInFlight(), testLogger());
    await r.realise([A], new AbortController().signal);
    expect(inner.calls).toEqual([[A]]);
  });

  it('waits for a path being imported before asking the inner realiser', async () => {
    const imports = new ImportsInFlight();
    const importing = deferred();
    imports.track(A, importing.promise);
    const inner = recording();
    const r = new ImportAwaitingRealiser(inner, imports, testLogger());
    const result = r.realise([A, B], new AbortController().signal);
    await new Promise((res) => setImmediate(res));
    expect(inner.calls).toEqual([]);
    importing.resolve();
    await result;
    expect(inner.calls).toEqual([[A, B]]);
    expect(imports.has(A)).toBe(false);
  });

  it('goes on to the inner realiser when the import fails (substituters may have the path)', async () => {
    const imports = new ImportsInFlight();
    const importing = deferred();
    imports.track(A, importing.promise);
    const inner = recording();
    const result = new ImportAwaitingRealiser(inner, imports, testLogger()).realise([A], new AbortController().signal);
    importing.reject(new Error('hash mismatch importing path'));
    await result;
    expect(inner.calls).toEqual([[A]]);
  });

  it('stops waiting with CANCELLED when the caller gives up, and the import goes on', async () => {
    const imports = new ImportsInFlight();
    const importing = deferred();
    imports.track(A, importing.promise);
    const inner = recording();
    const abort = new AbortController();
    const result = new ImportAwaitingRealiser(inner, imports, testLogger()).realise([A], abort.signal);
    abort.abort();
    await expect(result).rejects.toMatchObject({ code: 1 });
    expect(inner.calls).toEqual([]);
    expect(imports.has(A)).toBe(true);
    importing.resolve();
    await importing.promise;
    await new Promise((res) => setImmediate(res));
    expect(imports.has(A)).toBe(false);
  });
});
