import { spawn, type ChildProcess } from 'node:child_process';

/** A long-running child (upstream, proxy) that announced its address with a JSON "listening" line. */
export interface ServerProcess {
  name: string;
  pid: number;
  /** host:port it listens on. */
  listen: string;
  child: ChildProcess;
  /** Its output so far (for error reports). */
  output(): string;
}

const OUTPUT_KEEP = 64 * 1024;
const live = new Set<ChildProcess>();

/** Tracks a child started elsewhere (not a node script), so stopAll and killAllNow stop it too. */
export function adopt(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/**
 * Starts `node args...` and resolves once it prints a JSON line with
 * msg "listening" and a "listen" address; rejects if it exits first or takes
 * longer than `timeoutMs`.
 */
export function startServer(
  name: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; onJsonLine?: (line: Record<string, unknown>) => void } = {},
): Promise<ServerProcess> {
  const child = spawn(process.execPath, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let out = '';
  const keep = (s: string): void => {
    out = (out + s).slice(-OUTPUT_KEEP);
  };
  return new Promise((resolve, reject) => {
    let partial = '';
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      stopProcess(child);
      reject(new Error(`${name} did not report listening within ${options.timeoutMs ?? 20_000} ms:\n${out}`));
    }, options.timeoutMs ?? 20_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      const s = chunk.toString('utf8');
      keep(s);
      if (done && !options.onJsonLine) return;
      partial += s;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        let obj: Record<string, unknown>;
        try {
          obj = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        options.onJsonLine?.(obj);
        if (!done && obj.msg === 'listening' && typeof obj.listen === 'string') {
          done = true;
          clearTimeout(timer);
          resolve({ name, pid: child.pid!, listen: obj.listen, child, output: () => out });
          return;
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => keep(chunk.toString('utf8')));
    child.once('exit', (code, signal) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${out}`));
    });
  });
}

/**
 * Runs `node args...` to completion; resolves its last stdout line parsed as
 * JSON. `onLine` sees every complete stdout line as it arrives. Killed after `timeoutMs`.
 */
export function runJson<T>(
  name: string,
  args: string[],
  timeoutMs: number,
  onLine?: (line: string) => void,
): Promise<T> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let err = '';
  let partial = '';
  child.stdout!.on('data', (c: Buffer) => {
    const s = c.toString('utf8');
    out = (out + s).slice(-4 * 1024 * 1024);
    if (!onLine) return;
    partial += s;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      onLine(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
  });
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString('utf8')).slice(-OUTPUT_KEEP)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => stopProcess(child), timeoutMs);
    child.once('exit', (code, signal) => {
      live.delete(child);
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      let parsed: unknown;
      try {
        parsed = JSON.parse(last);
      } catch {
        parsed = undefined;
      }
      const failure =
        parsed && typeof parsed === 'object' && 'error' in parsed
          ? String((parsed as { error: unknown }).error)
          : undefined;
      if (code === 0 && parsed !== undefined && !failure) resolve(parsed as T);
      else
        reject(
          new Error(
            `${name} failed (${code ?? signal}${signal === 'SIGKILL' ? `, killed after ${timeoutMs} ms` : ''}): ${failure ?? last}\n${err}`,
          ),
        );
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  const pid = child.pid;
  return new Promise((resolve) => {
    const killer = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      clearTimeout(killer);
      resolve();
    }
  });
}

/** Stops every child this process started that is still running, by PID. */
export async function stopAll(graceMs = 5000): Promise<void> {
  await Promise.all([...live].map((c) => stopProcess(c, graceMs)));
}

/** Last resort on exit: SIGKILL whatever is left, synchronously. */
export function killAllNow(): void {
  for (const c of live) {
    try {
      if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
