import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import type { Metadata } from '../rpc/server-call';
import { digestKey, type BlobDigest } from './digests';

/** On whose behalf, and within what bounds, a CAS read runs. */
export interface CasReadContext {
  /** The client's instance name, sent unchanged. */
  instanceName: string;
  /**
   * The digest_function named in BatchReadBlobs requests: the client's
   * ExecuteRequest.digest_function when set; when unset, 0 too unless the
   * upstream's announced functions resolved it to something other than the
   * length rule's choice (e.g. BLAKE3), then that function.
   */
  requestedDigestFunction: number;
  /** The function the digests actually use (resolved from the request), for resource names and verification. */
  digestFunction: number;
  /** The client's metadata; only application headers are sent on (see client-metadata.ts). */
  metadata: Metadata;
  signal: AbortSignal;
  /** Absolute deadline, epoch ms. */
  deadline: number | undefined;
}

/**
 * Reads blobs from the upstream CAS as the client would.
 *
 * Contract:
 * - Resolves a map from `digestKey(d)` to the blob's bytes for every digest
 *   asked (duplicates allowed); every blob's size, and its hash where the
 *   function is one node:crypto computes, has been checked.
 * - Rejects with a ProxyError:
 *     FAILED_PRECONDITION, reason MISSING_BLOBS: some blobs are absent; one
 *       violation per blob, type MISSING, subject `blobs/{hash}/{size}`, so the
 *       client re-uploads;
 *     DATA_LOSS: the upstream returned bytes that do not match the digest;
 *     UNAVAILABLE, DEADLINE_EXCEEDED, PERMISSION_DENIED, UNAUTHENTICATED,
 *       RESOURCE_EXHAUSTED, INVALID_ARGUMENT: the upstream said so;
 *     or `signal.reason` when that is a ProxyError (CANCELLED otherwise) once
 *       `signal` aborts. Every upstream call is cancelled then.
 * - Safe to call concurrently; holds no per-call state beyond the call.
 */
export interface CasReader {
  readBlobs(ctx: CasReadContext, digests: readonly BlobDigest[]): Promise<Map<string, Buffer>>;
}

export function missingBlobsError(missing: readonly BlobDigest[], what = 'blobs'): ProxyError {
  const shown = missing.slice(0, 5).map(digestKey).join(', ');
  const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
  return new ProxyError(
    Code.FAILED_PRECONDITION,
    'MISSING_BLOBS',
    `${missing.length} ${what} needed to prepare the action are missing from the CAS (${shown}${more}); the client should upload them and retry`,
    {
      violations: missing.map((d) => ({
        type: 'MISSING',
        subject: `blobs/${digestKey(d)}`,
        description: 'not found in the CAS',
      })),
    },
  );
}

/** The error to throw once `signal` aborted: its reason when that is ours, CANCELLED otherwise. */
export function abortError(signal: AbortSignal, context: string): ProxyError {
  const reason: unknown = signal.reason;
  if (reason instanceof ProxyError) return reason;
  return new ProxyError(Code.CANCELLED, 'CANCELLED', `${context}: cancelled`, { cause: reason });
}
