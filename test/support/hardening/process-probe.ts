import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * What a running process holds, read from /proc (Linux): open file
 * descriptors, child processes, resident memory. Leak checks compare two
 * snapshots taken while the process is idle.
 */

export interface ProcessSnapshot {
  fds: number;
  /** What each descriptor points at (socket:[...], pipe:[...], a path), for messages. */
  fdTargets: string[];
  /** PIDs of direct children (all threads). */
  children: number[];
  rssBytes: number;
  /** Peak resident memory since start (VmHWM). */
  peakRssBytes: number;
}

export function fdTargets(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  const out: string[] = [];
  for (const fd of readdirSync(dir)) {
    try {
      out.push(readlinkSync(`${dir}/${fd}`));
    } catch {
      // Closed between readdir and readlink.
    }
  }
  return out;
}

export function childPids(pid: number): number[] {
  const out = new Set<number>();
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  for (const task of tasks) {
    try {
      for (const word of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(/\s+/)) {
        if (word) out.add(Number(word));
      }
    } catch {
      // Thread gone.
    }
  }
  return [...out];
}

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

export function rssBytes(pid: number): number {
  return statusKb(pid, 'VmRSS');
}

export function peakRssBytes(pid: number): number {
  return statusKb(pid, 'VmHWM');
}

export function snapshot(pid: number): ProcessSnapshot {
  const targets = fdTargets(pid);
  return {
    fds: targets.length,
    fdTargets: targets,
    children: childPids(pid),
    rssBytes: rssBytes(pid),
    peakRssBytes: peakRssBytes(pid),
  };
}

/** Descriptor kinds with counts ('socket' 12, 'pipe' 4, '/dev/null' 1 ...), for readable failure messages. */
export function fdSummary(targets: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of targets) {
    const kind = /^(socket|pipe|anon_inode):/.exec(t)?.[1] ?? t;
    out[kind] = (out[kind] ?? 0) + 1;
  }
  return out;
}

/**
 * Polls until `check` holds (descriptors of closed sockets go away a little
 * after the close is observed); returns the last value either way.
 */
export async function settle<T>(read: () => T, check: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let value = read();
  while (!check(value) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    value = read();
  }
  return value;
}
