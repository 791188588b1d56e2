/**
 * Process helpers for end-to-end tests: run a command to completion with a
 * bounded wait, and own long-running servers by process group so stopping one
 * also stops whatever it spawned.
 *
 * Every server started through `spawnServer` is recorded until it exits; if the
 * test process exits with servers still alive (a crashed test, a missing
 * afterAll), an 'exit' hook SIGKILLs their process groups so nothing outlives
 * the test run.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Killed (whole process group) after this long; the promise then rejects. */
  timeoutMs?: number;
  input?: string | Buffer;
}

const DEFAULT_RUN_TIMEOUT_MS = 300_000;
/** Output kept per stream; the tail is what explains a failure. */
const MAX_CAPTURE_CHARS = 4 * 1024 * 1024;

/** Appends to a string but keeps only the last `max` characters. */
export class TailBuffer {
  private text = '';
  constructor(private readonly max = MAX_CAPTURE_CHARS) {}
  push(chunk: string | Buffer): void {
    this.text += chunk.toString();
    if (this.text.length > this.max) this.text = this.text.slice(this.text.length - this.max);
  }
  toString(): string {
    return this.text;
  }
}

/** Runs `cmd args` (no shell) to completion and captures its output; never rejects on a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    track(child);
    const out = new TailBuffer();
    const err = new TailBuffer();
    child.stdout!.on('data', (d) => out.push(d));
    child.stderr!.on('data', (d) => err.push(d));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms; output:\n${out}\n${err}`));
        return;
      }
      resolve({ code, signal, stdout: out.toString(), stderr: err.toString() });
    });
  });
}

/** Like `run` but rejects, with the output, unless the command exits 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} failed (exit ${r.code ?? r.signal}):\n${r.stdout.slice(-8000)}\n${r.stderr.slice(-8000)}`,
    );
  }
  return r;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  if (child.pid === undefined) return;
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) killGroup(c, 'SIGKILL');
    });
  }
}

/** Signals the child's whole process group (it was spawned detached, so it leads one). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Resolves when the child has exited (immediately if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Stops a server: SIGTERM to its process group, SIGKILL if it has not exited
 * after `graceMs`, then waits for the exit. Safe to call more than once.
 */
export async function stopGroup(child: ChildProcess, graceMs = 10_000): Promise<void> {
  killGroup(child, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const forced = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      killGroup(child, 'SIGKILL');
      resolve();
    }, graceMs);
  });
  await Promise.race([exited(child), forced]);
  clearTimeout(timer);
  await exited(child);
  // Members of the group that outlived their leader (an action the worker was running).
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // None left.
  }
}

/** Spawns a long-running server as the leader of a new process group, tracked for the exit hook. */
export function spawnServer(cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts, detached: true });
  track(child);
  return child;
}

/**
 * Waits until `predicate` holds for the accumulated output of `child`
 * (stdout and stderr), rejecting if the child exits first or after `timeoutMs`.
 * Resolves with the match.
 */
export function waitForOutput(
  child: ChildProcess,
  pattern: RegExp,
  output: () => string,
  timeoutMs: number,
  what: string,
): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const m = output().match(pattern);
      if (m) {
        done();
        resolve(m);
        return true;
      }
      return false;
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (check()) return;
      done();
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready; output:\n${output().slice(-8000)}`));
    };
    const onData = (): void => void check();
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${what} was not ready within ${timeoutMs} ms; output:\n${output().slice(-8000)}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    // Listeners are added after the caller's own data handlers, so output() already has the chunk.
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
    check();
  });
}
