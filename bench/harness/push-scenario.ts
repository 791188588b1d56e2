/**
 * Scenario 7: a developer pushes a fresh closure to the proxy's binary cache
 * with stock `nix copy --to http://...`, against `nix copy --to file://` of
 * the same closure in the same run (direct), and against a bare HTTP server
 * that stores what it is sent and checks nothing (the floor any HTTP cache
 * pays with Nix's client). Each (round, compression) pushes its own newly
 * built closure, so the proxy's store never has it yet. The proxy's time is
 * the client's (`nix copy` exits once every path is accepted); the time until
 * every path is valid on the shared store is reported beside it.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../../test/support/e2e-process';
import { makeNixClient } from '../../test/support/nix-client';
import { buildPaths, run as runNix } from '../../test/support/nix-fixtures';
import type { ServerProcess } from './child-processes';
import { summarizeRuns, type RunMeasure } from './measurement';
import { ProcessWatch } from './proc-stats';
import type { Profile } from './profiles';
import { ratioOf, type ScenarioReport } from './scenario-report';

export interface PushScenarioContext {
  /** The proxy, started with --cache-listen and a push-unsigned token. */
  proxy: ServerProcess;
  cacheUrl: string;
  token: string;
  /** The proxy's shared store (a chroot store directory). */
  store: string;
  profile: Profile;
  progress: (msg: string) => void;
  judge: boolean;
}

const MIB = 1024 * 1024;

/** A bare binary cache: keeps what is PUT in memory, serves it back, checks nothing. */
async function floorServer(): Promise<{ url: string; close: () => Promise<void>; clear: () => void }> {
  const files = new Map<string, Buffer>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/nix-cache-info') return void res.end('StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n');
      if (req.method === 'PUT') {
        files.set(req.url ?? '', Buffer.concat(chunks));
        return void res.end('ok');
      }
      const body = files.get(req.url ?? '');
      if (!body) {
        res.statusCode = 404;
        return void res.end('absent');
      }
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    clear: () => files.clear(),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** `paths - 1` leaves of random bytes (nix-store --add) and a top referencing all of them. */
async function freshClosure(dir: string, paths: number, bytes: number): Promise<{ top: string; all: string[] }> {
  const files = Array.from({ length: paths - 1 }, (_, i) => path.join(dir, `leaf-${i}`));
  for (const f of files) writeFileSync(f, randomBytes(bytes));
  const leaves = (await runNix('nix-store', ['--add', ...files])).split('\n').filter((l) => l.length > 0);
  const top = (await buildPaths([{ name: 'push-top', deps: leaves, files: { refs: leaves.join('\n') } }]))['push-top'];
  if (!top) throw new Error('the closure top was not built');
  return { top, all: [...leaves, top] };
}

async function nixCopy(url: string, top: string, clientDir: string, token?: string): Promise<number> {
  const client = makeNixClient(clientDir, { token, defaultNarinfoTtls: true });
  const started = performance.now();
  const r = await run('nix', ['copy', '--to', url, top], { env: client.env, timeoutMs: 600_000 });
  const ms = performance.now() - started;
  if (r.code !== 0) throw new Error(`nix copy --to ${url} failed (${r.code}): ${r.stderr.slice(-2000)}`);
  return ms;
}

function measureOf(
  mode: 'direct' | 'proxy',
  round: number,
  units: number,
  ms: number,
  watch: ProcessWatch,
  detail: Record<string, unknown>,
): RunMeasure {
  return {
    mode,
    round,
    units,
    durationMs: ms,
    errors: 0,
    firstErrors: [],
    proxy: watch.stop(),
    upstreamCpuMs: 0,
    detail,
  };
}

/** Waits until `top` is valid on the shared store (its closure then is too: Nix's invariant). */
async function allValid(store: string, top: string, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await run('nix-store', ['--store', store, '--check-validity', top], { timeoutMs: 60_000 });
    if (r.code === 0) return;
    if (Date.now() > deadline) throw new Error(`${top} not valid on the shared store in time`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

export async function pushScenario(ctx: PushScenarioContext): Promise<ScenarioReport[]> {
  const { paths, pathBytes, rounds } = ctx.profile.push;
  const work = mkdtempSync(path.join(tmpdir(), 'nix-reapi-bench-push-'));
  const floor = await floorServer();
  const out: ScenarioReport[] = [];
  try {
    for (const compression of ['zstd', 'none'] as const) {
      const title = `nix copy --to of a fresh ${paths}-path closure (${Math.round((paths * pathBytes) / MIB)} MiB, compression=${compression})`;
      ctx.progress(`scenario 7: ${title}`);
      const runs: RunMeasure[] = [];
      const floorMs: number[] = [];
      const validMs: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const dir = path.join(work, `${compression}-${round}`);
        mkdirSync(dir, { recursive: true });
        const closure = await freshClosure(dir, paths, pathBytes);
        const bytes = paths * pathBytes;
        const order = round % 2 === 0 ? (['direct', 'proxy'] as const) : (['proxy', 'direct'] as const);
        for (const mode of order) {
          const watch = new ProcessWatch(ctx.proxy.pid);
          if (mode === 'direct') {
            const ms = await nixCopy(
              `file://${path.join(dir, 'file-cache')}?compression=${compression}`,
              closure.top,
              path.join(dir, 'client-direct'),
            );
            runs.push(measureOf('direct', round, bytes, ms, watch, {}));
          } else {
            const started = performance.now();
            const ms = await nixCopy(
              `${ctx.cacheUrl}?compression=${compression}`,
              closure.top,
              path.join(dir, 'client-proxy'),
              ctx.token,
            );
            await allValid(ctx.store, closure.top);
            const valid = performance.now() - started;
            validMs.push(valid);
            runs.push(measureOf('proxy', round, bytes, ms, watch, { allValidMs: Math.round(valid) }));
          }
        }
        floor.clear();
        floorMs.push(
          await nixCopy(`${floor.url}?compression=${compression}`, closure.top, path.join(dir, 'client-floor')),
        );
        const last = runs.slice(-2);
        ctx.progress(
          `  round ${round}: ${last.map((r) => `${r.mode} ${r.durationMs.toFixed(0)} ms`).join(', ')}, bare HTTP ${floorMs[floorMs.length - 1]!.toFixed(0)} ms, all valid ${validMs[validMs.length - 1]!.toFixed(0)} ms`,
        );
        rmSync(dir, { recursive: true, force: true });
      }
      const rows = [summarizeRuns(runs, 'direct', 'MiB/s'), summarizeRuns(runs, 'proxy', 'MiB/s')];
      const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
      const directMs = median(runs.filter((r) => r.mode === 'direct').map((r) => r.durationMs));
      const proxyMs = median(runs.filter((r) => r.mode === 'proxy').map((r) => r.durationMs));
      const timesDirect = proxyMs / directMs;
      const growth = rows[1]!.proxyRssGrowthMiB;
      out.push({
        id: `7-push-${compression}`,
        scenario: 7,
        title,
        rows,
        ratio: ratioOf(rows),
        addedMedianMs: null,
        target: 'push time <= 1.5x nix copy --to file:// of the same closure; proxy peak RSS growth <= 64 MiB',
        met: ctx.judge ? timesDirect <= 1.5 && growth <= 64 : null,
        detail: {
          directMs: Math.round(directMs),
          proxyMs: Math.round(proxyMs),
          proxyTimesDirect: Math.round(timesDirect * 100) / 100,
          bareHttpMs: Math.round(median(floorMs)),
          bareHttpTimesDirect: Math.round((median(floorMs) / directMs) * 100) / 100,
          proxyTimesBareHttp: Math.round((proxyMs / median(floorMs)) * 100) / 100,
          allValidMs: Math.round(median(validMs)),
          proxyRssGrowthMiB: growth,
        },
        runs,
      });
    }
  } finally {
    await floor.close();
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}
