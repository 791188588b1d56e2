/**
 * The binary cache answers a push before Nix has imported it into the
 * shared store; tests that look at the store afterwards first wait for the
 * proxy's own word that each path is valid (its "pushed path valid" debug
 * line) or that an import failed. Bounded: a wait that runs out fails the
 * test with the proxy's log.
 */
import type { ProxyProcess } from './proxy-process';

export async function importsSettled(
  proxy: ProxyProcess,
  paths: readonly string[],
  from = 0,
  timeoutMs = 180_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = proxy.logLines().slice(from);
    const valid = new Set(lines.filter((l) => l.msg === 'pushed path valid').map((l) => String(l.path)));
    if (paths.every((p) => valid.has(p))) return;
    if (lines.some((l) => l.msg === 'pushed path not imported')) return;
    if (Date.now() > deadline) {
      const missing = paths.filter((p) => !valid.has(p));
      throw new Error(
        `the proxy did not report ${missing.length} pushed paths valid (first ${missing[0]}):\n${proxy.logs().slice(-6000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** How many times the proxy imported each of `paths` (its "pushed path valid" lines with outcome "imported"). */
export function importCounts(proxy: ProxyProcess, paths: readonly string[], from = 0): Map<string, number> {
  const counts = new Map(paths.map((p) => [p, 0]));
  for (const l of proxy.logLines().slice(from)) {
    if (l.msg !== 'pushed path valid' || l.outcome !== 'imported') continue;
    const p = String(l.path);
    if (counts.has(p)) counts.set(p, counts.get(p)! + 1);
  }
  return counts;
}
