/**
 * The HTTP/2 front for the bench's front+proxy mode: Debian's haproxy with
 * the shipped deploy/front/haproxy.cfg, routing Execution, Capabilities and
 * Health to the proxy and everything else to the upstream, on 127.0.0.1.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import { adopt, type ServerProcess } from './child-processes';

const HAPROXY = '/usr/sbin/haproxy';
// Compiled to dist/bench/bench/harness/.
const CONFIG = path.resolve(__dirname, '..', '..', '..', '..', 'deploy', 'front', 'haproxy.cfg');

export function frontAvailable(): boolean {
  return existsSync(HAPROXY) && existsSync(CONFIG);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

const accepts = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });

export async function startFront(proxy: string, upstream: string): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(HAPROXY, ['-db', '-f', CONFIG], {
    env: {
      PATH: process.env.PATH,
      FRONT_LISTEN: `127.0.0.1:${port}`,
      PROXY_ADDR: proxy,
      CLUSTER_ADDR: upstream,
      FRONT_THREADS: '1',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  adopt(child);
  let out = '';
  child.stderr!.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-16_384)));
  for (let i = 0; !(await accepts(port)); i++) {
    if (child.exitCode !== null || i > 400) throw new Error(`haproxy did not start on 127.0.0.1:${port}:\n${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { name: 'front (haproxy)', pid: child.pid!, listen: `127.0.0.1:${port}`, child, output: () => out };
}
