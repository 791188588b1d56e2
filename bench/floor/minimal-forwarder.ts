/**
 * The cost floor for any node:http2 pass-through: forwards each call's
 * headers, body and trailers and does nothing else (no deadline, no size
 * guard, no backpressure, no error mapping, no logging). NOT a usable proxy.
 * The bench runs it in the proxy's place (`--proxy-cli
 * dist/bench/bench/floor/minimal-forwarder.js`) to tell the cost of node:http2
 * itself from the cost of the proxy's own code. Same flags and "listening"
 * line as the proxy's CLI: --listen 127.0.0.1:0 --upstream grpc://host:port.
 */
import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';

const arg = (name: string): string => {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (!v) throw new Error(`${name} is required`);
  return v;
};

const upstreamUrl = arg('--upstream').replace(/^grpc:\/\//, 'http://');
const [host, port] = arg('--listen').split(':');
const upstream = http2.connect(upstreamUrl, {
  settings: { initialWindowSize: 1024 * 1024 },
  peerMaxConcurrentStreams: 100_000,
});
upstream.on('error', () => {});

const server = http2.createServer({
  settings: { initialWindowSize: 1024 * 1024, maxConcurrentStreams: 100_000 },
  maxSessionMemory: 256,
});
server.on('stream', (stream, headers: IncomingHttpHeaders) => {
  const out: OutgoingHttpHeaders = {};
  for (const k of Object.keys(headers)) if (k !== ':authority' && k !== ':scheme') out[k] = headers[k];
  const up = upstream.request(out, { endStream: false });
  let trailers: OutgoingHttpHeaders = {};
  stream.on('data', (c: Buffer) => up.write(c));
  stream.on('end', () => up.end());
  stream.on('error', () => {});
  up.on('error', () => {});
  up.on('response', (h: IncomingHttpHeaders, flags: number) => {
    const end = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    stream.respond({ ...h }, end ? { endStream: true } : { waitForTrailers: true });
  });
  up.on('data', (c: Buffer) => stream.write(c));
  up.on('trailers', (t: IncomingHttpHeaders) => (trailers = { ...t }));
  up.on('end', () => {
    if (stream.closed) return;
    stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    stream.end();
  });
});
server.listen(Number(port), host, () => {
  const a = server.address();
  process.stdout.write(
    JSON.stringify({ msg: 'listening', listen: `${host}:${typeof a === 'object' && a ? a.port : port}` }) + '\n',
  );
});
process.on('SIGTERM', () => process.exit(0));
