/**
 * The bench's upstream: a REAPI server that answers from memory (CAS, action
 * cache, ByteStream, Execute, Capabilities) over raw node:http2, written so
 * its own per-call cost is small. Run as its own process:
 *
 *   node dist/bench/upstream/memory-upstream.js [--port N]
 *
 * Listens on 127.0.0.1 only and prints one JSON line
 * {"msg":"listening","listen":"127.0.0.1:PORT"} when ready. Stops on SIGTERM.
 */
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { Code } from '../../src/reapi/grpc-status';
import { PATHS } from '../common/grpc-wire';
import { read, queryWriteStatus, write } from './bytestream-handlers';
import {
  batchReadBlobs,
  batchUpdateBlobs,
  findMissingBlobs,
  getActionResult,
  getCapabilities,
  updateActionResult,
  type Handler,
} from './cas-handlers';
import { execute, type ExecuteCounters } from './execute-handler';
import { readUnary, respondError, respondMessage } from './grpc-responder';
import { MemoryCas } from './memory-cas';

const STREAM_WINDOW_BYTES = 1024 * 1024;
const SESSION_WINDOW_BYTES = 16 * 1024 * 1024;

function main(): void {
  const portArg = process.argv.indexOf('--port');
  const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 0;
  const cas = new MemoryCas();
  const counters: ExecuteCounters = { executes: 0, open: 0, peakOpen: 0 };
  let calls = 0;
  const handlers = new Map<string, Handler>([
    [PATHS.findMissingBlobs, findMissingBlobs(cas)],
    [PATHS.batchUpdateBlobs, batchUpdateBlobs(cas)],
    [PATHS.batchReadBlobs, batchReadBlobs(cas)],
    [PATHS.getActionResult, getActionResult(cas)],
    [PATHS.updateActionResult, updateActionResult(cas)],
    [PATHS.getCapabilities, getCapabilities()],
    [PATHS.read, read(cas)],
    [PATHS.write, write(cas)],
    [PATHS.queryWriteStatus, queryWriteStatus(cas)],
    [PATHS.execute, execute(cas, counters)],
    [
      PATHS.upstreamStats,
      (stream) =>
        readUnary(stream, () =>
          respondMessage(
            stream,
            Buffer.from(JSON.stringify({ calls, ...counters, ...cas.stats(), rssBytes: process.memoryUsage.rss() })),
          ),
        ),
    ],
  ]);

  const server = http2.createServer({
    settings: { initialWindowSize: STREAM_WINDOW_BYTES, maxConcurrentStreams: 100_000, enablePush: false },
    maxSessionMemory: 1024,
  });
  server.on('session', (session) => {
    session.on('error', () => {});
    const widen = (): void => session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    if (session.connecting) session.once('connect', widen);
    else widen();
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    calls++;
    stream.on('error', () => {});
    const handler = handlers.get(String(headers[':path']));
    if (handler) handler(stream, headers);
    else {
      stream.resume();
      respondError(
        stream,
        Code.UNIMPLEMENTED,
        `method ${String(headers[':path'])} is not implemented by the memory upstream`,
      );
    }
  });
  server.listen(port, '127.0.0.1', () => {
    const addr = server.address();
    const listen = typeof addr === 'object' && addr ? `127.0.0.1:${addr.port}` : String(addr);
    process.stdout.write(JSON.stringify({ msg: 'listening', listen, pid: process.pid }) + '\n');
  });
  const stop = (): void => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
