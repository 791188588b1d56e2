import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

/**
 * HTTP/2 header handling for byte-exact forwarding. gRPC metadata lives in
 * ordinary headers; we keep every one (binary '-bin' values included, repeated
 * names as repeated fields) and drop only pseudo-headers and the fields HTTP/2
 * forbids between hops.
 */
/** The fields that belong to one connection, never forwarded (RFC 9113 8.2.2, plus host and http2-settings). */
export const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
]);

/** Builds a header object from node's flat rawHeaders list, keeping repeated names as arrays. */
export function headersFromRaw(raw: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name.charCodeAt(0) === 0x3a /* ':' */ || CONNECTION_SPECIFIC.has(name)) continue;
    const value = raw[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return out;
}

/** The same for node's header objects (where repeated names were already joined). */
export function metadataFromHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a || CONNECTION_SPECIFIC.has(name)) continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** Request headers for the upstream: the client's metadata, with our own pseudo-headers. */
export function upstreamRequestHeaders(
  metadata: Record<string, string | string[] | undefined>,
  path: string,
  authority: string,
  scheme: string,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ...metadata };
  out[':method'] = 'POST';
  out[':scheme'] = scheme;
  out[':authority'] = authority;
  out[':path'] = path;
  return out;
}

/** Parses a grpc-timeout header ("<digits><unit>") into milliseconds; undefined if absent or malformed. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'H':
      return n * 3_600_000;
    case 'M':
      return n * 60_000;
    case 'S':
      return n * 1000;
    case 'm':
      return n;
    case 'u':
      return n / 1000;
    default:
      return n / 1_000_000;
  }
}

/** Encodes a remaining time as grpc-timeout (at most 8 digits, as the spec requires). */
export function formatGrpcTimeout(ms: number): string {
  const v = Math.max(0, Math.ceil(ms));
  if (v < 1e8) return `${v}m`;
  const s = Math.ceil(v / 1000);
  if (s < 1e8) return `${s}S`;
  return `${Math.min(99_999_999, Math.ceil(s / 60))}M`;
}
