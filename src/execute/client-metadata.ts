import { CONNECTION_SPECIFIC } from '../passthrough/headers';
import type { Metadata } from '../rpc/server-call';

/**
 * Which of the client's headers go with the proxy's own CAS reads: the
 * application metadata (authorization, requestmetadata-bin, tenant headers),
 * never the transport headers of the client's call, which the upstream
 * connection sets for itself (deadline, encodings, content type, user agent).
 * Pure.
 */
const TRANSPORT_HEADERS: ReadonlySet<string> = new Set([
  ...CONNECTION_SPECIFIC,
  'content-type',
  'content-length',
  'te',
  'user-agent',
]);

export type MetadataPair = [key: string, value: string | Buffer];

/** Pairs in arrival order; '-bin' values decoded from base64 as gRPC libraries expect them. */
export function forwardableMetadata(metadata: Metadata): MetadataPair[] {
  const out: MetadataPair[] = [];
  for (const [rawKey, value] of Object.entries(metadata)) {
    if (value === undefined) continue;
    const key = rawKey.toLowerCase();
    if (key.startsWith(':') || key.startsWith('grpc-') || TRANSPORT_HEADERS.has(key)) continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      // A comma-joined '-bin' header carries several base64 values (gRPC over HTTP/2 spec).
      if (key.endsWith('-bin')) for (const part of item.split(',')) out.push([key, Buffer.from(part.trim(), 'base64')]);
      else out.push([key, item]);
    }
  }
  return out;
}
