import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth } from '../../../src/server/health-check-client';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * Requests that announce a message and never finish it, before any token is
 * checked (Health needs none): the proxy reads at most a small Health
 * request, gives up on a request message that does not arrive within
 * limits.requestReadTimeoutMs (DEADLINE_EXCEEDED naming the setting), and 500
 * such streams leave its memory nearly where it was while a normal client is
 * served.
 */

const HEALTH = '/grpc.health.v1.Health/Check';

let work: string;
let proxy: ProxyProcess;

function rssBytes(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

/** Opens a gRPC stream on `session` and sends a frame header announcing `announced` bytes, then `send` bytes of it. */
function slowRequest(
  session: ClientHttp2Session,
  path: string,
  announced: number,
  send: number,
): Promise<{ status?: string; message?: string }> {
  return new Promise((resolve) => {
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let status: string | undefined;
    let message: string | undefined;
    const take = (h: Record<string, unknown>): void => {
      if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
      if (h['grpc-message'] !== undefined) message = decodeURIComponent(String(h['grpc-message']));
    };
    stream.on('response', take);
    stream.on('trailers', take);
    const settle = (): void => {
      resolve({ status, message });
      stream.close();
    };
    stream.on('data', () => {});
    stream.on('error', () => {});
    // The proxy ends its side (with a status) while ours is still open: that is the answer.
    stream.on('end', settle);
    stream.on('close', settle);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(announced, 1);
    stream.write(Buffer.concat([header, Buffer.alloc(send, 7)]));
  });
}

describe('requests that never finish', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'slow-requests-'));
    const tokens = join(work, 'tokens');
    writeFileSync(tokens, 'ci:slow-requests-0123456789abcdef\n');
    proxy = await startProxy([
      '--upstream',
      'grpc://127.0.0.1:1',
      '--auth-tokens-file',
      tokens,
      '--limits-request-read-timeout',
      '1500ms',
    ]);
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a Health request announcing 4 MiB is refused at once, before it is read', async () => {
    const session = connect(`http://${proxy.endpoint}`);
    try {
      const answer = await slowRequest(session, HEALTH, 4 * 1024 * 1024, 100);
      expect(answer.status).toBe(String(8)); // RESOURCE_EXHAUSTED
      expect(answer.message).toMatch(/16384/);
    } finally {
      session.close();
    }
  });

  it('a request message that does not arrive in time ends DEADLINE_EXCEEDED naming limits.requestReadTimeoutMs', async () => {
    const session = connect(`http://${proxy.endpoint}`);
    try {
      const answer = await slowRequest(session, HEALTH, 1000, 10);
      expect(answer.status).toBe(String(4));
      expect(answer.message).toMatch(/did not arrive within 1500 ms \(limits\.requestReadTimeoutMs\)/);
    } finally {
      session.close();
    }
  });

  it('500 Health streams without a token, each announcing 4 MiB and sending part of it, grow the proxy by under 100 MiB, and a normal client is served meanwhile', async () => {
    const before = rssBytes(proxy.pid);
    const sessions = Array.from({ length: 10 }, () => connect(`http://${proxy.endpoint}`));
    try {
      // Each announces 4 MiB and sends 256 KiB of it (125 MiB in all, were they kept).
      const pending = sessions.flatMap((s) =>
        Array.from({ length: 50 }, () => slowRequest(s, HEALTH, 4 * 1024 * 1024, 256 * 1024)),
      );
      await new Promise((r) => setTimeout(r, 500));
      const during = rssBytes(proxy.pid);
      expect((await checkHealth({ address: proxy.endpoint, timeoutMs: 5_000 })).exitCode).toBe(0);
      const answers = await Promise.all(pending);
      expect(during - before).toBeLessThan(100 * 1024 * 1024);
      // Every one of them was ended by the proxy, none left open.
      expect(answers.filter((a) => a.status !== String(8))).toEqual([]);
    } finally {
      for (const s of sessions) s.close();
    }
  }, 60_000);
});

describe('connection and stream bounds', () => {
  let bounded: ProxyProcess;
  beforeAll(async () => {
    bounded = await startProxy([
      '--upstream',
      'grpc://127.0.0.1:1',
      '--limits-connections',
      '5',
      '--limits-streams-per-connection',
      '20',
    ]);
  }, 60_000);
  afterAll(async () => {
    await bounded?.stop();
  });

  it('each connection is told it may open 20 calls at once (MAX_CONCURRENT_STREAMS)', async () => {
    const session = connect(`http://${bounded.endpoint}`);
    try {
      const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve) =>
        session.once('remoteSettings', resolve),
      );
      expect(settings.maxConcurrentStreams).toBe(20);
    } finally {
      session.close();
    }
  });

  it('a sixth connection is refused while five are held, and served once one goes', async () => {
    /** A connection the proxy took (it sent its SETTINGS), or undefined when it refused it. */
    const open = (): Promise<ClientHttp2Session | undefined> =>
      new Promise((resolve) => {
        const s = connect(`http://${bounded.endpoint}`);
        s.on('error', () => {});
        s.once('remoteSettings', () => resolve(s));
        s.once('close', () => resolve(undefined));
      });
    const held: ClientHttp2Session[] = [];
    try {
      // Connections of the test before may take a moment to be gone on the proxy's side: hold five, however many tries.
      for (let tries = 0; held.length < 5; tries++) {
        if (tries > 100) throw new Error(`could not hold 5 connections (held ${held.length})`);
        const s = await open();
        if (s) held.push(s);
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(await open()).toBeUndefined();
      held.pop()!.destroy();
      // Served again once the proxy has seen that connection go.
      let served: ClientHttp2Session | undefined;
      for (let tries = 0; !served && tries < 100; tries++) {
        served = await open();
        if (!served) await new Promise((r) => setTimeout(r, 100));
      }
      expect(served).toBeDefined();
      held.push(served!);
    } finally {
      for (const s of held) s.destroy();
    }
  }, 60_000);
});

describe('the request buffer budget', () => {
  let budgeted: ProxyProcess;
  beforeAll(async () => {
    budgeted = await startProxy([
      '--upstream',
      'grpc://127.0.0.1:1',
      '--limits-request-buffer',
      '1MiB',
      '--limits-request-read-timeout',
      '2s',
    ]);
  }, 60_000);
  afterAll(async () => {
    await budgeted?.stop();
  });

  it('reads beyond limits.requestBufferBytes across all calls are refused RESOURCE_EXHAUSTED naming it; the budget comes back', async () => {
    const sessions = Array.from({ length: 4 }, () => connect(`http://${budgeted.endpoint}`));
    try {
      // 100 unfinished Health requests of 12 KiB each: about 1.2 MiB held, were they all kept.
      const answers = await Promise.all(
        sessions.flatMap((s) => Array.from({ length: 25 }, () => slowRequest(s, HEALTH, 16 * 1024, 12 * 1024))),
      );
      const refused = answers.filter((a) => a.status === String(8));
      expect(refused.length).toBeGreaterThan(0);
      expect(refused[0]!.message).toMatch(/limits\.requestBufferBytes is 1048576/);
      expect(answers.filter((a) => a.status !== String(8) && a.status !== String(4))).toEqual([]);
      // Given back when each read ended: a normal call is served.
      expect((await checkHealth({ address: budgeted.endpoint, timeoutMs: 5_000 })).exitCode).toBe(0);
    } finally {
      for (const s of sessions) s.close();
    }
  }, 60_000);
});
