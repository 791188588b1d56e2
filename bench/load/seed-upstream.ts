import type { ClientHttp2Session } from 'node:http2';
import { batchUpdateRequest, unaryCorpus, updateActionResultRequest, type Blob } from '../common/bench-data';
import { PATHS } from '../common/grpc-wire';
import { call, connect, framed, requestHeaders } from './http2-client';

export interface SeedJob {
  kind: 'seed';
  target: string;
}

export interface SeedResult {
  kind: 'seed';
  blobs: number;
  action: { hash: string; size: number };
}

const BATCH_BYTES = 2 * 1024 * 1024;

/** Uploads the unary corpus (and any extra blobs) and its cached action result. */
export async function runSeed(job: SeedJob): Promise<SeedResult> {
  const corpus = unaryCorpus();
  const blobs: Blob[] = [...corpus.present, corpus.command, corpus.inputRoot, corpus.action];
  const session = await connect(job.target);
  try {
    await uploadBlobs(session, blobs);
    const r = await call(
      session,
      requestHeaders(PATHS.updateActionResult, {}),
      framed(updateActionResultRequest(corpus.action, corpus.actionResult)),
    );
    if (r.code !== 0) throw new Error(`UpdateActionResult failed: code ${r.code}: ${r.message}`);
    return { kind: 'seed', blobs: blobs.length, action: { hash: corpus.action.hash, size: corpus.action.size } };
  } finally {
    session.close();
  }
}

export async function uploadBlobs(session: ClientHttp2Session, blobs: readonly Blob[]): Promise<void> {
  let batch: Blob[] = [];
  let bytes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const r = await call(session, requestHeaders(PATHS.batchUpdateBlobs, {}), framed(batchUpdateRequest(batch)));
    if (r.code !== 0) throw new Error(`BatchUpdateBlobs failed: code ${r.code}: ${r.message}`);
    batch = [];
    bytes = 0;
  };
  for (const b of blobs) {
    if (bytes + b.size > BATCH_BYTES) await flush();
    batch.push(b);
    bytes += b.size + 100;
  }
  await flush();
}
