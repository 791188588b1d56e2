/**
 * The text the `prune` command prints: what was dropped (or would be), what
 * was kept and why, rooted closure size before and after, and what the GC
 * freed. Pure.
 */
import { formatDuration } from '../config/duration';
import type { DropReason } from './prune-plan';
import type { PruneReport } from './prune-roots';

const REASON_TEXT: Record<DropReason, string> = {
  unused: 'unused',
  'over-budget': 'over budget',
  'not-valid': 'path not valid',
};

/** 1536 -> '1.5 KiB (1536 bytes)'. */
export function humanBytes(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 'bytes';
  for (const u of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = u;
  }
  return unit === 'bytes' ? `${bytes} bytes` : `${value.toFixed(1)} ${unit} (${bytes} bytes)`;
}

/** A coarse age: '3d', '5h', '12m', '40s'. */
function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s >= 86_400) return `${Math.floor(s / 86_400)}d`;
  if (s >= 3_600) return `${Math.floor(s / 3_600)}h`;
  if (s >= 60) return `${Math.floor(s / 60)}m`;
  return `${s}s`;
}

export function formatPruneReport(report: PruneReport, nowMs: number): string {
  const lines: string[] = [];
  const verb = report.dryRun ? 'would drop' : 'dropped';
  lines.push(`GC roots of ${report.store} in ${report.rootsDir}${report.dryRun ? ' (dry run: nothing changed)' : ''}`);
  const rules = [
    report.unusedForMs !== undefined ? `unused for ${formatDuration(report.unusedForMs)} or more` : undefined,
    report.budgetBytes !== undefined ? `rooted size budget ${humanBytes(report.budgetBytes)}` : undefined,
  ].filter((r): r is string => r !== undefined);
  if (rules.length > 0) lines.push(`rules: ${rules.join('; ')}`);

  const counts = new Map<DropReason, number>();
  for (const d of report.dropped) counts.set(d.reason, (counts.get(d.reason) ?? 0) + 1);
  const byReason = [...counts].map(([r, n]) => `${REASON_TEXT[r]}: ${n}`).join(', ');
  lines.push(`${verb} ${report.dropped.length} of ${report.rootsBefore} roots${byReason ? ` (${byReason})` : ''}`);
  for (const d of report.dropped) {
    lines.push(
      `  ${d.path}  last used ${new Date(d.lastUsedMs).toISOString()} (${age(nowMs - d.lastUsedMs)} ago)  ${REASON_TEXT[d.reason]}`,
    );
  }
  for (const s of report.spared) {
    lines.push(
      `  kept ${s.path}: ${s.why === 'leased' ? 'a running action took it during the prune' : 'used during the prune'}`,
    );
  }
  for (const p of report.restored) lines.push(`  re-rooted ${p}: a running action took it during the prune`);
  lines.push(
    `kept ${report.rootsAfter} roots${report.keptForLeases > 0 ? `, ${report.keptForLeases} of them only because running actions use them` : ''}` +
      ` (live leases: ${report.leases.live}, stale: ${report.leases.stale})`,
  );
  if (report.foreign > 0) lines.push(`left alone ${report.foreign} entries the proxy did not make`);
  lines.push(
    `rooted closure size: ${humanBytes(report.rootedBytesBefore)} before, ${humanBytes(report.rootedBytesAfter)} ${report.dryRun ? 'after (would be)' : 'after'}`,
  );
  if (report.overBudgetBytes > 0) {
    lines.push(
      `over budget by ${humanBytes(report.overBudgetBytes)}: closures that running actions use are never dropped`,
    );
  }
  if (report.gc) {
    lines.push(
      `garbage collection: ${report.gc.pathsDeleted} store paths deleted, ${humanBytes(report.gc.bytesFreed)} freed (as reported by Nix)`,
    );
  }
  return lines.join('\n') + '\n';
}
