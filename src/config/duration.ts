/**
 * Durations in configuration: `250ms`, `30s`, `5m`, `2h`, `14d`, or a plain
 * integer meaning milliseconds. Pure: no I/O.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;

/** Milliseconds, or an explanation of why `text` is not a duration. */
export function parseDuration(text: string): { ms: number } | { error: string } {
  const match = DURATION_RE.exec(text.trim());
  if (!match) return { error: 'is not a duration (use e.g. 250ms, 30s, 5m, 2h, 14d, or an integer of milliseconds)' };
  const [, amount, unit] = match;
  if (unit === undefined && amount!.includes('.')) {
    return { error: 'is not a whole number of milliseconds (add a unit, e.g. 1.5s)' };
  }
  const ms = Number(amount) * UNIT_MS[unit ?? 'ms']!;
  if (!Number.isSafeInteger(ms)) {
    return { error: 'is not a whole number of milliseconds, or is too large' };
  }
  return { ms };
}

/** The shortest exact rendering: 30000 -> '30s', 90000 -> '90s', 1500 -> '1500ms'. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit]!;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
