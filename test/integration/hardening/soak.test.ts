import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FakeUpstream } from '../../support/fake-upstream';
import { fdSummary, settle, snapshot } from '../../support/hardening/process-probe';
import { runSoak, type SoakReport } from '../../support/hardening/soak';
import { StubNix } from '../../support/hardening/stub-nix';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * One minute of mixed traffic from 200 concurrent clients through the proxy
 * process, with faults injected (test/support/hardening/soak.ts; bench/soak.ts
 * runs the same for ten minutes). No acknowledged blob may be lost or come
 * back corrupted, the proxy's memory must stay flat after warm-up, and
 * afterwards it holds no more descriptors or child processes than at the
 * start. SOAK_SECONDS overrides the length.
 */

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
/** Growth allowed between the first and last third of the run after warm-up: generous, a leak grows without bound. */
const FLAT_BYTES = 96 * 1024 * 1024;
/**
 * The proxy's V8 old space is capped, as in `bench/soak.ts --proxy-heap-mb`: uncapped, V8 collects less
 * often when the machine is busy, so RSS then measures the machine's load rather than the proxy's live memory.
 * With the cap, growth is live memory, and a leak ends the proxy with a heap-exhaustion crash the test sees.
 */
const PROXY_HEAP_MB = 192;

let work: string;
let fake: FakeUpstream;
let nix: StubNix;
let proxy: ProxyProcess;
let report: SoakReport;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'soak-'));
  const store = join(work, 'store');
  mkdirSync(store);
  const cache = join(work, 'cache');
  mkdirSync(cache);
  writeFileSync(join(cache, 'nix-cache-info'), 'StoreDir: /nix/store\n');
  nix = new StubNix(join(work, 'nix-bin'));
  nix.sharedStore = store;
  nix.set('nix-store', 'missing-in-shared');
  nix.set('nix', 'valid');
  fake = new FakeUpstream({ separateInstances: false, recordBytesPerCall: 0 });
  const up = await fake.start();
  proxy = await startProxy(
    [
      '--upstream',
      up.url,
      '--shared-store',
      store,
      '--substituter',
      `file://${cache}`,
      '--nix-bin-dir',
      nix.dir,
      '--connect-timeout',
      '2s',
      '--limits-realise-retries',
      '0',
    ],
    { env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info', NODE_OPTIONS: `--max-old-space-size=${PROXY_HEAP_MB}` } },
  );
});

afterAll(async () => {
  await proxy?.stop();
  await fake?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

it(
  `${SECONDS} s of traffic from 200 clients with faults: no blob lost or corrupted, memory flat, nothing leaked`,
  async () => {
    // A short calm run first opens the upstream connections the proxy keeps; then the reference counts.
    await runSoak({
      endpoint: proxy.endpoint,
      proxyPid: proxy.pid,
      fake,
      nix,
      durationMs: 2000,
      clients: 8,
      faults: false,
    });
    const before = await settle(
      () => snapshot(proxy.pid),
      (s) => s.children.length === 0,
    );
    report = await runSoak({
      endpoint: proxy.endpoint,
      proxyPid: proxy.pid,
      fake,
      nix,
      durationMs: SECONDS * 1000,
      clients: 200,
      faults: true,
    });
    const total = Object.values(report.operations).reduce((a, b) => a + b, 0);
    const failed = Object.values(report.failed).reduce((a, b) => a + b, 0);
    const summary = JSON.stringify({ ...report, rss: { ...report.rss, samples: report.rss.samples.length } });

    expect(report.corrupted, summary).toBe(0);
    expect(report.lost, summary).toBe(0);
    expect(report.reportedMissing, summary).toBe(0);
    expect(report.blobsWritten, summary).toBeGreaterThan(1000);
    expect(report.operations.execute, summary).toBeGreaterThan(100);
    expect(Object.keys(report.faults).length, summary).toBeGreaterThanOrEqual(4);
    // Faults are brief and clients retry: almost everything succeeds in the end.
    expect(failed / total, summary).toBeLessThan(0.01);
    expect(proxy.child.exitCode, `the proxy exited during the soak:\n${proxy.logs().slice(-4000)}`).toBeNull();
    expect(report.rss.lastThirdMedian - report.rss.firstThirdMedian, summary).toBeLessThan(FLAT_BYTES);

    const after = await settle(
      () => snapshot(proxy.pid),
      (s) => s.fds <= before.fds && s.children.length === 0,
    );
    expect(after.children).toEqual([]);
    expect(
      after.fds,
      JSON.stringify({ before: fdSummary(before.fdTargets), after: fdSummary(after.fdTargets) }),
    ).toBeLessThanOrEqual(before.fds);
  },
  (SECONDS + 120) * 1000,
);
