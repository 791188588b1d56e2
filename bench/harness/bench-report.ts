/** The bench's output: the JSON document and the same figures as a Markdown table. */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import type { ScenarioReport } from './scenario-report';

export interface MachineInfo {
  cpuModel: string;
  cpus: number;
  memoryGiB: number;
  kernel: string;
  node: string;
}

export interface BenchReport {
  /** Format version of this document. */
  version: 1;
  startedAt: string;
  finishedAt: string;
  /** The command that produced it. */
  command: string;
  profile: string;
  gitCommit: string | null;
  machine: MachineInfo;
  scenarios: ScenarioReport[];
  /** Scenarios that could not run, and why. */
  skipped: Array<{ scenario: number; reason: string }>;
  /** The processes the bench started (all stopped when it ends). */
  processes: Array<{ name: string; pid: number }>;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpus: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

export function gitCommit(cwd: string): string | null {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd,
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src'], {
      cwd,
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return dirty ? `${head} (src modified)` : head;
  } catch {
    return null;
  }
}

const fmt = (v: number | null | undefined, digits = 3): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);

/** A Markdown table: one line per scenario variant and mode. */
export function markdownTable(scenarios: readonly ScenarioReport[]): string {
  const head = [
    '| # | scenario | mode | median ms | p99 ms | throughput | proxy CPU / unit | proxy peak RSS (growth) MiB | proxy/direct | added median ms | target | met |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const lines: string[] = [];
  for (const s of scenarios) {
    s.rows.forEach((r, i) => {
      const unitName =
        r.throughputUnit === 'MiB/s' ? 'µs/MiB' : r.throughputUnit === 'calls/s' ? 'µs/call' : 'µs/stream';
      const first = i === 0;
      lines.push(
        [
          first ? String(s.scenario) : '',
          first ? s.title : '',
          r.mode + (r.errors ? ` (${r.errors} errors)` : ''),
          fmt(r.medianMs),
          fmt(r.p99Ms),
          `${fmt(r.throughput, r.throughput >= 100 ? 0 : 1)} ${r.throughputUnit}`,
          r.mode === 'proxy'
            ? `${fmt(r.proxyCpuUsPerUnit, 0)} ${unitName}`
            : r.mode === 'front+proxy'
              ? `${fmt(r.proxyCpuUsPerUnit, 0)} + front ${fmt(r.frontCpuUsPerUnit ?? NaN, 0)} ${unitName}`
              : '',
          r.mode === 'proxy' ? `${fmt(r.proxyPeakRssMiB, 0)} (+${fmt(r.proxyRssGrowthMiB, 0)})` : '',
          first
            ? fmt(s.ratio, 2)
            : r.mode === 'front+proxy' && typeof s.detail?.frontPlusProxyRatio === 'number'
              ? `front+proxy ${fmt(s.detail.frontPlusProxyRatio, 2)}`
              : '',
          first ? fmt(s.addedMedianMs) : '',
          first ? s.target : '',
          first ? (s.met === null ? 'not judged' : s.met ? 'yes' : '**no**') : '',
        ]
          .join(' | ')
          .replace(/^/, '| ')
          .replace(/$/, ' |'),
      );
    });
  }
  return [...head, ...lines].join('\n');
}
