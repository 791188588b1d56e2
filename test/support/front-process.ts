import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import path from 'node:path';

/**
 * The shipped HTTP/2 front (deploy/front/haproxy.cfg, Debian's haproxy, which
 * scripts/install-deps.sh installs) as a child process on 127.0.0.1, in front
 * of a proxy and a cluster. Started and stopped by its PID.
 */

export const FRONT_CONFIG = path.resolve(__dirname, '..', '..', 'deploy', 'front', 'haproxy.cfg');
const HAPROXY = '/usr/sbin/haproxy';
const READY_ATTEMPTS = 200;

export interface FrontProcess {
  pid: number;
  port: number;
  /** host:port, for grpc-js clients. */
  endpoint: string;
  child: ChildProcess;
  logs(): string;
  stop(): Promise<void>;
}

export function frontAvailable(): boolean {
  return existsSync(HAPROXY);
}

/** Which topology the pass-through tests run against: the proxy alone, or the front + the proxy (NRP_FRONT=haproxy). */
export function frontMode(): 'haproxy' | undefined {
  return process.env.NRP_FRONT === 'haproxy' ? 'haproxy' : undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function stripScheme(address: string): string {
  return address.replace(/^grpcs?:\/\//, '');
}

/** Starts HAProxy routing Execution/Capabilities/Health to `proxy` and the rest to `cluster` (host:port or grpc://host:port). */
export async function startFront(options: { proxy: string; cluster: string; threads?: number }): Promise<FrontProcess> {
  if (!frontAvailable())
    throw new Error(`${HAPROXY} is missing: run scripts/install-deps.sh (it installs Debian's haproxy)`);
  const port = await freePort();
  const child = spawn(HAPROXY, ['-db', '-f', FRONT_CONFIG], {
    env: {
      PATH: process.env.PATH,
      FRONT_LISTEN: `127.0.0.1:${port}`,
      PROXY_ADDR: stripScheme(options.proxy),
      CLUSTER_ADDR: stripScheme(options.cluster),
      FRONT_THREADS: String(options.threads ?? 1),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let out = '';
  // Keeps the last 64 KiB: HAProxy logs a line per call.
  child.stderr!.on('data', (c: Buffer) => {
    out = (out + c.toString()).slice(-65_536);
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      resolve();
    }),
  );
  for (let attempt = 0; ; attempt++) {
    if (exitCode !== undefined) throw new Error(`haproxy exited with ${exitCode} before listening:\n${out}`);
    if (await accepts(port)) break;
    if (attempt >= READY_ATTEMPTS) {
      child.kill('SIGKILL');
      throw new Error(`haproxy did not listen on 127.0.0.1:${port}:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    port,
    endpoint: `127.0.0.1:${port}`,
    child,
    logs: () => out,
    stop: async () => {
      if (exitCode === undefined) {
        process.kill(child.pid!, 'SIGTERM');
        const timer = setTimeout(() => exitCode === undefined && process.kill(child.pid!, 'SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}
