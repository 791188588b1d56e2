import {
  clientMetadata,
  executeRequest,
  findMissingRequest,
  getActionResultRequest,
  unaryCorpus,
} from '../common/bench-data';
import { EXECUTE_DELAY_HEADER, PATHS } from '../common/grpc-wire';
import { summarize, type LatencySummary } from '../common/stats';
import { announceMeasuring, call, connect, framed, requestHeaders } from './http2-client';

export type UnaryMethod = 'findMissingBlobs' | 'getActionResult' | 'execute';

export interface UnaryJob {
  kind: 'unary';
  target: string;
  method: UnaryMethod;
  concurrency: number;
  /** Measured calls (the run stops earlier at maxMs). */
  calls: number;
  /** Unmeasured calls first, to warm connections and JIT. */
  warmupCalls: number;
  maxMs: number;
  /** For 'execute': the Action to run (must be in the CAS). */
  action?: { hash: string; size: number };
}

export interface UnaryResult {
  kind: 'unary';
  calls: number;
  errors: number;
  firstErrors: string[];
  durationMs: number;
  callsPerSecond: number;
  /** The load generator's own CPU per call, to compare with the proxy's. */
  clientCpuUsPerCall: number;
  latency: LatencySummary;
}

function requestFor(job: UnaryJob): { path: string; body: Buffer } {
  const corpus = unaryCorpus();
  switch (job.method) {
    case 'findMissingBlobs':
      return { path: PATHS.findMissingBlobs, body: framed(findMissingRequest(corpus)) };
    case 'getActionResult':
      return { path: PATHS.getActionResult, body: framed(getActionResultRequest(corpus)) };
    case 'execute':
      return { path: PATHS.execute, body: framed(executeRequest(job.action ?? corpus.action)) };
  }
}

/** `concurrency` callers on one HTTP/2 connection, each starting its next call when the last one closed. */
export async function runUnary(job: UnaryJob): Promise<UnaryResult> {
  const session = await connect(job.target);
  try {
    const { path, body } = requestFor(job);
    const metadata = clientMetadata('5f0c3f1ad0a84a4ab5b0bd3f1f9a7c1e');
    if (job.method === 'execute') metadata[EXECUTE_DELAY_HEADER] = '0';
    const headers = requestHeaders(path, metadata);
    const phase = async (calls: number, samples: Float64Array | undefined) => {
      let issued = 0;
      let errors = 0;
      const firstErrors: string[] = [];
      const started = performance.now();
      const deadline = started + job.maxMs;
      const worker = async (): Promise<void> => {
        while (issued < calls && performance.now() < deadline) {
          const i = issued++;
          const t0 = performance.now();
          const r = await call(session, headers, body);
          if (samples) samples[i] = performance.now() - t0;
          if (r.code !== 0) {
            errors++;
            if (firstErrors.length < 5) firstErrors.push(`code ${r.code}: ${r.message}`);
          }
        }
      };
      await Promise.all(Array.from({ length: job.concurrency }, worker));
      return { issued, errors, firstErrors, durationMs: performance.now() - started };
    };
    await phase(job.warmupCalls, undefined);
    await announceMeasuring();
    const samples = new Float64Array(job.calls);
    const cpu = process.cpuUsage();
    const r = await phase(job.calls, samples);
    const used = process.cpuUsage(cpu);
    return {
      kind: 'unary',
      calls: r.issued,
      errors: r.errors,
      firstErrors: r.firstErrors,
      durationMs: r.durationMs,
      callsPerSecond: (r.issued / r.durationMs) * 1000,
      clientCpuUsPerCall: (used.user + used.system) / Math.max(1, r.issued),
      latency: summarize(samples.subarray(0, r.issued)),
    };
  } finally {
    session.close();
  }
}
