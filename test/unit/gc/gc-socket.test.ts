import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors';
import { GcRoots } from '../../../src/gc/gc-roots';
import { tellRunningGc } from '../../../src/gc/gc-socket';
import { NO_METRICS } from '../../../src/metrics/metrics';
import { testLogger } from '../../support/test-logger';
import { storePath } from '../store/fake-nix';
import { MemoryRootFs } from './memory-root-fs';

const A = storePath('a');
const B = storePath('b');

let dir: string;
let n = 0;

/** A stand-in for Nix's GC socket server: records lines, answers '1' per line unless told not to. */
async function fakeGc(opts: { answer?: boolean; closeAfterFirst?: boolean; onLine?: (line: string) => void } = {}) {
  const path = join(dir, `gc-${n++}.sock`);
  const lines: string[] = [];
  const clients = new Set<Socket>();
  const server: Server = createServer((socket) => {
    clients.add(socket);
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        lines.push(line);
        opts.onLine?.(line);
        if (opts.closeAfterFirst) {
          socket.end('1');
          return;
        }
        if (opts.answer !== false) socket.write('1');
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  const stop = () =>
    new Promise<void>((r) => {
      for (const c of clients) c.destroy();
      server.close(() => r());
    });
  return { path, lines, stop };
}

describe('tellRunningGc', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gc-socket-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('no socket: no GC is running', async () => {
    expect(await tellRunningGc(join(dir, 'none.sock'), [A], 1000)).toBe('no-gc-running');
  });

  it('a stale socket file nobody listens on: no GC is running', async () => {
    const gc = await fakeGc();
    await gc.stop();
    const stale = join(dir, 'stale.sock');
    // A leftover socket from a finished GC refuses connections; a plain file does the same for connect().
    await writeFile(stale, '');
    const answers = await Promise.all([tellRunningGc(gc.path, [A], 1000), tellRunningGc(stale, [A], 1000)]);
    for (const a of answers) expect(a).toBe('no-gc-running');
  });

  it('a running GC hears one line per path and acknowledges each', async () => {
    const gc = await fakeGc();
    expect(await tellRunningGc(gc.path, [A, B], 1000)).toBe('told');
    expect(gc.lines).toEqual([A, B]);
    await gc.stop();
  });

  it('a GC that ends mid-way has no later chance to delete: told', async () => {
    const gc = await fakeGc({ closeAfterFirst: true });
    expect(await tellRunningGc(gc.path, [A, B], 1000)).toBe('told');
    await gc.stop();
  });

  it('a GC that exits with our lines unread (the connection reset, not closed): told, as for a close', async () => {
    const path = join(dir, `gc-reset-${n++}.sock`);
    // Never read (paused from the start): the lines stay in the kernel's queue, and going away with them
    // unread resets the connection (ECONNRESET at the client), as a Nix GC exiting mid-conversation does.
    const server = createServer({ pauseOnConnect: true }, (socket) => {
      setTimeout(() => socket.destroy(), 50);
    });
    await new Promise<void>((r) => server.listen(path, r));
    try {
      expect(await tellRunningGc(path, [A, B], 5_000)).toBe('told');
    } finally {
      server.close();
    }
  });

  it('a GC that never answers: UNAVAILABLE after the timeout', async () => {
    const gc = await fakeGc({ answer: false });
    const err = await tellRunningGc(gc.path, [A], 50).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).message).toContain('did not acknowledge');
    await gc.stop();
  });

  it('GcRoots announces fresh paths to a running GC after their roots exist, and held ones never again', async () => {
    const fs = new MemoryRootFs(() => 0);
    fs.addDir('/s');
    const rootOf = (p: string) => fs.link(`/s/roots/${p.slice(11)}`);
    const seenWithRoot: boolean[] = [];
    const gc = await fakeGc({ onLine: (line) => seenWithRoot.push(rootOf(line) !== undefined) });
    const roots = new GcRoots({
      dir: '/s/roots',
      mustExist: '/s',
      replica: 'r',
      host: 'h',
      pid: 1,
      fs,
      now: () => 0,
      touchIntervalMs: 3_600_000,
      lingerMs: 60_000,
      leaseRefreshMs: 30_000,
      maxHeldPaths: 100,
      logger: testLogger(),
      metrics: NO_METRICS,
      gcSocket: gc.path,
    });
    (await roots.acquire([A, B])).release();
    (await roots.acquire([A])).release();
    expect(gc.lines.sort()).toEqual([A, B].sort());
    expect(seenWithRoot).toEqual([true, true]);
    await gc.stop();
  });
});
