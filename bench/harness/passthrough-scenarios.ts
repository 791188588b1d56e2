/** Scenarios 1, 2 and 6: what forwarding costs, with no Nix work involved. */
import type { TransferJob } from '../load/blob-transfer';
import type { StreamsJob } from '../load/open-streams';
import type { UnaryJob, UnaryMethod } from '../load/unary-load';
import { compare, type Endpoints, type LoadResult } from './compare-runs';
import { summarizeModes, type ModeRow } from './measurement';
import type { Profile } from './profiles';
import { addedMedianOf, ratioOf, type ScenarioReport } from './scenario-report';

export interface ScenarioContext {
  ends: Endpoints;
  profile: Profile;
  /** The Action the memory upstream holds (from seeding), for Execute jobs. */
  action: { hash: string; size: number };
  progress: (msg: string) => void;
  /** False in tiny mode: targets are shown but not judged. */
  judge: boolean;
}

const MIB = 1024 * 1024;
const calls = (r: LoadResult): number => Number(r.calls ?? 0);
const bytes = (r: LoadResult): number => Number(r.bytes ?? 0);

const METHOD_TITLE: Record<UnaryMethod, string> = {
  findMissingBlobs: 'FindMissingBlobs (100 digests)',
  getActionResult: 'GetActionResult',
  execute: 'Execute',
};
const METHOD_ID: Record<UnaryMethod, string> = {
  findMissingBlobs: 'find-missing-blobs',
  getActionResult: 'get-action-result',
  execute: 'execute',
};

/** Scenario 1: small unary calls at concurrency 1 (latency) and 64 (throughput). */
export async function smallUnaryCalls(ctx: ScenarioContext): Promise<ScenarioReport[]> {
  const out: ScenarioReport[] = [];
  const { unary } = ctx.profile;
  for (const method of ['findMissingBlobs', 'getActionResult'] as const) {
    for (const concurrency of [1, 64]) {
      const title = `${METHOD_TITLE[method]}, concurrency ${concurrency}`;
      ctx.progress(`scenario 1: ${title}`);
      const job = (target: string): UnaryJob => ({
        kind: 'unary',
        target,
        method,
        concurrency,
        calls: concurrency === 1 ? unary.callsAtC1 : unary.callsAtC64,
        warmupCalls: unary.warmupCalls,
        maxMs: unary.maxMs,
      });
      const runs = await compare(ctx.ends, ctx.profile.rounds, job, calls, unary.maxMs * 2 + 30_000, ctx.progress);
      const rows = summarizeModes(runs, 'calls/s');
      const ratio = ratioOf(rows);
      const added = addedMedianOf(rows);
      const errorsFree = rows.every((r) => r.errors === 0);
      const [target, met] =
        concurrency === 1
          ? ['added median latency <= 0.3 ms', added !== null && added <= 0.3]
          : ['throughput ratio >= 0.7', ratio !== null && ratio >= 0.7];
      out.push({
        id: `1-${METHOD_ID[method]}-c${concurrency}`,
        scenario: 1,
        title,
        rows,
        ratio,
        addedMedianMs: added,
        target: `${target}, no errors`,
        met: ctx.judge ? met && errorsFree : null,
        detail: frontDetail(rows),
        runs,
      });
    }
  }
  return out;
}

/** Scenario 2: ByteStream Write and Read of large blobs; throughput and the proxy's memory. */
export async function largeBlobs(ctx: ScenarioContext): Promise<ScenarioReport[]> {
  const out: ScenarioReport[] = [];
  const { blobs } = ctx.profile;
  const variants: Array<{ size: number; rounds: number; repeat: number; judgeRatio: boolean }> = [
    { size: blobs.size, rounds: blobs.rounds, repeat: blobs.repeat, judgeRatio: true },
  ];
  if (blobs.bigSize > 0) variants.push({ size: blobs.bigSize, rounds: 1, repeat: 1, judgeRatio: false });
  for (const v of variants) {
    for (const kind of ['write', 'read'] as const) {
      const title = `ByteStream.${kind === 'write' ? 'Write' : 'Read'} of ${sizeLabel(v.size)}${v.repeat > 1 ? ` (${v.repeat} in a row per run)` : ''}`;
      ctx.progress(`scenario 2: ${title}`);
      // A generous bound: 1 MiB/s would be broken anyway.
      const maxMs = Math.max(60_000, (v.size / MIB) * v.repeat * 1000);
      const job = (target: string): TransferJob => ({
        kind,
        target,
        size: v.size,
        repeat: v.repeat,
        warmup: v.repeat > 1,
        maxMs,
      });
      const runs = await compare(ctx.ends, v.rounds, job, bytes, maxMs + 30_000, ctx.progress);
      const rows = summarizeModes(runs, 'MiB/s');
      const ratio = ratioOf(rows);
      const growth = rows[1]!.proxyRssGrowthMiB;
      const memoryOk = growth <= 64;
      const errorsFree = rows.every((r) => r.errors === 0);
      out.push({
        id: `2-${kind}-${sizeLabel(v.size).replace(' ', '').toLowerCase()}`,
        scenario: 2,
        title,
        rows,
        ratio,
        addedMedianMs: null,
        target: v.judgeRatio ? 'throughput ratio >= 0.9, proxy RSS growth <= 64 MiB' : 'proxy RSS growth <= 64 MiB',
        met: ctx.judge ? errorsFree && memoryOk && (!v.judgeRatio || (ratio !== null && ratio >= 0.9)) : null,
        detail: frontDetail(rows),
        runs,
      });
    }
  }
  return out;
}

/** Scenario 6: thousands of Execute streams held open by a slow upstream. */
export async function manyOpenStreams(ctx: ScenarioContext): Promise<ScenarioReport[]> {
  const { streams } = ctx.profile;
  const title = `${streams.count} concurrent Execute streams, upstream answers after ${streams.delayMs} ms`;
  ctx.progress(`scenario 6: ${title}`);
  const maxMs = streams.delayMs + 120_000;
  const job = (target: string): StreamsJob => ({
    kind: 'streams',
    target,
    streams: streams.count,
    connections: streams.connections,
    delayMs: streams.delayMs,
    maxMs,
    action: ctx.action,
  });
  const runs = await compare(ctx.ends, 1, job, (r) => Number(r.ok ?? 0), maxMs + 30_000, ctx.progress);
  const rows = summarizeModes(runs, 'streams/s');
  const proxied = runs.find((r) => r.mode === 'proxy');
  const peakOpen = Number(proxied?.detail.peakOpenAtUpstream ?? 0);
  const errorsFree = rows.every((r) => r.errors === 0);
  return [
    {
      id: '6-open-execute-streams',
      scenario: 6,
      title,
      rows,
      ratio: ratioOf(rows),
      addedMedianMs: addedMedianOf(rows),
      target: 'no errors, proxy RSS <= 1 GiB, all streams open at once',
      met: ctx.judge ? errorsFree && rows[1]!.proxyPeakRssMiB <= 1024 && peakOpen === streams.count : null,
      detail: { peakOpenAtUpstreamThroughProxy: peakOpen, rampMsThroughProxy: proxied?.detail.rampMs },
      runs,
    },
  ];
}

/** front+proxy against direct: its throughput ratio and the CPU per unit of the front and of the proxy. */
function frontDetail(rows: readonly ModeRow[]): Record<string, unknown> | undefined {
  const d = rows.find((r) => r.mode === 'direct');
  const f = rows.find((r) => r.mode === 'front+proxy');
  if (!d || !f) return undefined;
  return {
    frontPlusProxyRatio: d.throughput > 0 ? Math.round((f.throughput / d.throughput) * 1000) / 1000 : null,
    frontCpuUsPerUnit: f.frontCpuUsPerUnit,
    proxyCpuUsPerUnitBehindFront: f.proxyCpuUsPerUnit,
  };
}

function sizeLabel(bytes: number): string {
  return bytes >= 1024 * MIB ? `${bytes / 1024 / MIB} GiB` : `${bytes / MIB} MiB`;
}
