import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { Code } from '../../src/reapi/grpc-status';
import {
  bytesField,
  digestKey,
  EXECUTE_DELAY_HEADER,
  fields,
  framePrefix,
  OPEN_EXECUTES_TRAILER,
  varintField,
} from '../common/grpc-wire';
import type { Handler } from './cas-handlers';
import { readUnary, respondError } from './grpc-responder';
import type { MemoryCas } from './memory-cas';

const TYPE_URL = 'type.googleapis.com/build.bazel.remote.execution.v2.';
/** Longest Execute delay a client may ask for. */
const MAX_DELAY_MS = 10 * 60_000;

export interface ExecuteCounters {
  executes: number;
  open: number;
  peakOpen: number;
}

function any(type: string, value: Buffer): Buffer {
  return Buffer.concat([bytesField(1, TYPE_URL + type), bytesField(2, value)]);
}

/** google.longrunning.Operation with ExecuteOperationMetadata (and, when done, an ExecuteResponse with exit code 0). */
function operation(name: string, actionDigest: Buffer, done: boolean): Buffer {
  const metadata = any(
    'ExecuteOperationMetadata',
    Buffer.concat([varintField(1, done ? 4 : 3), bytesField(2, actionDigest)]),
  );
  const parts = [bytesField(1, name), bytesField(2, metadata)];
  if (done) {
    const actionResult = Buffer.concat([varintField(4, 0)]);
    parts.push(varintField(3, 1), bytesField(5, any('ExecuteResponse', bytesField(1, actionResult))));
  }
  return Buffer.concat(parts);
}

/**
 * Execute "runs" any action whose Action blob is in the CAS: it answers done
 * with exit code 0, at once or after the delay the client asked for in the
 * bench-execute-delay-ms header (then it first sends an EXECUTING Operation, as
 * real schedulers do, and keeps the stream open). The trailer
 * bench-open-executes tells how many Execute calls were open at that moment.
 */
export function execute(cas: MemoryCas, counters: ExecuteCounters): Handler {
  return (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const asked = Number(headers[EXECUTE_DELAY_HEADER] ?? 0);
    const delay = Number.isFinite(asked) ? Math.min(MAX_DELAY_MS, Math.max(0, asked)) : 0;
    counters.executes++;
    counters.open++;
    counters.peakOpen = Math.max(counters.peakOpen, counters.open);
    let closed = false;
    stream.once('close', () => {
      closed = true;
      counters.open--;
    });
    readUnary(stream, (req) => {
      const digest = fields(req).find((f) => f.field === 6)?.bytes;
      if (!digest) return respondError(stream, Code.INVALID_ARGUMENT, 'action_digest is required');
      const key = digestKey(digest);
      if (!cas.has(key)) return respondError(stream, Code.FAILED_PRECONDITION, `action ${key} is not in the CAS`);
      const name = `operations/${counters.executes}-${key.slice(0, 16)}`;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => {
        if (!stream.destroyed)
          stream.sendTrailers({ 'grpc-status': '0', [OPEN_EXECUTES_TRAILER]: String(counters.open) });
      });
      const sendDone = (): void => {
        if (closed || stream.destroyed) return;
        const op = operation(name, digest, true);
        stream.write(framePrefix(op.length));
        stream.end(op);
      };
      if (delay === 0) return sendDone();
      const first = operation(name, digest, false);
      stream.write(framePrefix(first.length));
      stream.write(first);
      const timer = setTimeout(sendDone, delay);
      stream.once('close', () => clearTimeout(timer));
    });
  };
}
