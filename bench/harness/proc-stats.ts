import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

/** Memory and CPU of another process, from /proc (Linux). Missing data reads as NaN, never throws. */

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

function statusField(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

export function rssBytes(pid: number): number {
  return statusField(pid, 'VmRSS');
}

/** Peak RSS since start or since the last `resetPeakRss`. */
export function peakRssBytes(pid: number): number {
  return statusField(pid, 'VmHWM');
}

/** Resets the kernel's peak-RSS mark (clear_refs 5); false where that is not allowed. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** User + system CPU time in ms. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state(3) ... utime(14) stime(15), so index 11 and 12 here.
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / clockTicks();
  } catch {
    return NaN;
  }
}

/**
 * Watches a process while a measurement runs: peak RSS (kernel mark, plus
 * sampling where the mark cannot be reset) and CPU time used.
 */
export class ProcessWatch {
  private readonly startRss: number;
  private readonly startCpu: number;
  private readonly markReset: boolean;
  private sampledPeak: number;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    sampleMs = 20,
  ) {
    this.startRss = rssBytes(pid);
    this.startCpu = cpuMs(pid);
    this.markReset = resetPeakRss(pid);
    this.sampledPeak = this.startRss;
    this.timer = setInterval(() => {
      const r = rssBytes(pid);
      if (r > this.sampledPeak) this.sampledPeak = r;
    }, sampleMs);
  }

  stop(): { rssStartBytes: number; rssPeakBytes: number; rssGrowthBytes: number; cpuMs: number } {
    clearInterval(this.timer);
    const mark = this.markReset ? peakRssBytes(this.pid) : NaN;
    const peak = Math.max(this.sampledPeak, Number.isFinite(mark) ? mark : 0, rssBytes(this.pid) || 0);
    return {
      rssStartBytes: this.startRss,
      rssPeakBytes: peak,
      rssGrowthBytes: peak - this.startRss,
      cpuMs: cpuMs(this.pid) - this.startCpu,
    };
  }
}
