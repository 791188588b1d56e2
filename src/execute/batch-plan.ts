import type { BlobDigest } from './digests';

/**
 * Splits blob reads into BatchReadBlobs requests whose responses stay under a
 * message-size budget; blobs that cannot fit one response go to ByteStream.Read.
 * Pure.
 */
export interface BatchPlan {
  batches: BlobDigest[][];
  streamed: BlobDigest[];
}

/** Bytes a BatchReadBlobsResponse.Response spends beyond its data: digest, status, tags and lengths. */
export function responseEntryOverhead(d: BlobDigest): number {
  return d.hash.length + 48;
}

/** Room kept free in every response for framing and the message's own fields. */
export const RESPONSE_SLACK_BYTES = 1024;

export function planBatches(digests: readonly BlobDigest[], maxResponseBytes: number, maxPerBatch = 10_000): BatchPlan {
  const budget = Math.max(0, maxResponseBytes - RESPONSE_SLACK_BYTES);
  const batches: BlobDigest[][] = [];
  const streamed: BlobDigest[] = [];
  let current: BlobDigest[] = [];
  let used = 0;
  // Largest first packs tighter; order of results does not matter to callers.
  const sorted = [...digests].sort((a, b) => b.sizeBytes - a.sizeBytes);
  for (const d of sorted) {
    const cost = d.sizeBytes + responseEntryOverhead(d);
    if (cost > budget) {
      streamed.push(d);
      continue;
    }
    if (used + cost > budget || current.length >= maxPerBatch) {
      batches.push(current);
      current = [];
      used = 0;
    }
    current.push(d);
    used += cost;
  }
  if (current.length > 0) batches.push(current);
  return { batches, streamed };
}
