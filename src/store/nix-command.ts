/**
 * Running `nix` and `nix-store`. Everything the proxy asks of Nix goes through
 * a NixRunner, so tests can count and fault-inject spawns, and so every
 * process gets the same guarantees: argument arrays (never a shell), an
 * environment that never consults substituters implicitly, a timeout, an
 * AbortSignal, bounded capture, and no process left behind.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { STORE_PATH_RE } from '../nix/store-path';
import { chunkArgs } from './argv-chunks';

export type NixProgram = 'nix' | 'nix-store';

export interface NixInvocation {
  program: NixProgram;
  args: readonly string[];
  /** Overrides the runner's timeout for this process. */
  timeoutMs?: number;
  /** Receives each stderr line as it arrives (Nix reports progress there). */
  onStderrLine?: (line: string) => void;
  /**
   * Where stdout goes instead of being captured (a NAR streamed to an HTTP
   * response): piped with backpressure, never ended by the runner, not
   * bounded by maxStdoutBytes; the outcome's stdout is then empty.
   */
  stdout?: import('node:stream').Writable;
}

export interface NixOutcome {
  /** null when the process was ended by a signal it was not sent by us. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** The last part of stderr (bounded). */
  stderr: string;
  ms: number;
}

/**
 * Runs one Nix process.
 *
 * Contract: resolves with the outcome of any process that ends on its own,
 * whatever its exit code (interpreting it is the caller's job). Rejects with a
 * ProxyError only when the runner ends or cannot start the process:
 * CANCELLED (signal aborted), DEADLINE_EXCEEDED (timeout), UNAVAILABLE (the
 * binary cannot be started), RESOURCE_EXHAUSTED (stdout over the bound). When
 * it rejects after spawning, the process group has already exited. Safe to
 * call concurrently.
 */
export interface NixRunner {
  run(invocation: NixInvocation, signal: AbortSignal): Promise<NixOutcome>;
}

export interface SpawnNixRunnerOptions {
  /** Directory holding nix and nix-store; unset = found on PATH. */
  binDir?: string;
  timeoutMs: number;
  /** Base environment; default process.env. */
  env?: NodeJS.ProcessEnv;
  maxStdoutBytes?: number;
  maxStderrBytes?: number;
  /** Between SIGTERM and SIGKILL when stopping a process. */
  killGraceMs?: number;
  /**
   * Runs each process under `setpriv --pdeathsig KILL` (util-linux), so Nix
   * processes die with the proxy even when it is killed with SIGKILL and
   * cannot stop them itself. Default: on where /usr/bin/setpriv exists.
   */
  dieWithProxy?: boolean;
}

const SETPRIV = '/usr/bin/setpriv';
/** setpriv's exit codes when it cannot exec the program (util-linux: EX_EXEC_FAILED, EX_EXEC_ENOENT). */
const SETPRIV_EXEC_FAILED = new Set([126, 127]);

/**
 * Appended to any NIX_CONFIG the proxy inherits. Empty `substituters` keeps
 * Nix from asking cache.nixos.org (seconds of DNS failure offline) or any
 * other cache behind the operator's back: sources are always named
 * explicitly. The negative narinfo TTL of 0 keeps a path pushed to a cache a
 * minute ago from being reported missing for an hour.
 */
export const FORCED_NIX_CONFIG = [
  'substituters =',
  'extra-experimental-features = nix-command',
  'narinfo-cache-negative-ttl = 0',
];

export function nixEnvironment(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const inherited = base.NIX_CONFIG ? [base.NIX_CONFIG] : [];
  return { ...base, NIX_CONFIG: [...inherited, ...FORCED_NIX_CONFIG].join('\n') };
}

/** `nix copy --from X --to Y (3 paths)`: a command for messages, store paths counted, not listed. */
export function describeInvocation(inv: Pick<NixInvocation, 'program' | 'args'>): string {
  const paths = inv.args.filter((a) => STORE_PATH_RE.test(a)).length;
  const words = inv.args.filter((a) => !STORE_PATH_RE.test(a)).slice(0, 8);
  return `${inv.program} ${words.join(' ')}${paths > 0 ? ` (${paths} path${paths === 1 ? '' : 's'})` : ''}`;
}

const MAX_LINE = 4096;

export class SpawnNixRunner implements NixRunner {
  private readonly env: NodeJS.ProcessEnv;
  private readonly maxStdout: number;
  private readonly maxStderr: number;
  private readonly killGraceMs: number;
  private readonly dieWithProxy: boolean;

  constructor(private readonly options: SpawnNixRunnerOptions) {
    this.env = nixEnvironment(options.env ?? process.env);
    this.maxStdout = options.maxStdoutBytes ?? 64 * 1024 * 1024;
    this.maxStderr = options.maxStderrBytes ?? 64 * 1024;
    this.killGraceMs = options.killGraceMs ?? 2_000;
    this.dieWithProxy = options.dieWithProxy ?? existsSync(SETPRIV);
  }

  run(inv: NixInvocation, signal: AbortSignal): Promise<NixOutcome> {
    const what = describeInvocation(inv);
    if (signal.aborted) return Promise.reject(cancelled(what));
    const file = this.options.binDir ? join(this.options.binDir, inv.program) : inv.program;
    const timeoutMs = inv.timeoutMs ?? this.options.timeoutMs;
    const started = Date.now();

    return new Promise<NixOutcome>((resolve, reject) => {
      // detached: the child leads its own process group, so ssh and other
      // helpers it starts are stopped with it.
      const [program, args] = this.dieWithProxy
        ? [SETPRIV, ['--pdeathsig', 'KILL', '--', file, ...inv.args]]
        : [file, [...inv.args]];
      const child = spawn(program, args, { env: this.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const stdout: Buffer[] = [];
      let stdoutBytes = 0;
      let stderrTail = '';
      let partialLine = '';
      let stopReason: ProxyError | undefined;
      let killTimer: NodeJS.Timeout | undefined;
      let destroyTimer: NodeJS.Timeout | undefined;
      let settled = false;

      const stop = (reason: ProxyError): void => {
        if (stopReason) return;
        stopReason = reason;
        signalGroup(child.pid, 'SIGTERM');
        killTimer = setTimeout(() => {
          signalGroup(child.pid, 'SIGKILL');
          // A grandchild that escaped the group could hold the pipes open: close them ourselves.
          destroyTimer = setTimeout(() => {
            child.stdout?.destroy();
            child.stderr?.destroy();
          }, 1_000);
        }, this.killGraceMs);
      };
      const timer = setTimeout(
        () =>
          stop(
            new ProxyError(
              Code.DEADLINE_EXCEEDED,
              'NIX_COMMAND_TIMEOUT',
              `${what} ran longer than ${timeoutMs} ms and was stopped; raise limits.nixCommandTimeoutMs if large closures need longer, or check that the stores involved respond`,
            ),
          ),
        timeoutMs,
      );
      const onAbort = (): void => stop(cancelled(what));
      signal.addEventListener('abort', onAbort, { once: true });

      const finish = (): void => {
        settled = true;
        clearTimeout(timer);
        clearTimeout(killTimer);
        clearTimeout(destroyTimer);
        signal.removeEventListener('abort', onAbort);
      };

      if (inv.stdout) {
        const sink = inv.stdout;
        child.stdout.pipe(sink, { end: false });
        // The reader going away (the client hung up) stops the process.
        sink.once('close', () => {
          if (!settled) stop(cancelled(what));
        });
      } else
        child.stdout.on('data', (chunk: Buffer) => {
          stdoutBytes += chunk.length;
          if (stdoutBytes > this.maxStdout) {
            stop(
              new ProxyError(
                Code.RESOURCE_EXHAUSTED,
                'NIX_OUTPUT_TOO_LARGE',
                `${what} printed more than ${this.maxStdout} bytes and was stopped`,
              ),
            );
            return;
          }
          stdout.push(chunk);
        });
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (text: string) => {
        stderrTail = (stderrTail + text).slice(-this.maxStderr);
        if (!inv.onStderrLine) return;
        const parts = (partialLine + text).split('\n');
        partialLine = parts.pop()!.slice(-MAX_LINE);
        for (const line of parts) if (line.trim()) inv.onStderrLine(line.slice(0, MAX_LINE));
      });
      const notRunnable = (why: string, cause?: Error): ProxyError =>
        new ProxyError(
          Code.UNAVAILABLE,
          'NIX_NOT_RUNNABLE',
          `cannot run ${file}: ${why}; install Nix (2.8 or later) on the proxy host, or set nixBinDir to the directory holding nix and nix-store`,
          cause ? { cause } : undefined,
        );
      child.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        // Spawn failures (ENOENT, EACCES) arrive here and 'close' may follow; answer once.
        if (child.pid === undefined) {
          finish();
          reject(notRunnable(err.code ?? err.message, err));
        }
      });
      child.on('close', (exitCode, sig) => {
        if (settled) return;
        finish();
        if (stopReason) {
          reject(stopReason);
          return;
        }
        if (
          this.dieWithProxy &&
          exitCode !== null &&
          SETPRIV_EXEC_FAILED.has(exitCode) &&
          /^setpriv: failed to execute/m.test(stderrTail)
        ) {
          reject(
            notRunnable(
              stderrTail
                .trim()
                .split('\n')
                .pop()!
                .replace(/^setpriv: failed to execute \S+: /, ''),
            ),
          );
          return;
        }
        resolve({
          exitCode,
          signal: sig,
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: stderrTail,
          ms: Date.now() - started,
        });
      });
    });
  }
}

function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // Already gone.
  }
}

function cancelled(what: string): ProxyError {
  return new ProxyError(Code.CANCELLED, 'CANCELLED', `${what} was cancelled because the request was cancelled`);
}

/**
 * Runs one command per chunk of `paths` (appended after `fixedArgs`), one
 * after the other, so argv stays under the OS limit. Stops at the first
 * chunk that exits non-zero and returns the outcomes so far.
 */
export async function runOverPaths(
  runner: NixRunner,
  base: Omit<NixInvocation, 'args'> & { fixedArgs: readonly string[] },
  paths: readonly string[],
  signal: AbortSignal,
): Promise<NixOutcome[]> {
  const outcomes: NixOutcome[] = [];
  const fixedBytes = base.fixedArgs.reduce((n, a) => n + Buffer.byteLength(a) + 9, 0);
  for (const chunk of chunkArgs(paths, Math.max(4096, 256 * 1024 - fixedBytes))) {
    const { fixedArgs, ...rest } = base;
    const outcome = await runner.run({ ...rest, args: [...fixedArgs, ...chunk] }, signal);
    outcomes.push(outcome);
    if (outcome.exitCode !== 0) break;
  }
  return outcomes;
}

/**
 * The Nix runner the configuration asks for (nixBinDir, limits.nixCommandTimeoutMs).
 * src/main.ts builds one and hands it to every part that runs Nix; the
 * factories fall back to this only when used on their own (prune, tests).
 */
export function configuredNixRunner(config: {
  nixBinDir?: string;
  limits: { nixCommandTimeoutMs: number };
}): NixRunner {
  return new SpawnNixRunner({ binDir: config.nixBinDir, timeoutMs: config.limits.nixCommandTimeoutMs });
}
