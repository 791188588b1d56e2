import type { ModeRow, RunMeasure } from './measurement';

/** One line of the bench's result: a scenario variant, its direct and proxied rows, and its target. */
export interface ScenarioReport {
  /** Stable id, e.g. "1-find-missing-blobs-c64". */
  id: string;
  /** Scenario number from the benchmark plan (1-6). */
  scenario: number;
  title: string;
  rows: ModeRow[];
  /** Proxied throughput / direct throughput. */
  ratio: number | null;
  /** Proxied median latency minus direct median latency (ms). */
  addedMedianMs: number | null;
  target: string;
  /** Whether the target was met; null when not judged (tiny mode, or nothing to compare). */
  met: boolean | null;
  /** Scenario-specific figures (process counts, peak open streams, ...). */
  detail?: Record<string, unknown>;
  /** Every run behind the rows, in the order they ran. */
  runs: RunMeasure[];
}

export function ratioOf(rows: readonly ModeRow[]): number | null {
  const d = rows.find((r) => r.mode === 'direct');
  const p = rows.find((r) => r.mode === 'proxy');
  if (!d || !p || !(d.throughput > 0)) return null;
  return Math.round((p.throughput / d.throughput) * 1000) / 1000;
}

export function addedMedianOf(rows: readonly ModeRow[]): number | null {
  const d = rows.find((r) => r.mode === 'direct');
  const p = rows.find((r) => r.mode === 'proxy');
  if (d?.medianMs == null || p?.medianMs == null) return null;
  return Math.round((p.medianMs - d.medianMs) * 1000) / 1000;
}
