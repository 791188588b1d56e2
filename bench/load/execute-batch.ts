import { clientMetadata, executeRequest } from '../common/bench-data';
import { EXECUTE_DELAY_HEADER, PATHS } from '../common/grpc-wire';
import { summarize, type LatencySummary } from '../common/stats';
import { announceMeasuring, call, connect, framed, requestHeaders } from './http2-client';

export interface ExecuteBatchJob {
  kind: 'execute-batch';
  target: string;
  /** One Execute per action, all started at once. */
  actions: Array<{ hash: string; size: number }>;
  maxMs: number;
}

export interface ExecuteBatchResult {
  kind: 'execute-batch';
  calls: number;
  ok: number;
  errors: number;
  firstErrors: string[];
  /** From the first call started to the last one finished. */
  durationMs: number;
  latency: LatencySummary;
}

/** Starts an Execute for every action at once on one connection and waits for all (bounded by maxMs). */
export async function runExecuteBatch(job: ExecuteBatchJob): Promise<ExecuteBatchResult> {
  const session = await connect(job.target);
  try {
    const metadata = clientMetadata('execute-batch');
    metadata[EXECUTE_DELAY_HEADER] = '0';
    const headers = requestHeaders(PATHS.execute, metadata);
    const samples = new Float64Array(job.actions.length);
    let ok = 0;
    const firstErrors: string[] = [];
    await announceMeasuring();
    const started = performance.now();
    const all = Promise.all(
      job.actions.map(async (a, i) => {
        const t0 = performance.now();
        const r = await call(session, headers, framed(executeRequest(a)));
        samples[i] = performance.now() - t0;
        if (r.code === 0) ok++;
        else if (firstErrors.length < 5) firstErrors.push(`code ${r.code}: ${r.message}`);
      }),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), job.maxMs)));
    const outcome = await Promise.race([all, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') firstErrors.push(`calls still open after ${job.maxMs} ms`);
    return {
      kind: 'execute-batch',
      calls: job.actions.length,
      ok,
      errors: job.actions.length - ok,
      firstErrors,
      durationMs: performance.now() - started,
      latency: summarize(samples),
    };
  } finally {
    session.destroy();
  }
}
