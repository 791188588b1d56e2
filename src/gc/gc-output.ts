/**
 * Reading what `nix-store --gc` says. Nix 2.8 prints a summary on stdout,
 * "N store paths deleted, X.XX MiB freed" (sizes via its showBytes, always
 * MiB with two decimals), and one "deleting '/nix/store/...'" line per path
 * on stderr. Pure.
 */

export interface GcSummary {
  pathsDeleted: number;
  /** As Nix reports it: whole bytes from a MiB figure with two decimals (±5 KiB). */
  bytesFreed: number;
}

const SUMMARY_RE = /(\d+) store paths? deleted, (\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB) freed/;
const UNIT: Record<string, number> = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };

export function parseGcSummary(stdout: string): GcSummary | undefined {
  const m = SUMMARY_RE.exec(stdout);
  if (!m) return undefined;
  return { pathsDeleted: Number(m[1]), bytesFreed: Math.round(Number(m[2]) * UNIT[m[3]!]!) };
}

/** True for the stderr line Nix prints per deleted store path. */
export function isDeletingLine(line: string): boolean {
  return /^deleting '\/nix\/store\/[^/']+'$/.test(line.trim());
}
