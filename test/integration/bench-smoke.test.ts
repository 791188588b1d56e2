import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BenchReport } from '../../bench/harness/bench-report';
import { nixAvailable } from '../support/nix-fixtures';

/**
 * The bench harness works end to end: in its tiny mode (a few hundred calls,
 * seconds) it starts the memory upstream, the proxy and the load generators as
 * processes, and writes a well-formed report with a direct and a proxied row
 * for every scenario. No timings are judged here: benchmarks are not tests.
 */
const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');
const HARNESS = path.join(REPO, 'dist', 'bench', 'bench', 'run-bench.js');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bench-smoke-'));
  // The global setup builds src/ only; the bench has its own tsconfig.
  await run(
    process.execPath,
    [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(REPO, 'bench', 'tsconfig.json')],
    { cwd: REPO },
  );
}, 120_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function bench(only: string, name: string): Promise<BenchReport> {
  const out = path.join(dir, `${name}.json`);
  await run(process.execPath, [HARNESS, '--tiny', '--only', only, '--out', out], {
    cwd: REPO,
    timeout: 150_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(await readFile(out, 'utf8')) as BenchReport;
}

function expectWellFormed(report: BenchReport, scenarios: number[]): void {
  expect(report.version).toBe(1);
  expect(report.profile).toBe('tiny');
  expect(report.command).toContain('npm run bench');
  expect(report.machine.cpus).toBeGreaterThan(0);
  expect(report.machine.node).toBe(process.version);
  expect(report.skipped).toEqual([]);
  expect([...new Set(report.scenarios.map((s) => s.scenario))].sort()).toEqual(scenarios);
  for (const s of report.scenarios) {
    // Pass-through scenarios add the front+proxy mode (HAProxy, which scripts/install-deps.sh installs).
    const passthrough = [1, 2, 6].includes(s.scenario);
    expect(
      s.rows.map((r) => r.mode),
      s.id,
    ).toEqual(passthrough ? ['direct', 'proxy', 'front+proxy'] : ['direct', 'proxy']);
    // The front's CPU was measured (tiny runs may round it to 0 jiffies).
    if (passthrough) expect(Number.isFinite(s.rows[2]!.frontCpuUsPerUnit), s.id).toBe(true);
    for (const row of s.rows) {
      expect(row.errors, `${s.id} ${row.mode}: ${row.firstErrors.join('; ')}`).toBe(0);
      expect(row.runs, s.id).toBeGreaterThan(0);
      expect(row.throughput, s.id).toBeGreaterThan(0);
    }
    expect(s.rows[1]!.proxyPeakRssMiB, s.id).toBeGreaterThan(0);
    expect(s.met, 'tiny runs are not judged').toBeNull();
    expect(s.runs.length, s.id).toBeGreaterThanOrEqual(2);
  }
  // Everything the bench started is gone once it exits.
  expect(report.processes.length).toBeGreaterThan(0);
  for (const p of report.processes)
    expect(() => process.kill(p.pid, 0), `${p.name} (pid ${p.pid}) still running`).toThrow();
}

describe('bench harness, tiny mode', () => {
  it('pass-through scenarios (1, 2, 6): a report with direct and proxied rows', async () => {
    const report = await bench('1,2,6', 'passthrough');
    expectWellFormed(report, [1, 2, 6]);
    expect(report.scenarios.map((s) => s.id)).toEqual([
      '1-find-missing-blobs-c1',
      '1-find-missing-blobs-c64',
      '1-get-action-result-c1',
      '1-get-action-result-c64',
      '2-write-1mib',
      '2-read-1mib',
      '6-open-execute-streams',
    ]);
    const streams = report.scenarios.find((s) => s.scenario === 6)!;
    expect(streams.detail?.peakOpenAtUpstreamThroughProxy).toBeGreaterThan(0);
  }, 180_000);

  it.skipIf(!nixAvailable())(
    'Nix-aware Execute scenarios (3, 4, 5): counts of Nix processes and store queries are reported',
    async () => {
      const report = await bench('3,4,5', 'execute');
      expectWellFormed(report, [3, 4, 5]);
      const [warm, cold, flight] = [3, 4, 5].map((n) => report.scenarios.find((s) => s.scenario === n)!);
      expect(warm!.detail?.nixProcessesDuringWarmRuns).toBe(0);
      const rounds = cold!.detail?.rounds as Array<{ storeQueries: number; nodes: number; outcome: string }>;
      expect(rounds[0]).toMatchObject({ storeQueries: 1, outcome: 'ready' });
      expect(rounds[0]!.nodes).toBeGreaterThan(0);
      expect(flight!.detail?.realisations).toBe(1);
    },
    180_000,
  );
});
