/**
 * ByteStream resource names, parsed by keyword rather than position because
 * instance names may have any number of segments:
 *   read:  {instance}/blobs/{digest_function/}{hash}/{size}
 *   write: {instance}/uploads/{uuid}/blobs/{digest_function/}{hash}/{size}{/anything}
 *   and compressed-blobs/{compressor}/ in place of blobs/.
 */
export interface ResourceName {
  instanceName: string;
  hash: string;
  sizeBytes: number;
  /** Set for compressed-blobs/ names. */
  compressor?: string;
  /** Set for upload names. */
  uploadId?: string;
}

const KEYWORDS = new Set([
  'blobs',
  'uploads',
  'actions',
  'actionResults',
  'operations',
  'capabilities',
  'compressed-blobs',
]);

export function parseResourceName(name: string, kind: 'read' | 'write'): ResourceName | { error: string } {
  const segments = name.split('/');
  const start = segments.findIndex((s) => KEYWORDS.has(s));
  if (start < 0) return { error: `resource name ${JSON.stringify(name)} has no blobs/ or uploads/ segment` };
  const instanceName = segments.slice(0, start).join('/');
  let i = start;
  let uploadId: string | undefined;
  if (kind === 'write') {
    if (segments[i] !== 'uploads' || !segments[i + 1])
      return { error: `write resource name ${JSON.stringify(name)} lacks uploads/{uuid}/` };
    uploadId = segments[i + 1];
    i += 2;
  }
  let compressor: string | undefined;
  if (segments[i] === 'compressed-blobs') {
    compressor = segments[i + 1];
    i += 2;
  } else if (segments[i] === 'blobs') {
    i += 1;
  } else {
    return { error: `resource name ${JSON.stringify(name)} lacks blobs/ after the instance name` };
  }
  // An optional digest function name precedes the hash; hashes are lower-case hex.
  if (segments[i] !== undefined && !/^[0-9a-f]+$/.test(segments[i]!)) i += 1;
  const hash = segments[i];
  const size = segments[i + 1];
  if (!hash || !/^[0-9a-f]{64}$/.test(hash) || !size || !/^\d+$/.test(size)) {
    return { error: `resource name ${JSON.stringify(name)} has no {sha256 hash}/{size}` };
  }
  if (kind === 'read' && segments.length > i + 2)
    return { error: `resource name ${JSON.stringify(name)} has extra segments` };
  return {
    instanceName,
    hash,
    sizeBytes: Number(size),
    ...(compressor ? { compressor } : {}),
    ...(uploadId ? { uploadId } : {}),
  };
}
