/**
 * Byte sizes in configuration: `4194304`, `512KiB`, `4MiB`, `1GiB` (powers of
 * 1024) or `2MB`, `1GB` (powers of 1000); units are case-insensitive. Pure.
 */

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([a-z]+)?$/i;

/** Bytes, or an explanation of why `text` is not a size. */
export function parseSize(text: string): { bytes: number } | { error: string } {
  const match = SIZE_RE.exec(text.trim());
  const unit = match?.[2]?.toLowerCase();
  if (!match || (unit !== undefined && !(unit in UNIT_BYTES))) {
    return { error: 'is not a size (use e.g. 4194304, 512KiB, 4MiB, 1GiB, 2MB)' };
  }
  const bytes = Number(match[1]) * UNIT_BYTES[unit ?? 'b']!;
  if (!Number.isSafeInteger(bytes)) return { error: 'is not a whole number of bytes, or is too large' };
  return { bytes };
}

/** The shortest exact binary rendering: 4194304 -> '4MiB', 1000 -> '1000'. */
export function formatSize(bytes: number): string {
  for (const unit of ['TiB', 'GiB', 'MiB', 'KiB'] as const) {
    const size = UNIT_BYTES[unit.toLowerCase()]!;
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}
