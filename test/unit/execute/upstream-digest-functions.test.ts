import { describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { DigestFunction } from '../../../src/execute/digests';
import {
  announcedDigestFunctions,
  UpstreamDigestFunctions,
  type CapabilitiesLike,
} from '../../../src/execute/upstream-digest-functions';

const { SHA256, BLAKE3, SHA1 } = DigestFunction;

function recordingLogger(): { logger: pino.Logger; warnings: string[] } {
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(String(JSON.parse(line).msg)) });
  return { logger, warnings };
}

describe('announcedDigestFunctions', () => {
  it.each<[string, CapabilitiesLike, number[]]>([
    ['cache digest_functions', { cacheCapabilities: { digestFunctions: [BLAKE3] } }, [BLAKE3]],
    [
      'deprecated execution digest_function added',
      { cacheCapabilities: { digestFunctions: [BLAKE3] }, executionCapabilities: { digestFunction: SHA256 } },
      [BLAKE3, SHA256],
    ],
    [
      'execution digest_functions, duplicates dropped',
      {
        cacheCapabilities: { digestFunctions: [SHA256] },
        executionCapabilities: { digestFunction: SHA256, digestFunctions: [SHA256, SHA1] },
      },
      [SHA256, SHA1],
    ],
    [
      'UNKNOWN dropped, nulls tolerated',
      { cacheCapabilities: { digestFunctions: [0] }, executionCapabilities: null },
      [],
    ],
    ['empty', {}, []],
  ])('%s', (_name, caps, expected) => {
    expect(announcedDigestFunctions(caps)).toEqual(expected);
  });
});

describe('UpstreamDigestFunctions', () => {
  it('asks once per instance name, shares concurrent asks, keeps instance names apart', async () => {
    const fetch = vi.fn(async (instanceName: string) => ({
      cacheCapabilities: { digestFunctions: instanceName === 'b3' ? [BLAKE3] : [SHA256] },
    }));
    const source = new UpstreamDigestFunctions({ fetch, logger: recordingLogger().logger });
    const [a, b] = await Promise.all([source.announced('b3', {}), source.announced('b3', {})]);
    expect(a).toEqual([BLAKE3]);
    expect(b).toEqual([BLAKE3]);
    expect(await source.announced('sha', {})).toEqual([SHA256]);
    expect(await source.announced('b3', {})).toEqual([BLAKE3]);
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(fetch.mock.calls.map((c) => c[0])).toEqual(['b3', 'sha']);
  });

  it('asks again once the TTL has passed', async () => {
    const fetch = vi.fn(async () => ({ cacheCapabilities: { digestFunctions: [BLAKE3] } }));
    const source = new UpstreamDigestFunctions({ fetch, logger: recordingLogger().logger, ttlMs: 40 });
    await source.announced('', {});
    await source.announced('', {});
    expect(fetch).toHaveBeenCalledTimes(1);
    await new Promise((resolve) => setTimeout(resolve, 80));
    await source.announced('', {});
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it('passes a deadline timeoutMs ahead', async () => {
    const fetch = vi.fn(async (_name: string, _md: unknown, _deadline: number) => ({}));
    const source = new UpstreamDigestFunctions({ fetch, logger: recordingLogger().logger, timeoutMs: 1234 });
    const before = Date.now();
    await source.announced('x', {});
    const deadline = fetch.mock.calls[0]![2];
    expect(deadline).toBeGreaterThanOrEqual(before + 1234);
    expect(deadline).toBeLessThan(before + 1234 + 1000);
  });

  it('answers undefined when the upstream cannot be asked, logs once, remembers the failure', async () => {
    const { logger, warnings } = recordingLogger();
    const fetch = vi.fn(async () => {
      throw new Error('UNAVAILABLE');
    });
    const source = new UpstreamDigestFunctions({ fetch, logger });
    expect(await source.announced('a', {})).toBeUndefined();
    expect(await source.announced('a', {})).toBeUndefined();
    expect(await source.announced('b', {})).toBeUndefined();
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('GetCapabilities');
  });

  it('never asks about, nor keeps, an over-long instance name; bounds the entries', async () => {
    const fetch = vi.fn(async () => ({ cacheCapabilities: { digestFunctions: [BLAKE3] } }));
    const { logger, warnings } = recordingLogger();
    const source = new UpstreamDigestFunctions({ fetch, logger, maxInstanceNameLength: 16, maxEntries: 2 });
    expect(await source.announced('x'.repeat(17), {})).toBeUndefined();
    expect(await source.announced('y'.repeat(17), {})).toBeUndefined();
    expect(fetch).not.toHaveBeenCalled();
    expect(warnings).toHaveLength(1);
    for (const name of ['a', 'b', 'c', 'a']) await source.announced(name, {});
    // 'a' was evicted by 'c' (two entries), so it is asked again.
    expect(fetch).toHaveBeenCalledTimes(4);
  });
});
