/**
 * Splits a long list of arguments (store paths) into chunks that keep each
 * command line well under the kernel's limit (ARG_MAX, shared with the
 * environment), so a large closure never fails with E2BIG. Pure.
 */

/** Bytes of argument text per process; ARG_MAX is usually 2 MiB including the environment. */
export const DEFAULT_ARGV_BUDGET_BYTES = 256 * 1024;
/** Arguments per process, whatever their size. */
export const DEFAULT_ARGV_MAX_COUNT = 4096;

export function chunkArgs(
  args: readonly string[],
  budgetBytes = DEFAULT_ARGV_BUDGET_BYTES,
  maxCount = DEFAULT_ARGV_MAX_COUNT,
): string[][] {
  const chunks: string[][] = [];
  let current: string[] = [];
  let size = 0;
  for (const arg of args) {
    // Each argument costs its bytes, a NUL and a pointer in argv.
    const cost = Buffer.byteLength(arg) + 1 + 8;
    if (current.length > 0 && (size + cost > budgetBytes || current.length >= maxCount)) {
      chunks.push(current);
      current = [];
      size = 0;
    }
    current.push(arg);
    size += cost;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
