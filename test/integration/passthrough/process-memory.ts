import { readFileSync } from 'node:fs';

/**
 * Resident memory of another process, from /proc/<pid>/status (Linux):
 * VmRSS now, VmHWM the peak since the process started.
 */
export function memoryBytes(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]) * 1024;
  };
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

/**
 * Samples a process's RSS at an interval while a transfer runs (to report how
 * memory moved), alongside VmHWM, which also catches spikes between samples.
 */
export class RssSampler {
  private readonly timer: NodeJS.Timeout;
  private max = 0;
  samples = 0;

  constructor(
    private readonly pid: number,
    intervalMs = 50,
  ) {
    this.take();
    this.timer = setInterval(() => this.take(), intervalMs);
  }

  private take(): void {
    try {
      this.max = Math.max(this.max, memoryBytes(this.pid).rss);
      this.samples++;
    } catch {
      // The process is gone; the test sees that on its own.
    }
  }

  /** Stops sampling; returns the largest RSS seen. */
  stop(): number {
    clearInterval(this.timer);
    this.take();
    return this.max;
  }
}

export const MiB = 1024 * 1024;
