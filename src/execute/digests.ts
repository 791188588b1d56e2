import { createHash } from 'node:crypto';
import { blake3 } from '@noble/hashes/blake3';
import { bytesToHex } from '@noble/hashes/utils';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';

/**
 * CAS digests as the Execute path handles them: validated once where they
 * enter (from an ExecuteRequest, Action or Directory), then used as keys, in
 * requests and to verify what the upstream returns. Pure.
 */
export interface BlobDigest {
  /** Lower-case hex, validated: safe inside a ByteStream resource name. */
  hash: string;
  sizeBytes: number;
}

/** build.bazel.remote.execution.v2.DigestFunction.Value */
export const DigestFunction = {
  UNKNOWN: 0,
  SHA256: 1,
  SHA1: 2,
  MD5: 3,
  VSO: 4,
  SHA384: 5,
  SHA512: 6,
  MURMUR3: 7,
  SHA256TREE: 8,
  BLAKE3: 9,
} as const;

const NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(DigestFunction).map(([name, value]) => [value, name.toLowerCase()]),
);

/** Functions whose digests node:crypto can recompute; BLAKE3 is computed with @noble/hashes; the rest are trusted to the upstream (see verifyBlob). */
const NODE_HASH: Record<number, string> = {
  [DigestFunction.SHA256]: 'sha256',
  [DigestFunction.SHA1]: 'sha1',
  [DigestFunction.MD5]: 'md5',
  [DigestFunction.SHA384]: 'sha384',
  [DigestFunction.SHA512]: 'sha512',
};

/** Hex length of each function's hash where it is fixed. */
const HEX_LENGTH: Record<number, number> = {
  [DigestFunction.SHA256]: 64,
  [DigestFunction.SHA1]: 40,
  [DigestFunction.MD5]: 32,
  [DigestFunction.SHA384]: 96,
  [DigestFunction.SHA512]: 128,
  [DigestFunction.SHA256TREE]: 64,
  [DigestFunction.BLAKE3]: 64,
  [DigestFunction.VSO]: 66,
  [DigestFunction.MURMUR3]: 32,
};

/** The REAPI rule for an unset digest_function: infer one of the classic functions from the hash length. */
const BY_LENGTH: Record<number, number> = {
  64: DigestFunction.SHA256,
  40: DigestFunction.SHA1,
  32: DigestFunction.MD5,
  96: DigestFunction.SHA384,
  128: DigestFunction.SHA512,
};

/** These appear as a path segment in ByteStream resource names; the classic ones never do. */
const IN_RESOURCE_NAME = new Set<number>([DigestFunction.SHA256TREE, DigestFunction.BLAKE3]);

const HEX_RE = /^[0-9a-f]+$/;

export function digestFunctionName(fn: number): string {
  return NAMES[fn] ?? `digest_function_${fn}`;
}

export function digestKey(d: BlobDigest): string {
  return `${d.hash}/${d.sizeBytes}`;
}

/**
 * The function the Execute's digests use (the REAPI rule for an unset
 * digest_function: infer it from the hash length and the functions the server
 * announced):
 * - the request's own when set;
 * - unset: among `announced` (the upstream's GetCapabilities for the instance
 *   name; undefined when not known) the functions whose hash has the action
 *   digest's length: exactly one, that one; several (SHA256, SHA256TREE and
 *   BLAKE3 are all 64 hex), SHA256 when among them (the REAPI default and what
 *   a server that announces both takes an unmarked 64-hex digest for), else the
 *   first announced;
 * - none announced of that length (or nothing known): the classic length rule
 *   (64 = SHA256, 40 = SHA1, 32 = MD5, 96 = SHA384, 128 = SHA512).
 * Throws INVALID_ARGUMENT for values this proxy does not know or lengths that imply none.
 */
export function resolveDigestFunction(requested: number, actionHash: string, announced?: readonly number[]): number {
  if (requested !== DigestFunction.UNKNOWN) {
    if (NAMES[requested] === undefined) {
      throw new ProxyError(
        Code.INVALID_ARGUMENT,
        'UNKNOWN_DIGEST_FUNCTION',
        `ExecuteRequest.digest_function ${requested} is not a digest function nix-reapi-proxy knows; use SHA256 or another REAPI v2 function`,
      );
    }
    return requested;
  }
  const matching = (announced ?? []).filter((fn) => HEX_LENGTH[fn] === actionHash.length);
  if (matching.length === 1) return matching[0]!;
  if (matching.length > 1) return matching.includes(DigestFunction.SHA256) ? DigestFunction.SHA256 : matching[0]!;
  const inferred = BY_LENGTH[actionHash.length];
  if (inferred === undefined) {
    throw new ProxyError(
      Code.INVALID_ARGUMENT,
      'BAD_DIGEST',
      `action digest hash '${truncate(actionHash)}' has ${actionHash.length} characters, which matches no digest function; set ExecuteRequest.digest_function`,
    );
  }
  return inferred;
}

/** Loosely typed digest as protobufjs decodes it (int64 may be a number, a Long or a string). */
export interface DigestLike {
  hash?: string | null;
  sizeBytes?: number | string | { toString(): string } | null;
}

/**
 * Validates a digest from a client message: hex hash of the function's length,
 * size a non-negative safe integer. `what` names the field for the message.
 */
export function toBlobDigest(d: DigestLike | null | undefined, fn: number, what: string): BlobDigest {
  if (!d) throw badDigest(what, 'is missing');
  const hash = d.hash ?? '';
  const expected = HEX_LENGTH[fn];
  if (!HEX_RE.test(hash) || (expected !== undefined ? hash.length !== expected : hash.length > 128)) {
    throw badDigest(
      what,
      `has hash '${truncate(hash)}', which is not ${expected ?? 'at most 128'} lower-case hex characters as ${digestFunctionName(fn)} requires`,
    );
  }
  const size = Number(d.sizeBytes === null || d.sizeBytes === undefined ? 0 : d.sizeBytes.toString());
  if (!Number.isSafeInteger(size) || size < 0) {
    throw badDigest(what, `has size_bytes ${String(d.sizeBytes)}, which is not a non-negative integer`);
  }
  return { hash, sizeBytes: size };
}

/** The length rule alone: what an unset digest_function means when the upstream's functions are not known. */
export function digestFunctionByLength(hash: string): number | undefined {
  return BY_LENGTH[hash.length];
}

export function isVerifiable(fn: number): boolean {
  return NODE_HASH[fn] !== undefined || fn === DigestFunction.BLAKE3;
}

/**
 * Checks that `data` is the blob `d` names. Sizes are always checked; hashes
 * when node:crypto knows the function, and BLAKE3 (@noble/hashes). For the
 * others (SHA256TREE, VSO, MURMUR3) the upstream is trusted: it verified the blob on upload, and
 * the executor reads the same bytes from it, so what the proxy scans is what
 * runs. Returns a reason when the blob does not match, undefined when it does.
 */
export function verifyBlob(fn: number, d: BlobDigest, data: Uint8Array): string | undefined {
  if (data.length !== d.sizeBytes) return `got ${data.length} bytes instead of ${d.sizeBytes}`;
  const actual = hashHex(fn, data);
  if (actual === undefined) return undefined;
  return actual === d.hash ? undefined : `content hashes to ${actual}`;
}

/** `{instance}/blobs/{function/}{hash}/{size}`, with the function segment only for non-classic functions. */
export function byteStreamReadName(instanceName: string, fn: number, d: BlobDigest): string {
  const fnSegment = IN_RESOURCE_NAME.has(fn) ? `${digestFunctionName(fn)}/` : '';
  const name = `blobs/${fnSegment}${d.hash}/${d.sizeBytes}`;
  return instanceName === '' ? name : `${instanceName}/${name}`;
}

function hashHex(fn: number, data: Uint8Array): string | undefined {
  if (fn === DigestFunction.BLAKE3) return bytesToHex(blake3(data));
  const algorithm = NODE_HASH[fn];
  return algorithm === undefined ? undefined : createHash(algorithm).update(data).digest('hex');
}

function badDigest(what: string, problem: string): ProxyError {
  return new ProxyError(Code.INVALID_ARGUMENT, 'BAD_DIGEST', `${what} ${problem}; the client sent a malformed digest`);
}

function truncate(s: string): string {
  return s.length > 140 ? `${s.slice(0, 140)}...` : s;
}
