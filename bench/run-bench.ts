/**
 * The benchmark: what the proxy costs, measured against the upstream alone.
 *
 *   npm run bench                 full run (several minutes)
 *   npm run bench -- --quick      smaller run, under 2 minutes
 *   node dist/bench/bench/run-bench.js --tiny --out FILE   seconds; for the smoke test
 *
 * Scenario 7 pushes closures to the proxy's binary cache with stock Nix.
 * Other options: --only 1,2,6 (scenario numbers), --out FILE (JSON report),
 * --no-front (skip the front+proxy mode, which runs when haproxy is installed),
 * --cpu-prof (write the proxy's CPU profile to .bench-out/profiles/),
 * --proxy-cli PATH (benchmark another build of the proxy), --no-docs (do not
 * write docs/bench/scenario-N.md; --tiny and --out never write them).
 *
 * The memory upstream, the proxy and every load-generator run are separate
 * processes on 127.0.0.1; all of them are stopped by PID at the end, also on
 * failure or Ctrl-C. Prints progress to stderr, the result table to stdout,
 * and writes the same figures as JSON.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { killAllNow, runJson, startServer, stopAll, stopProcess, type ServerProcess } from './harness/child-processes';
import { gitCommit, machineInfo, markdownTable, type BenchReport } from './harness/bench-report';
import { writeDocsReport } from './harness/docs-report';
import { LOAD_GENERATOR, type Endpoints } from './harness/compare-runs';
import { ExecuteLog } from './harness/execute-log';
import {
  buildNixFixtures,
  coldExecute,
  singleFlight,
  warmExecute,
  type NixScenarioContext,
} from './harness/execute-scenarios';
import { makeNixRig, nixAvailable } from './harness/nix-rig';
import { frontAvailable, startFront } from './harness/front-server';
import { largeBlobs, manyOpenStreams, smallUnaryCalls, type ScenarioContext } from './harness/passthrough-scenarios';
import { PROFILES, type Profile } from './harness/profiles';
import { pushScenario } from './harness/push-scenario';
import { makeChrootStore } from '../test/support/nix-fixtures';
import type { ScenarioReport } from './harness/scenario-report';
import type { SeedResult } from './load/seed-upstream';

// Compiled to dist/bench/bench/: the repository is three levels up.
const REPO = path.resolve(__dirname, '..', '..', '..');
const UPSTREAM = path.join(__dirname, 'upstream', 'memory-upstream.js');

interface Options {
  profile: Profile;
  only: Set<number> | undefined;
  out: string;
  /** --out given: write only there (no latest.json next to it). */
  outGiven: boolean;
  cpuProf: boolean;
  proxyCli: string;
  /** Run the front+proxy mode (HAProxy with deploy/front/haproxy.cfg) when haproxy is installed. */
  front: boolean;
  /** Write docs/bench/scenario-N.md (not for --tiny, --out or --no-docs). */
  docs: boolean;
}

function parseArgs(argv: string[]): Options {
  let name: Profile['name'] = 'full';
  let only: Set<number> | undefined;
  let out: string | undefined;
  let cpuProf = false;
  let front = true;
  let docs = true;
  let proxyCli = path.join(REPO, 'dist', 'src', 'cli.js');
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') name = 'quick';
    else if (a === '--tiny') name = 'tiny';
    else if (a === '--only') only = new Set(value().split(',').map(Number));
    else if (a === '--out') out = path.resolve(value());
    else if (a === '--cpu-prof') cpuProf = true;
    else if (a === '--no-front') front = false;
    else if (a === '--no-docs') docs = false;
    else if (a === '--proxy-cli') proxyCli = path.resolve(value());
    else throw new Error(`unknown option ${a}; see the comment at the top of bench/run-bench.ts`);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return {
    profile: PROFILES[name],
    only,
    outGiven: out !== undefined,
    out: out ?? path.join(REPO, '.bench-out', `bench-${name}-${stamp}.json`),
    cpuProf,
    proxyCli,
    front,
    docs: docs && name !== 'tiny' && out === undefined,
  };
}

/** Long-running processes started, for the report (load generators come and go). */
const started: Array<{ name: string; pid: number }> = [];
const startedAt = Date.now();
function progress(msg: string): void {
  process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}

async function startProxy(
  opts: Options,
  upstream: ServerProcess,
  extraArgs: string[] = [],
  onJsonLine?: (line: Record<string, unknown>) => void,
  logLevel = 'info',
): Promise<ServerProcess> {
  const nodeFlags = opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(REPO, '.bench-out', 'profiles')}`] : [];
  return startServer(
    'proxy',
    [...nodeFlags, opts.proxyCli, '--listen', '127.0.0.1:0', '--upstream', `grpc://${upstream.listen}`, ...extraArgs],
    {
      env: { ...process.env, NIX_REAPI_PROXY_LOG_LEVEL: logLevel },
      onJsonLine,
    },
  );
}

/** Scenarios 3-5: a second proxy, with a fresh chroot shared store and counting Nix wrappers. */
async function nixScenarios(
  opts: Options,
  upstream: ServerProcess,
  wants: (n: number) => boolean,
): Promise<ScenarioReport[]> {
  const out: ScenarioReport[] = [];
  progress('building Nix store paths for the Execute scenarios and a chroot shared store');
  const rig = await makeNixRig();
  try {
    const fixtures = await buildNixFixtures(rig, opts.profile, wants(4) ? opts.profile.coldRounds : 0);
    const log = new ExecuteLog();
    const proxy = await startProxy(
      opts,
      upstream,
      ['--shared-store', rig.store, '--substituter', 'local', '--no-require-sigs', '--nix-bin-dir', rig.binDir],
      log.onJsonLine,
    );
    started.push({ name: 'Nix-aware proxy', pid: proxy.pid });
    progress(`Nix-aware proxy ${proxy.listen} (pid ${proxy.pid}), shared store ${rig.store}`);
    const ctx: NixScenarioContext = {
      ends: { upstream, proxy },
      rig,
      log,
      profile: opts.profile,
      fixtures,
      progress,
      judge: opts.profile.name !== 'tiny',
    };
    if (wants(3)) out.push(...(await warmExecute(ctx)));
    if (wants(4)) out.push(...(await coldExecute(ctx)));
    if (wants(5)) out.push(...(await singleFlight(ctx)));
    await stopProcess(proxy.child, 10_000);
  } finally {
    rig.cleanup();
  }
  return out;
}

/** Scenario 7: a proxy with the binary cache on, over a fresh chroot shared store. */
async function pushScenarios(opts: Options, upstream: ServerProcess): Promise<ScenarioReport[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nix-reapi-bench-cache-'));
  try {
    const store = path.join(dir, 'shared-store');
    await makeChrootStore(store);
    const token = `bench-${randomBytes(12).toString('hex')}`;
    writeFileSync(path.join(dir, 'tokens'), `bench:${token} push-unsigned\n`);
    let cacheUrl: string | undefined;
    const proxy = await startProxy(
      opts,
      upstream,
      [
        '--shared-store',
        store,
        '--cache-listen',
        '127.0.0.1:0',
        '--auth-tokens-file',
        path.join(dir, 'tokens'),
        '--cache-staging-dir',
        path.join(dir, 'staging'),
      ],
      (line) => {
        if (line.msg === 'binary cache listening' && typeof line.publicUrl === 'string') cacheUrl = line.publicUrl;
      },
    );
    started.push({ name: 'proxy with the binary cache', pid: proxy.pid });
    progress(`proxy with the binary cache ${cacheUrl} (pid ${proxy.pid}), shared store ${store}`);
    const out = await pushScenario({
      proxy,
      cacheUrl: cacheUrl!,
      token,
      store,
      profile: opts.profile,
      progress,
      judge: opts.profile.name !== 'tiny',
    });
    await stopProcess(proxy.child, 10_000);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  const wants = (n: number): boolean => !opts.only || opts.only.has(n);
  const startedIso = new Date().toISOString();
  const loadAtStart = os.loadavg();
  const scenarios: ScenarioReport[] = [];
  const skipped: BenchReport['skipped'] = [];
  progress(
    `profile ${opts.profile.name}; starting the memory upstream and the proxy (${path.relative(REPO, opts.proxyCli)})`,
  );
  const upstream = await startServer('memory upstream', [UPSTREAM]);
  started.push({ name: 'memory upstream', pid: upstream.pid });
  const seed = await runJson<SeedResult>(
    'seeding',
    [LOAD_GENERATOR, JSON.stringify({ kind: 'seed', target: upstream.listen })],
    60_000,
  );
  if ([1, 2, 6].some(wants)) {
    const proxy = await startProxy(opts, upstream);
    started.push({ name: 'proxy', pid: proxy.pid });
    progress(`upstream ${upstream.listen} (pid ${upstream.pid}), proxy ${proxy.listen} (pid ${proxy.pid})`);
    const ends: Endpoints = { upstream, proxy };
    if (opts.front && frontAvailable()) {
      ends.front = await startFront(proxy.listen, upstream.listen);
      started.push({ name: ends.front.name, pid: ends.front.pid });
      progress(
        `front ${ends.front.listen} (pid ${ends.front.pid}): Execution, Capabilities, Health to the proxy, the rest to the upstream`,
      );
    } else if (opts.front) {
      skipped.push({
        scenario: 0,
        reason: 'front+proxy mode: haproxy is not installed (scripts/install-deps.sh installs it)',
      });
    }
    const ctx: ScenarioContext = {
      ends,
      profile: opts.profile,
      action: seed.action,
      progress,
      judge: opts.profile.name !== 'tiny',
    };
    if (wants(1)) scenarios.push(...(await smallUnaryCalls(ctx)));
    if (wants(2)) scenarios.push(...(await largeBlobs(ctx)));
    if (wants(6)) scenarios.push(...(await manyOpenStreams(ctx)));
    // Graceful stop, so that --cpu-prof gets written.
    await stopProcess(proxy.child, 10_000);
    if (ends.front) await stopProcess(ends.front.child, 5_000);
  }
  if ([3, 4, 5].some(wants)) {
    if (!nixAvailable()) {
      for (const n of [3, 4, 5])
        if (wants(n))
          skipped.push({
            scenario: n,
            reason: 'nix and nix-store are not available here (scripts/install-deps.sh installs them)',
          });
    } else {
      scenarios.push(...(await nixScenarios(opts, upstream, wants)));
    }
  }

  if (wants(7)) {
    if (!nixAvailable())
      skipped.push({ scenario: 7, reason: 'nix is not available here (scripts/install-deps.sh installs it)' });
    else scenarios.push(...(await pushScenarios(opts, upstream)));
  }

  const report: BenchReport = {
    version: 1,
    startedAt: startedIso,
    finishedAt: new Date().toISOString(),
    command: `npm run bench${opts.profile.name === 'full' ? '' : ` -- --${opts.profile.name}`}${opts.only ? ` --only ${[...opts.only].join(',')}` : ''}`,
    profile: opts.profile.name,
    gitCommit: gitCommit(REPO),
    machine: machineInfo(),
    scenarios,
    skipped,
    processes: started,
  };
  mkdirSync(path.dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, JSON.stringify(report, null, 2) + '\n');
  if (!opts.outGiven)
    writeFileSync(path.join(path.dirname(opts.out), 'latest.json'), JSON.stringify(report, null, 2) + '\n');
  const m = report.machine;
  process.stdout.write(
    `\n${markdownTable(scenarios)}\n\n${m.cpus} x ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.kernel}, Node ${m.node}; commit ${report.gitCommit ?? 'unknown'}\n`,
  );
  for (const s of skipped) process.stdout.write(`scenario ${s.scenario} skipped: ${s.reason}\n`);
  process.stdout.write(`JSON report: ${path.relative(process.cwd(), opts.out)}\n`);
  if (opts.docs) {
    const files = writeDocsReport(REPO, report, { atStart: loadAtStart, atEnd: os.loadavg() });
    process.stdout.write(`Docs: ${files.map((f) => path.relative(process.cwd(), f)).join(', ')}\n`);
  }
  return 0;
}

process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    progress(`${sig}: stopping everything`);
    void stopAll(2000).then(() => process.exit(130));
  });
}

main()
  .catch((err: unknown) => {
    progress(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  })
  .then(async (code) => {
    await stopAll();
    process.exit(code);
  });
