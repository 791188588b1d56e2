import { randomUUID } from 'node:crypto';
import { FrameCounter, bytesField, framePrefix, lenPrefix, PATHS, varintField } from '../common/grpc-wire';
import { patternHash, patternSlice } from '../common/pattern-blob';
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import { announceMeasuring, connect, framed, requestHeaders } from './http2-client';

/** Data bytes per WriteRequest message (Bazel's and most clients' chunking is 16-64 KiB). */
export const WRITE_CHUNK_BYTES = 64 * 1024;

export interface TransferJob {
  kind: 'write' | 'read';
  target: string;
  /** Blob size in bytes; the blob is the bench pattern (pattern-blob.ts). */
  size: number;
  /** Transfers in a row (one measured run), after one unmeasured warm-up transfer when `warmup`. */
  repeat: number;
  warmup: boolean;
  maxMs: number;
}

export interface TransferResult {
  kind: 'write' | 'read';
  bytes: number;
  errors: number;
  firstErrors: string[];
  durationMs: number;
  mibPerSecond: number;
}

/** One ByteStream.Write or Read of the pattern blob, chunk by chunk, honouring each stream's backpressure. */
export async function runTransfer(job: TransferJob): Promise<TransferResult> {
  const hash = patternHash(job.size);
  const session = await connect(job.target);
  const once = (): Promise<Outcome> => (job.kind === 'write' ? write(session, hash, job) : read(session, hash, job));
  try {
    if (job.warmup) await once();
    await announceMeasuring();
    const started = performance.now();
    let bytes = 0;
    const firstErrors: string[] = [];
    for (let i = 0; i < job.repeat && performance.now() - started < job.maxMs; i++) {
      const r = await once();
      if (r.ok) bytes += job.size;
      else firstErrors.push(r.error);
    }
    const durationMs = performance.now() - started;
    return {
      kind: job.kind,
      bytes,
      errors: firstErrors.length,
      firstErrors: firstErrors.slice(0, 5),
      durationMs,
      mibPerSecond: bytes / 1024 / 1024 / (durationMs / 1000),
    };
  } finally {
    session.close();
  }
}

type Outcome = { ok: true } | { ok: false; error: string };

function write(session: ClientHttp2Session, hash: string, job: TransferJob): Promise<Outcome> {
  return new Promise((resolve) => {
    const resource = Buffer.from(`uploads/${randomUUID()}/blobs/${hash}/${job.size}`);
    const stream = session.request(requestHeaders(PATHS.write, {}));
    let status = -1;
    let message = '';
    const timer = setTimeout(() => stream.close(0x8 /* CANCEL */), job.maxMs);
    const onFields = (h: IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) {
        status = Number(h['grpc-status']);
        message = String(h['grpc-message'] ?? '');
      }
    };
    stream.on('response', onFields);
    stream.on('trailers', onFields);
    stream.resume();
    stream.on('error', (e) => (message ||= e.message));
    stream.on('close', () => {
      clearTimeout(timer);
      resolve(status === 0 ? { ok: true } : { ok: false, error: `Write: code ${status}: ${message}` });
    });
    let offset = 0;
    const pump = (): void => {
      while (offset < job.size || offset === 0) {
        if (stream.destroyed) return;
        const n = Math.min(WRITE_CHUNK_BYTES, job.size - offset);
        const last = offset + n >= job.size;
        const head = Buffer.concat([
          offset === 0 ? bytesField(1, resource) : Buffer.alloc(0),
          offset > 0 ? varintField(2, offset) : Buffer.alloc(0),
          last ? varintField(3, 1) : Buffer.alloc(0),
          lenPrefix(10, n),
        ]);
        stream.write(Buffer.concat([framePrefix(head.length + n), head]));
        const more = stream.write(patternSlice(offset, n));
        offset += n;
        if (last) {
          stream.end();
          return;
        }
        if (!more) {
          stream.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

function read(session: ClientHttp2Session, hash: string, job: TransferJob): Promise<Outcome> {
  return new Promise((resolve) => {
    const counter = new FrameCounter();
    const stream = session.request(requestHeaders(PATHS.read, {}));
    let status = -1;
    let message = '';
    const timer = setTimeout(() => stream.close(0x8), job.maxMs);
    const onFields = (h: IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) {
        status = Number(h['grpc-status']);
        message = String(h['grpc-message'] ?? '');
      }
    };
    stream.on('response', onFields);
    stream.on('trailers', onFields);
    stream.on('data', (chunk: Buffer) => counter.push(chunk));
    stream.on('error', (e) => (message ||= e.message));
    stream.on('close', () => {
      clearTimeout(timer);
      // Each ReadResponse carries a few bytes of field header besides the data.
      const enough =
        counter.complete &&
        counter.payloadBytes >= job.size &&
        counter.payloadBytes <= job.size + counter.messages * 16;
      if (status === 0 && enough) resolve({ ok: true });
      else
        resolve({
          ok: false,
          error: `Read: code ${status}: ${message} (${counter.payloadBytes} payload bytes in ${counter.messages} messages)`,
        });
    });
    stream.end(framed(bytesField(1, `blobs/${hash}/${job.size}`)));
  });
}
