import { describe, expect, it } from 'vitest';
import { PushQuota, type QuotaReservation } from '../../../src/cache/push-quota';

const HOUR = 3_600_000;
const MIN = 60_000;

function clock() {
  const c = { now: 1_700_000_000_000, advance: (ms: number) => void (c.now += ms) };
  return c;
}

function granted(result: QuotaReservation | { problem: string }): QuotaReservation {
  if ('problem' in result) throw new Error(`expected a reservation, got: ${result.problem}`);
  return result;
}

function refusedWhy(result: QuotaReservation | { problem: string }): string {
  if (!('problem' in result)) throw new Error('expected a refusal, got a reservation');
  return result.problem;
}

describe('PushQuota', () => {
  it('grants any size when no limit is set', () => {
    const quota = new PushQuota(undefined);
    for (let i = 0; i < 3; i++) granted(quota.reserve('a', Number.MAX_SAFE_INTEGER));
  });

  it('grants uploads up to the limit exactly, and refuses the byte after', () => {
    const c = clock();
    const quota = new PushQuota(1000, () => c.now);
    granted(quota.reserve('a', 600));
    granted(quota.reserve('a', 400));
    expect(refusedWhy(quota.reserve('a', 1))).toBe(
      "client 'a' has uploaded or is uploading 1000 bytes in the last hour; 1 more would pass " +
        "limits.clientPushedBytesPerHour = 1000. Retry later, or ask the proxy's operator to raise the limit",
    );
  });

  it('refuses a single upload larger than the limit', () => {
    const quota = new PushQuota(1000, () => 0);
    expect(refusedWhy(quota.reserve('a', 1001))).toContain('0 bytes in the last hour; 1001 more');
  });

  it('does not record a refused reservation', () => {
    const quota = new PushQuota(1000, () => 0);
    refusedWhy(quota.reserve('a', 1001));
    granted(quota.reserve('a', 1000));
  });

  it('counts each client separately', () => {
    const quota = new PushQuota(1000, () => 0);
    granted(quota.reserve('a', 1000));
    granted(quota.reserve('b', 1000));
    expect(refusedWhy(quota.reserve('a', 1))).toContain("client 'a'");
  });

  it('counts reservations not yet settled, so concurrent uploads cannot pass the limit together', () => {
    const quota = new PushQuota(1000, () => 0);
    const first = granted(quota.reserve('a', 700));
    expect(refusedWhy(quota.reserve('a', 700))).toContain('700 bytes in the last hour');
    first.settle(700);
    expect(refusedWhy(quota.reserve('a', 301))).toContain('700 bytes');
  });

  it('gives back what an upload that ended early did not use', () => {
    const quota = new PushQuota(1000, () => 0);
    granted(quota.reserve('a', 1000)).settle(250);
    granted(quota.reserve('a', 750));
    expect(refusedWhy(quota.reserve('a', 1))).toContain('1000 bytes');
  });

  it('gives back everything for an upload settled at 0', () => {
    const quota = new PushQuota(1000, () => 0);
    granted(quota.reserve('a', 1000)).settle(0);
    granted(quota.reserve('a', 1000));
  });

  it('never keeps more than was reserved, nor less than nothing', () => {
    const quota = new PushQuota(1000, () => 0);
    granted(quota.reserve('a', 100)).settle(5000);
    granted(quota.reserve('a', 900));
    const quota2 = new PushQuota(1000, () => 0);
    granted(quota2.reserve('a', 100)).settle(-50);
    granted(quota2.reserve('a', 1000));
  });

  it('settles once: a second settle changes nothing', () => {
    const quota = new PushQuota(1000, () => 0);
    const r = granted(quota.reserve('a', 1000));
    r.settle(1000);
    r.settle(0);
    expect(refusedWhy(quota.reserve('a', 1))).toContain('1000 bytes');
  });

  it('forgets an upload one hour after it was reserved (a sliding hour)', () => {
    const c = clock();
    const quota = new PushQuota(1000, () => c.now);
    granted(quota.reserve('a', 600));
    c.advance(30 * MIN);
    granted(quota.reserve('a', 400));
    c.advance(30 * MIN - 1); // 1 ms before the first reservation is an hour old
    expect(refusedWhy(quota.reserve('a', 1))).toContain('1000 bytes');
    c.advance(1); // the first is an hour old: only the second counts
    granted(quota.reserve('a', 600));
    expect(refusedWhy(quota.reserve('a', 1))).toContain('1000 bytes');
    c.advance(30 * MIN); // the second is an hour old
    expect(refusedWhy(quota.reserve('a', 401))).toContain('600 bytes');
    c.advance(HOUR);
    granted(quota.reserve('a', 1000));
  });

  it('counts an upload from when it was reserved, however late it settles', () => {
    const c = clock();
    const quota = new PushQuota(1000, () => c.now);
    const r = granted(quota.reserve('a', 1000));
    c.advance(HOUR);
    r.settle(1000); // settling late does not restart the hour
    granted(quota.reserve('a', 1000));
  });
});
