/** What one load-generator run against one endpoint measured, and how runs of a scenario are summed up. Pure. */
import type { LatencySummary } from '../common/stats';
import { median } from '../common/stats';

/** direct: the upstream alone; proxy: through the proxy; front+proxy: through the HTTP/2 front (deploy/front/haproxy.cfg) with the proxy behind it. */
export type Mode = 'direct' | 'proxy' | 'front+proxy';

export interface ProcessUsage {
  rssStartBytes: number;
  rssPeakBytes: number;
  rssGrowthBytes: number;
  cpuMs: number;
}

export interface RunMeasure {
  mode: Mode;
  round: number;
  /** Work units done (calls, bytes, streams) and how long it took. */
  units: number;
  durationMs: number;
  errors: number;
  firstErrors: string[];
  latency?: LatencySummary;
  /** The proxy process during this run (also in direct runs, where it should idle). */
  proxy: ProcessUsage;
  /** The front process during this run, when the bench runs one. */
  front?: ProcessUsage;
  upstreamCpuMs: number;
  /** Anything else the load generator reported. */
  detail: Record<string, unknown>;
}

export type ThroughputUnit = 'calls/s' | 'MiB/s' | 'streams/s';

export interface ModeRow {
  mode: Mode;
  runs: number;
  /** Median over runs of each run's median latency / p99 (ms). */
  medianMs: number | null;
  p99Ms: number | null;
  throughput: number;
  throughputUnit: ThroughputUnit;
  errors: number;
  firstErrors: string[];
  /** Highest proxy RSS seen during these runs, and its largest growth over the run's start (MiB). */
  proxyPeakRssMiB: number;
  proxyRssGrowthMiB: number;
  /** Proxy CPU per work unit (µs per call, per MiB, per stream). */
  proxyCpuUsPerUnit: number;
  /** Front CPU per work unit, when a front ran. */
  frontCpuUsPerUnit: number | null;
  upstreamCpuUsPerUnit: number;
  /** The load generator's own CPU per unit, where it reports it (unary calls). */
  clientCpuUsPerUnit: number | null;
}

const MIB = 1024 * 1024;

export function summarizeRuns(runs: readonly RunMeasure[], mode: Mode, unit: ThroughputUnit): ModeRow {
  const mine = runs.filter((r) => r.mode === mode);
  const perUnit = (ms: number, r: RunMeasure): number =>
    r.units > 0 ? (ms * 1000) / (unit === 'MiB/s' ? r.units / MIB : r.units) : NaN;
  const latencies = mine.map((r) => r.latency).filter((l): l is LatencySummary => l !== undefined);
  return {
    mode,
    runs: mine.length,
    medianMs: latencies.length ? round3(median(latencies.map((l) => l.medianMs))) : null,
    p99Ms: latencies.length ? round3(median(latencies.map((l) => l.p99Ms))) : null,
    throughput: round3(median(mine.map((r) => (unit === 'MiB/s' ? r.units / MIB : r.units) / (r.durationMs / 1000)))),
    throughputUnit: unit,
    errors: mine.reduce((n, r) => n + r.errors, 0),
    firstErrors: mine.flatMap((r) => r.firstErrors).slice(0, 5),
    proxyPeakRssMiB: round3(Math.max(0, ...mine.map((r) => r.proxy.rssPeakBytes / MIB))),
    proxyRssGrowthMiB: round3(Math.max(0, ...mine.map((r) => r.proxy.rssGrowthBytes / MIB))),
    proxyCpuUsPerUnit: round3(median(mine.map((r) => perUnit(r.proxy.cpuMs, r)))),
    frontCpuUsPerUnit: mine.some((r) => r.front !== undefined)
      ? round3(median(mine.map((r) => perUnit(r.front?.cpuMs ?? NaN, r))))
      : null,
    upstreamCpuUsPerUnit: round3(median(mine.map((r) => perUnit(r.upstreamCpuMs, r)))),
    clientCpuUsPerUnit: mine.some((r) => typeof r.detail.clientCpuUsPerCall === 'number')
      ? round3(median(mine.map((r) => Number(r.detail.clientCpuUsPerCall))))
      : null,
  };
}

/** The rows of a scenario: direct, proxy and, when the runs include it, front+proxy. */
export function summarizeModes(runs: readonly RunMeasure[], unit: ThroughputUnit): ModeRow[] {
  const modes: Mode[] = runs.some((r) => r.mode === 'front+proxy')
    ? ['direct', 'proxy', 'front+proxy']
    : ['direct', 'proxy'];
  return modes.map((m) => summarizeRuns(runs, m, unit));
}

export function round3(v: number): number {
  return Number.isFinite(v) ? Math.round(v * 1000) / 1000 : NaN;
}
