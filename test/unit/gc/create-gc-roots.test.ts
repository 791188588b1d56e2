import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { createGcRoots } from '../../../src/gc/create-gc-roots';
import { rootTimings } from '../../../src/gc/gc-roots-settings';
import { PrometheusMetrics } from '../../../src/metrics/prometheus-metrics';
import { parseExposition, valueOf } from '../../integration/metrics/prometheus-text';
import { storePath } from '../store/fake-nix';
import { typed, type TextOverrides } from '../../support/config-values';

async function rootsEnabled(metrics: PrometheusMetrics): Promise<number | undefined> {
  return valueOf(parseExposition((await metrics.exposition()).body), 'nix_reapi_proxy_gc_roots_enabled');
}

let dir: string;

/** A logger whose lines the test can read. */
function recordingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'info' },
    { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  );
  return { logger, lines };
}

const config = (over: TextOverrides): Config => ({ ...DEFAULTS, rootSweepIntervalMs: 0, ...typed(over) });

describe('createGcRoots', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'create-gc-roots-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('for a chroot store: makes the roots directory at start-up and says where', async () => {
    const store = join(dir, 'chroot');
    await mkdir(store);
    const { logger, lines } = recordingLogger();
    const roots = createGcRoots(config({ sharedStore: store }), { logger });
    const rootsDir = join(store, 'nix/var/nix/gcroots/nix-reapi-proxy');
    expect(roots.location).toMatchObject({ on: true, dir: rootsDir });
    expect((await stat(join(rootsDir, '.leases'))).isDirectory()).toBe(true);
    expect(lines.find((l) => l.msg === 'GC roots on')).toMatchObject({
      dir: rootsDir,
      retention: '14d',
      sweepEvery: 'never',
    });
    await roots.close();
  });

  it('for a remote store without gcRootsDir: roots are off, said loudly with the reason, and acquire holds nothing', async () => {
    const { logger, lines } = recordingLogger();
    const roots = createGcRoots(config({ sharedStore: 'ssh-ng://builder' }), { logger });
    expect(roots.location.on).toBe(false);
    const warning = lines.find((l) => String(l.msg).startsWith('GC roots are OFF'));
    expect(warning?.level).toBe(40);
    expect(String(warning?.why)).toContain('set gcRootsDir');
    (await roots.acquire([storePath('a')])).release();
    expect(roots.heldPaths().size).toBe(0);
    expect(await roots.sweep()).toBeUndefined();
  });

  it('with gcRootsDir, uses it for any store kind', async () => {
    const mounted = join(dir, 'mounted-gcroots');
    await mkdir(mounted);
    const target = join(mounted, 'proxy');
    const roots = createGcRoots(config({ sharedStore: 'ssh-ng://builder', gcRootsDir: target }), {
      logger: recordingLogger().logger,
    });
    expect(roots.location).toMatchObject({ on: true, dir: target });
    await roots.acquire([storePath('a')]);
    expect(await readdir(target)).toContain(storePath('a').slice(11));
    await roots.close();
  });

  it('says through nix_reapi_proxy_gc_roots_enabled whether roots are on', async () => {
    const offMetrics = new PrometheusMetrics({ version: 't' });
    expect(await rootsEnabled(offMetrics)).toBe(0);
    const off = createGcRoots(config({ sharedStore: 'ssh-ng://builder' }), {
      logger: recordingLogger().logger,
      metrics: offMetrics,
    });
    expect(off.location.on).toBe(false);
    expect(await rootsEnabled(offMetrics)).toBe(0);
    const onMetrics = new PrometheusMetrics({ version: 't' });
    const target = join(dir, 'metric-gcroots', 'nix-reapi-proxy');
    await mkdir(join(dir, 'metric-gcroots'));
    const on = createGcRoots(config({ sharedStore: 'ssh-ng://builder', gcRootsDir: target }), {
      logger: recordingLogger().logger,
      metrics: onMetrics,
    });
    expect(on.location.on).toBe(true);
    expect(await rootsEnabled(onMetrics)).toBe(1);
    await on.close();
  });

  it('does not create directories under a store directory that is missing (an unmounted volume)', async () => {
    const store = join(dir, 'not-mounted');
    const roots = createGcRoots(config({ sharedStore: store }), { logger: recordingLogger().logger });
    expect(roots.location.on).toBe(true);
    await expect(roots.acquire([storePath('a')])).rejects.toMatchObject({ reason: 'GC_ROOTS_UNAVAILABLE' });
    await expect(stat(store)).rejects.toMatchObject({ code: 'ENOENT' });
    await roots.close();
  });
});

describe('rootTimings', () => {
  it.each([
    [
      { rootTouchIntervalMs: 3_600_000, rootRetentionMs: 14 * 86_400_000, validityTtlMs: 300_000 },
      { touchIntervalMs: 3_600_000, lingerMs: 300_000 },
    ],
    [
      { rootTouchIntervalMs: 3_600_000, rootRetentionMs: 7_200_000, validityTtlMs: 1 },
      { touchIntervalMs: 1_800_000, lingerMs: 60_000, touchClampedFrom: 3_600_000 },
    ],
    [
      { rootTouchIntervalMs: 3_600_000, rootRetentionMs: 0, validityTtlMs: 900_000 },
      { touchIntervalMs: 3_600_000, lingerMs: 900_000 },
    ],
  ])('%j -> %j', (c, expected) => {
    expect(
      rootTimings({
        rootTouchIntervalMs: c.rootTouchIntervalMs,
        rootRetentionMs: c.rootRetentionMs,
        cache: {
          memoEntries: 1,
          treeMemoBytes: 1024,
          actionMemoBytes: 1024,
          validityBytes: 1024,
          validityTtlMs: c.validityTtlMs,
        },
      }),
    ).toEqual(expected);
  });
});
