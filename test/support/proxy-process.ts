import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli.js');

export interface ProxyProcess {
  port: number;
  pid: number;
  /** grpc://127.0.0.1:PORT, for Bazel's --remote_executor. */
  url: string;
  /** host:port, for grpc-js clients. */
  endpoint: string;
  /** http://127.0.0.1:PORT of the binary cache, when --cache-listen was given. */
  cacheUrl?: string;
  child: ChildProcess;
  /** Everything the proxy printed so far (JSON log lines). */
  logs(): string;
  /** Parsed JSON log lines. */
  logLines(): Array<Record<string, unknown>>;
  /** SIGTERM, wait for exit (SIGKILL after `graceMs` + 5 s); resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * Runs the built proxy (`node dist/src/cli.js`) listening on 127.0.0.1:0 and
 * waits for its "listening" log line to learn the port. `args` must include
 * `--upstream`; `--listen` defaults to 127.0.0.1:0.
 */
export async function startProxy(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; cli?: string } = {},
): Promise<ProxyProcess> {
  const cli = options.cli ?? CLI;
  if (!existsSync(cli))
    throw new Error(`${cli} is missing: run \`npm run build\` first (the test suite's global setup does)`);
  const fullArgs = args.includes('--listen') ? args : ['--listen', '127.0.0.1:0', ...args];
  const child = spawn(process.execPath, [cli, ...fullArgs], {
    cwd: options.cwd ?? REPO_ROOT,
    env: {
      ...process.env,
      NIX_REAPI_PROXY_LOG_LEVEL: process.env.NIX_REAPI_PROXY_LOG_LEVEL ?? 'debug',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const lines: Array<Record<string, unknown>> = [];
  let partial = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let cacheUrl: string | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      partial += chunk.toString();
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        try {
          const obj = JSON.parse(line) as Record<string, unknown>;
          lines.push(obj);
          if (obj.msg === 'binary cache listening' && typeof obj.publicUrl === 'string') cacheUrl = obj.publicUrl;
          if (obj.msg === 'listening' && typeof obj.listen === 'string') resolve(Number(obj.listen.split(':').pop()));
        } catch {
          // not JSON: kept in logs() only
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    void exited.then((code) => reject(new Error(`proxy exited with ${code} before listening:\n${out}`)));
  });
  return {
    port,
    pid: child.pid!,
    url: `grpc://127.0.0.1:${port}`,
    endpoint: `127.0.0.1:${port}`,
    ...(cacheUrl !== undefined ? { cacheUrl } : {}),
    child,
    logs: () => out,
    logLines: () => lines,
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      process.kill(child.pid!, 'SIGTERM');
      const killer = setTimeout(() => {
        try {
          process.kill(child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, graceMs + 5000);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
}
