/**
 * The bench's figures as Markdown files under docs/bench/, one per scenario,
 * each saying which run made it (date, commit, command, machine, load), so a
 * partial run (`--only 3`) replaces only the scenarios it measured and no
 * figure in the docs outlives the run that made it without saying so.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { markdownTable, type BenchReport } from './bench-report';

export interface LoadAverages {
  atStart: readonly number[];
  atEnd: readonly number[];
}

const load = (l: readonly number[]): string => l.map((v) => v.toFixed(2)).join(' / ');

/** The Markdown of one scenario's file. Pure. */
export function scenarioMarkdown(report: BenchReport, scenario: number, loads: LoadAverages): string {
  const rows = report.scenarios.filter((s) => s.scenario === scenario);
  const m = report.machine;
  const details = rows
    .filter((s) => s.detail !== undefined)
    .map((s) => `- ${s.title}: \`${JSON.stringify(s.detail)}\``);
  return [
    `# Bench scenario ${scenario}: ${rows[0]?.title ?? ''}`,
    '',
    '<!-- Written by bench/run-bench.ts; do not edit by hand: re-run the bench to update it. -->',
    '',
    `Run: \`${report.command}\`, ${report.startedAt} to ${report.finishedAt}, proxy built from commit ${report.gitCommit ?? 'unknown'}.`,
    `Machine: ${m.cpus} x ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.kernel}, Node ${m.node}; load average (1/5/15 min) ${load(loads.atStart)} at the start, ${load(loads.atEnd)} at the end.`,
    '',
    markdownTable(rows),
    '',
    ...(details.length > 0 ? ['Scenario figures from the same run:', '', ...details, ''] : []),
  ].join('\n');
}

/** Writes docs/bench/scenario-N.md for every scenario the report measured; returns the files written. */
export function writeDocsReport(repo: string, report: BenchReport, loads: LoadAverages): string[] {
  const dir = path.join(repo, 'docs', 'bench');
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const n of [...new Set(report.scenarios.map((s) => s.scenario))].sort((a, b) => a - b)) {
    const file = path.join(dir, `scenario-${n}.md`);
    writeFileSync(file, scenarioMarkdown(report, n, loads));
    written.push(file);
  }
  return written;
}
