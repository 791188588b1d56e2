import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { runAsClient, currentClient } from '../../../src/server/auth/client-scope';
import { ClientLimitedRealiser } from '../../../src/store/client-limited-realiser';
import { bytesRegisteredSince, narBytesOf } from '../../../src/store/registered-bytes';
import type { PathOutcome, Realiser } from '../../../src/store/shared-store';
import { testLogger } from '../../support/test-logger';

const P = (i: number) => `/nix/store/${String(i).padStart(32, '0')}-p${i}`;

/** A realiser whose realisations end when the test says so. */
class GatedRealiser implements Realiser {
  readonly gates: Array<() => void> = [];
  joined = new Set<string>();
  realise(paths: readonly string[]): Promise<Map<string, PathOutcome>> {
    return new Promise((resolve) =>
      this.gates.push(() => resolve(new Map(paths.map((p) => [p, { ok: true, joined: this.joined.has(p) }])))),
    );
  }
}

function setup(
  limits: { concurrentRealisations?: number; realisedBytesPerHour?: number },
  bytesPerPath = 100,
  estimatePerPath?: number,
) {
  const inner = new GatedRealiser();
  let now = 1_000_000;
  const measured: string[][] = [];
  const realiser = new ClientLimitedRealiser(inner, {
    limits,
    currentClient,
    measure: async (paths) => {
      measured.push([...paths]);
      return paths.length * bytesPerPath;
    },
    ...(estimatePerPath !== undefined
      ? { estimate: async (paths: readonly string[]) => paths.length * estimatePerPath }
      : {}),
    logger: testLogger(),
    now: () => now,
  });
  const as = (client: string | undefined, paths: string[]) =>
    runAsClient(client, () => realiser.realise(paths, new AbortController().signal));
  const settleNext = async () => {
    await new Promise((r) => setImmediate(r));
    inner.gates.shift()!();
  };
  return { inner, realiser, as, settleNext, measured, advance: (ms: number) => (now += ms) };
}

async function refusal(p: Promise<unknown>): Promise<ProxyError> {
  try {
    await p;
  } catch (err) {
    return err as ProxyError;
  }
  throw new Error('not refused');
}

describe('per-client limits on realisations', () => {
  it('refuses a client its next realisation while it has the most running, other clients and later calls go on', async () => {
    const { as, settleNext } = setup({ concurrentRealisations: 2 });
    const a1 = as('alice', [P(1)]);
    const a2 = as('alice', [P(2)]);
    const err = await refusal(as('alice', [P(3)]));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toMatch(/client 'alice' already has 2 realisations .*limits\.clientConcurrentRealisations = 2/);
    const b1 = as('bob', [P(3)]);
    await settleNext();
    await a1;
    const a3 = as('alice', [P(4)]);
    await settleNext();
    await settleNext();
    await settleNext();
    await Promise.all([a2, b1, a3]);
  });

  it('counts the bytes a client had realised over a sliding hour, refuses past the limit, and forgets them an hour later', async () => {
    const { as, settleNext, measured, advance, inner } = setup({ realisedBytesPerHour: 250 }, 100);
    inner.joined.add(P(9));
    const first = as('alice', [P(1), P(2), P(9)]);
    await settleNext();
    await first;
    expect(measured).toEqual([[P(1), P(2)]]);
    const second = as('alice', [P(3)]);
    await settleNext();
    await second;
    const err = await refusal(as('alice', [P(4)]));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toMatch(
      /client 'alice' had 300 bytes .* in the last hour.*limits\.clientRealisedBytesPerHour = 250/,
    );
    const bob = as('bob', [P(4)]);
    await settleNext();
    await bob;
    advance(3_600_001);
    const later = as('alice', [P(5)]);
    await settleNext();
    await later;
  });

  it('leaves calls without a client alone', async () => {
    const { as, settleNext } = setup({ concurrentRealisations: 1 });
    const one = as(undefined, [P(1)]);
    const two = as(undefined, [P(2)]);
    await settleNext();
    await settleNext();
    await Promise.all([one, two]);
  });
});

describe('bytes registered since', () => {
  it.each([
    [
      'Nix 2.8 arrays',
      JSON.stringify([
        { path: P(1), narSize: 10, registrationTime: 100 },
        { path: P(2), narSize: 20, registrationTime: 99 },
      ]),
      [[P(1), 10]],
    ],
    ['newer maps', JSON.stringify({ [P(1)]: { narSize: 10, registrationTime: 101 }, [P(2)]: null }), [[P(1), 10]]],
    [
      'malformed entries skipped',
      JSON.stringify([
        { path: 'x', narSize: 1, registrationTime: 200 },
        { path: P(3), narSize: -1, registrationTime: 200 },
      ]),
      [],
    ],
  ])('%s', (_name, json, expected) => {
    expect([...bytesRegisteredSince(json, 100)]).toEqual(expected);
  });

  it("reserves each realisation's closure size before it starts: of 20 concurrent 1 MB realisations under 1 MB an hour, 1 runs and 19 are refused", async () => {
    const MB = 1_000_000;
    const { as, inner } = setup({ realisedBytesPerHour: MB }, MB, MB);
    const calls = Array.from({ length: 20 }, (_, i) =>
      as('alice', [P(100 + i)]).then(
        () => 'ran',
        (e: ProxyError) => e,
      ),
    );
    await new Promise((r) => setTimeout(r, 10));
    expect(inner.gates).toHaveLength(1);
    inner.gates.shift()!();
    const results = await Promise.all(calls);
    expect(results.filter((r) => r === 'ran')).toHaveLength(1);
    const refused = results.filter((r): r is ProxyError => r instanceof ProxyError);
    expect(refused).toHaveLength(19);
    for (const e of refused) {
      expect(e.code).toBe(Code.RESOURCE_EXHAUSTED);
      expect(e.message).toMatch(/client 'alice' .*limits\.clientRealisedBytesPerHour = 1000000/);
    }
  });

  it('a realisation its caller gave up on keeps its slot until it ends, and is counted then', async () => {
    const { realiser, inner, measured } = setup({ concurrentRealisations: 1, realisedBytesPerHour: 10_000 });
    const abort = new AbortController();
    const abandoned = runAsClient('bob', () => realiser.realise([P(1)], abort.signal));
    await new Promise((r) => setImmediate(r));
    abort.abort();
    await expect(abandoned).rejects.toMatchObject({ code: Code.CANCELLED });
    // Still running for whoever else waits: bob's one slot is taken.
    const next = await refusal(runAsClient('bob', () => realiser.realise([P(2)], new AbortController().signal)));
    expect(next.message).toMatch(/clientConcurrentRealisations/);
    inner.gates.shift()!();
    await new Promise((r) => setTimeout(r, 10));
    expect(measured).toEqual([[P(1)]]);
  });

  it('sums the NAR sizes a source states for a closure, in either JSON shape, each path once, ignoring what is not a path or a size', () => {
    const list = JSON.stringify([
      { path: P(1), narSize: 1000 },
      { path: P(2), narSize: 24 },
      { path: P(2), narSize: 24 },
      { path: '/etc/passwd', narSize: 5 },
      { path: P(3), valid: false },
      { path: P(4), narSize: -1 },
    ]);
    expect(narBytesOf(list)).toBe(1024);
    expect(narBytesOf(JSON.stringify({ [P(1)]: { narSize: 7 }, [P(2)]: null }))).toBe(7);
  });
});
