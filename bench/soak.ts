/**
 * The soak: mixed traffic from many concurrent clients through the proxy for
 * a long time, with faults injected, checking that no acknowledged blob is
 * ever lost or corrupted and that the proxy's memory stays flat. The same
 * engine as test/integration/hardening/soak.test.ts (one minute in the suite).
 *
 *   bash scripts/soak.sh                       10 minutes, 200 clients, faults on
 *   bash scripts/soak.sh --duration 30m --clients 400 --no-faults --out FILE
 *
 * The fake upstream and the clients run in this process; the proxy is the
 * built one (dist/src/cli.js) as its own process, with a stand-in Nix
 * (test/support/hardening/stub-nix.ts) so realisations are instant and store
 * faults exact. Progress goes to stderr, a summary table to stdout, all
 * figures (RSS samples included) as JSON to --out. Exits 1 when a blob was
 * lost or corrupted, or memory grew past the bound after warm-up.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseDuration } from '../src/config/duration';
import { FakeUpstream } from '../test/support/fake-upstream';
import { fdSummary, settle, snapshot } from '../test/support/hardening/process-probe';
import { runSoak } from '../test/support/hardening/soak';
import { StubNix } from '../test/support/hardening/stub-nix';
import { startProxy } from '../test/support/proxy-process';

// Compiled to dist/bench/bench/: the repository is three levels up.
const REPO = path.resolve(__dirname, '..', '..', '..');
const FLAT_BYTES = 96 * 1024 * 1024;

interface Options {
  durationMs: number;
  clients: number;
  faults: boolean;
  out: string;
  /** Share of the run before memory must be flat: the bounded caches fill first (see below). */
  warmup: number;
  /** Caps the proxy's V8 old space (--max-old-space-size), to tell live memory from lazy collection. */
  proxyHeapMb?: number;
}

function parseArgs(argv: string[]): Options {
  // At the default load (about 45 Executes a second) the operation registry reaches its bound of 20,000
  // finished operations after some 7 minutes; memory is judged flat only after that.
  const o: Options = {
    durationMs: 10 * 60_000,
    clients: 200,
    faults: true,
    out: path.join(REPO, '.bench-out', 'soak.json'),
    warmup: 0.7,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--duration') {
      const parsed = parseDuration(value());
      if ('error' in parsed) throw new Error(`--duration ${parsed.error}`);
      o.durationMs = parsed.ms;
    } else if (a === '--clients') o.clients = Number(value());
    else if (a === '--no-faults') o.faults = false;
    else if (a === '--out') o.out = path.resolve(value());
    else if (a === '--warmup') o.warmup = Number(value());
    else if (a === '--proxy-heap-mb') o.proxyHeapMb = Number(value());
    else
      throw new Error(`unknown option ${a} (use --duration, --clients, --no-faults, --warmup, --proxy-heap-mb, --out)`);
  }
  if (!Number.isInteger(o.clients) || o.clients < 1) throw new Error('--clients takes a positive integer');
  if (!(o.warmup >= 0 && o.warmup < 1)) throw new Error('--warmup takes a fraction of the run, e.g. 0.5');
  return o;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const work = await mkdtemp(path.join(tmpdir(), 'nix-reapi-proxy-soak-'));
  const fake = new FakeUpstream({ separateInstances: false, recordBytesPerCall: 0 });
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
  const stopAll = async (): Promise<void> => {
    await proxy?.stop(2000);
    await fake.stop();
    await rm(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    const store = path.join(work, 'store');
    mkdirSync(store);
    const cache = path.join(work, 'cache');
    mkdirSync(cache);
    writeFileSync(path.join(cache, 'nix-cache-info'), 'StoreDir: /nix/store\n');
    const nix = new StubNix(path.join(work, 'nix-bin'));
    nix.sharedStore = store;
    nix.set('nix-store', 'missing-in-shared');
    nix.set('nix', 'valid');
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
      {
        cli: path.join(REPO, 'dist', 'src', 'cli.js'),
        cwd: REPO,
        env: {
          NIX_REAPI_PROXY_LOG_LEVEL: 'info',
          ...(o.proxyHeapMb ? { NODE_OPTIONS: `--max-old-space-size=${o.proxyHeapMb}` } : {}),
        },
      },
    );
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
      () => snapshot(proxy!.pid),
      (s) => s.children.length === 0,
    );
    process.stderr.write(
      `soak: ${o.clients} clients for ${o.durationMs / 1000} s, faults ${o.faults ? 'on' : 'off'}; proxy pid ${proxy.pid}\n`,
    );
    const report = await runSoak({
      endpoint: proxy.endpoint,
      proxyPid: proxy.pid,
      fake,
      nix,
      durationMs: o.durationMs,
      clients: o.clients,
      faults: o.faults,
      warmupFraction: o.warmup,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    const after = await settle(
      () => snapshot(proxy!.pid),
      (s) => s.fds <= before.fds && s.children.length === 0,
    );
    const growth = report.rss.lastThirdMedian - report.rss.firstThirdMedian;
    const total = Object.values(report.operations).reduce((a, b) => a + b, 0);
    const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MB`;
    const rows: Array<[string, string]> = [
      ['duration', `${(report.durationMs / 1000).toFixed(0)} s`],
      ['clients', String(report.clients)],
      [
        'operations',
        `${total} (${Object.entries(report.operations)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')})`,
      ],
      ['retries', String(report.retries)],
      ['failed after retries', JSON.stringify(report.failed)],
      ['blobs written', `${report.blobsWritten} (${mb(report.bytesWritten)})`],
      ['corrupted / lost / reported missing', `${report.corrupted} / ${report.lost} / ${report.reportedMissing}`],
      ['faults injected', JSON.stringify(report.faults)],
      ['proxy RSS after warm-up', `${mb(report.rss.atWarmup)}, max ${mb(report.rss.maxAfterWarmup)}`],
      [
        'RSS median first / last third',
        `${mb(report.rss.firstThirdMedian)} / ${mb(report.rss.lastThirdMedian)} (growth ${mb(growth)})`,
      ],
      ['descriptors before / after', `${before.fds} / ${after.fds} ${JSON.stringify(fdSummary(after.fdTargets))}`],
      ['child processes after', String(after.children.length)],
    ];
    process.stdout.write(`| measure | value |\n|---|---|\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n`);
    mkdirSync(path.dirname(o.out), { recursive: true });
    writeFileSync(
      o.out,
      JSON.stringify({ options: o, report, fds: { before: before.fds, after: after.fds } }, null, 1),
    );
    process.stderr.write(`soak: report written to ${o.out}\n`);
    if (proxy.child.exitCode !== null || proxy.child.signalCode !== null)
      throw new Error(`the proxy exited during the soak (${proxy.child.exitCode ?? proxy.child.signalCode})`);
    const ok =
      report.corrupted === 0 &&
      report.lost === 0 &&
      report.reportedMissing === 0 &&
      growth < FLAT_BYTES &&
      after.fds <= before.fds &&
      after.children.length === 0;
    return ok ? 0 : 1;
  } finally {
    await stopAll();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(2);
  },
);
