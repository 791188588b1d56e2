import type { ClientHttp2Session } from 'node:http2';
import { clientMetadata, executeRequest } from '../common/bench-data';
import { EXECUTE_DELAY_HEADER, OPEN_EXECUTES_TRAILER, PATHS } from '../common/grpc-wire';
import { summarize, type LatencySummary } from '../common/stats';
import { announceMeasuring, call, connect, framed, requestHeaders } from './http2-client';

export interface StreamsJob {
  kind: 'streams';
  target: string;
  /** Execute calls opened at once. */
  streams: number;
  /** Client connections they are spread over (many clients, as in a build farm). */
  connections: number;
  /** How long the upstream holds each Execute before answering done. */
  delayMs: number;
  maxMs: number;
  action: { hash: string; size: number };
}

export interface StreamsResult {
  kind: 'streams';
  streams: number;
  ok: number;
  errors: number;
  firstErrors: string[];
  /** Most Execute calls the upstream saw open at once (from its trailer): proof they were concurrent. */
  peakOpenAtUpstream: number;
  /** Time to issue every call. */
  rampMs: number;
  durationMs: number;
  latency: LatencySummary;
}

/** Opens `streams` Execute calls as fast as the client can, then waits for all of them (bounded by maxMs). */
export async function runStreams(job: StreamsJob): Promise<StreamsResult> {
  const sessions: ClientHttp2Session[] = [];
  try {
    for (let i = 0; i < job.connections; i++) sessions.push(await connect(job.target));
    const metadata = clientMetadata('streams');
    metadata[EXECUTE_DELAY_HEADER] = String(job.delayMs);
    const headers = requestHeaders(PATHS.execute, metadata);
    const body = framed(executeRequest(job.action));
    const samples = new Float64Array(job.streams);
    let ok = 0;
    let errors = 0;
    let peak = 0;
    const firstErrors: string[] = [];
    await announceMeasuring();
    const started = performance.now();
    const pending: Promise<void>[] = [];
    for (let i = 0; i < job.streams; i++) {
      const t0 = performance.now();
      pending.push(
        call(sessions[i % sessions.length]!, headers, body).then((r) => {
          samples[i] = performance.now() - t0;
          peak = Math.max(peak, Number(r.trailers[OPEN_EXECUTES_TRAILER] ?? 0));
          if (r.code === 0) ok++;
          else {
            errors++;
            if (firstErrors.length < 5) firstErrors.push(`code ${r.code}: ${r.message}`);
          }
        }),
      );
      // Let responses and flow control through between batches.
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    const rampMs = performance.now() - started;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), job.maxMs)));
    const outcome = await Promise.race([Promise.all(pending), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      firstErrors.push(`${job.streams - ok - errors} calls still open after ${job.maxMs} ms`);
      errors += job.streams - ok - errors;
    }
    return {
      kind: 'streams',
      streams: job.streams,
      ok,
      errors,
      firstErrors,
      peakOpenAtUpstream: peak,
      rampMs,
      durationMs: performance.now() - started,
      latency: summarize(samples.subarray(0, job.streams)),
    };
  } finally {
    for (const s of sessions) s.destroy();
  }
}
