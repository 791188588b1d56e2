import path from 'node:path';
import type { LoadJob } from '../load/load-generator';
import { runJson, type ServerProcess } from './child-processes';
import type { Mode, ProcessUsage, RunMeasure } from './measurement';
import { cpuMs, ProcessWatch } from './proc-stats';

export const LOAD_GENERATOR = path.join(__dirname, '..', 'load', 'load-generator.js');

export interface Endpoints {
  upstream: ServerProcess;
  proxy: ServerProcess;
  /** The HTTP/2 front in front of `proxy` (Execution/Capabilities/Health) and `upstream` (the rest); adds the front+proxy mode. */
  front?: ServerProcess;
}

export interface LoadResult {
  errors: number;
  firstErrors: string[];
  durationMs: number;
  latency?: RunMeasure['latency'];
  [k: string]: unknown;
}

/** How a job's result counts as work units (calls, bytes, streams). */
export type UnitsOf = (result: LoadResult) => number;

/** One load-generator run against one endpoint, with the proxy's memory and CPU watched meanwhile. */
export async function measure(
  ends: Endpoints,
  mode: Mode,
  round: number,
  job: LoadJob,
  units: UnitsOf,
  timeoutMs: number,
): Promise<RunMeasure> {
  // Counted from the load generator's "measuring" line (after set-up and warm-up) to its result line.
  let watch = new ProcessWatch(ends.proxy.pid);
  let frontWatch = ends.front ? new ProcessWatch(ends.front.pid) : undefined;
  let frontUsage: ProcessUsage | undefined;
  let upstreamCpu = cpuMs(ends.upstream.pid);
  let usage: ProcessUsage | undefined;
  let upstreamUsed = NaN;
  const onLine = (line: string): void => {
    if (line.startsWith('{"phase":"measuring"')) {
      watch.stop();
      watch = new ProcessWatch(ends.proxy.pid);
      frontWatch?.stop();
      frontWatch = ends.front ? new ProcessWatch(ends.front.pid) : undefined;
      upstreamCpu = cpuMs(ends.upstream.pid);
    } else if (usage === undefined) {
      usage = watch.stop();
      frontUsage = frontWatch?.stop();
      upstreamUsed = cpuMs(ends.upstream.pid) - upstreamCpu;
    }
  };
  let result: LoadResult;
  try {
    result = await runJson<LoadResult>('load generator', [LOAD_GENERATOR, JSON.stringify(job)], timeoutMs, onLine);
  } finally {
    if (usage === undefined) {
      usage = watch.stop();
      frontUsage = frontWatch?.stop();
      upstreamUsed = cpuMs(ends.upstream.pid) - upstreamCpu;
    }
  }
  const { errors, firstErrors, durationMs, latency, ...detail } = result;
  return {
    mode,
    round,
    units: units(result),
    durationMs,
    errors,
    firstErrors,
    latency,
    proxy: usage,
    front: frontUsage,
    upstreamCpuMs: upstreamUsed,
    detail,
  };
}

/**
 * Runs the same job directly against the upstream and through the proxy,
 * `rounds` times, alternating which goes first (direct, proxy, proxy,
 * direct, ...) so warm-up and drift do not favour one side. With a front,
 * front+proxy is a third mode and the order rotates through all three.
 */
export async function compare(
  ends: Endpoints,
  rounds: number,
  jobFor: (target: string) => LoadJob,
  units: UnitsOf,
  timeoutMs: number,
  progress: (msg: string) => void,
): Promise<RunMeasure[]> {
  const runs: RunMeasure[] = [];
  for (let round = 0; round < rounds; round++) {
    const order: Mode[] = ends.front
      ? rotate(['direct', 'proxy', 'front+proxy'], round)
      : round % 2 === 0
        ? ['direct', 'proxy']
        : ['proxy', 'direct'];
    for (const mode of order) {
      const target =
        mode === 'direct' ? ends.upstream.listen : mode === 'proxy' ? ends.proxy.listen : ends.front!.listen;
      const m = await measure(ends, mode, round, jobFor(target), units, timeoutMs);
      progress(`  round ${round + 1}/${rounds} ${mode.padEnd(6)} ${describeRun(m)}`);
      runs.push(m);
    }
  }
  return runs;
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

function describeRun(m: RunMeasure): string {
  const lat = m.latency ? ` median ${m.latency.medianMs.toFixed(3)} ms p99 ${m.latency.p99Ms.toFixed(3)} ms` : '';
  const err = m.errors ? ` ERRORS ${m.errors}: ${m.firstErrors[0] ?? ''}` : '';
  const front = m.front ? `, front cpu ${m.front.cpuMs.toFixed(0)} ms` : '';
  return `${m.units} units in ${m.durationMs.toFixed(0)} ms${lat}; proxy cpu ${m.proxy.cpuMs.toFixed(0)} ms${front}${err}`;
}
