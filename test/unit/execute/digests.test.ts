import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  byteStreamReadName,
  DigestFunction,
  resolveDigestFunction,
  toBlobDigest,
  verifyBlob,
} from '../../../src/execute/digests';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';

const SHA256 = createHash('sha256').update('hello').digest('hex');
const SHA1 = createHash('sha1').update('hello').digest('hex');
const BLAKE3_HELLO = 'ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f';
const { SHA256: S256, BLAKE3: B3, SHA256TREE: TREE, SHA1: S1, MD5, MURMUR3 } = DigestFunction;

describe('resolveDigestFunction', () => {
  it.each<[string, number, string, number]>([
    ['explicit SHA256', DigestFunction.SHA256, SHA256, DigestFunction.SHA256],
    ['explicit BLAKE3 kept', DigestFunction.BLAKE3, SHA256, DigestFunction.BLAKE3],
    ['unset, 64 hex -> SHA256', 0, SHA256, DigestFunction.SHA256],
    ['unset, 40 hex -> SHA1', 0, SHA1, DigestFunction.SHA1],
    ['unset, 32 hex -> MD5', 0, 'a'.repeat(32), DigestFunction.MD5],
    ['unset, 96 hex -> SHA384', 0, 'a'.repeat(96), DigestFunction.SHA384],
    ['unset, 128 hex -> SHA512', 0, 'a'.repeat(128), DigestFunction.SHA512],
  ])('%s', (_name, requested, hash, expected) => {
    expect(resolveDigestFunction(requested, hash)).toBe(expected);
  });

  it.each<[string, number, string, readonly number[] | undefined, number]>([
    ['unset, only BLAKE3 announced -> BLAKE3', 0, SHA256, [B3], B3],
    ['unset, only SHA256 announced -> SHA256', 0, SHA256, [S256], S256],
    ['unset, SHA256 and BLAKE3 announced -> SHA256 (the REAPI default)', 0, SHA256, [B3, S256], S256],
    ['unset, SHA256TREE and BLAKE3 announced -> first announced', 0, SHA256, [TREE, B3], TREE],
    ['unset, BLAKE3 announced, 40 hex -> SHA1 by length', 0, SHA1, [B3], S1],
    ['unset, MD5 and MURMUR3 announced, 32 hex -> both match, first', 0, 'a'.repeat(32), [MURMUR3, MD5], MURMUR3],
    ['unset, nothing announced -> length rule', 0, SHA256, [], S256],
    ['unset, announcements unknown -> length rule', 0, SHA256, undefined, S256],
    ['explicit SHA256 wins over BLAKE3 announced', S256, SHA256, [B3], S256],
    ['explicit BLAKE3 wins over SHA256 announced', B3, SHA256, [S256], B3],
  ])('%s', (_name, requested, hash, announced, expected) => {
    expect(resolveDigestFunction(requested, hash, announced)).toBe(expected);
  });

  it('refuses an unset function whose length matches neither announcements nor the length rule', () => {
    expect(() => resolveDigestFunction(0, 'a'.repeat(63), [B3])).toThrow(
      expect.objectContaining({ code: Code.INVALID_ARGUMENT }) as unknown as ProxyError,
    );
  });

  it.each<[string, number, string]>([
    ['unknown enum value', 42, SHA256],
    ['unset with an odd length', 0, 'a'.repeat(63)],
    ['unset with an empty hash', 0, ''],
  ])('refuses %s with INVALID_ARGUMENT', (_name, requested, hash) => {
    expect(() => resolveDigestFunction(requested, hash)).toThrow(
      expect.objectContaining({ code: Code.INVALID_ARGUMENT }) as unknown as ProxyError,
    );
  });
});

describe('toBlobDigest', () => {
  it.each<[string, unknown, number]>([
    ['number size', { hash: SHA256, sizeBytes: 5 }, 5],
    ['string size (int64 as string)', { hash: SHA256, sizeBytes: '5' }, 5],
    ['Long-like size', { hash: SHA256, sizeBytes: { toString: () => '7' } }, 7],
    ['absent size means 0', { hash: SHA256 }, 0],
  ])('accepts %s', (_name, input, size) => {
    expect(toBlobDigest(input as never, DigestFunction.SHA256, 'x')).toEqual({ hash: SHA256, sizeBytes: size });
  });

  it.each<[string, unknown]>([
    ['missing digest', undefined],
    ['upper-case hash', { hash: SHA256.toUpperCase(), sizeBytes: 1 }],
    ['short hash', { hash: SHA256.slice(1), sizeBytes: 1 }],
    ['path characters in the hash', { hash: `${SHA256.slice(0, 60)}/../`, sizeBytes: 1 }],
    ['negative size', { hash: SHA256, sizeBytes: -1 }],
    ['size beyond 2^53', { hash: SHA256, sizeBytes: '9007199254740993' }],
  ])('refuses %s with INVALID_ARGUMENT naming the field', (_name, input) => {
    try {
      toBlobDigest(input as never, DigestFunction.SHA256, 'Action.command_digest');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ProxyError);
      expect((err as ProxyError).code).toBe(Code.INVALID_ARGUMENT);
      expect((err as ProxyError).message).toContain('Action.command_digest');
    }
  });
});

describe('verifyBlob', () => {
  const data = Buffer.from('hello');
  it.each<[string, number, { hash: string; sizeBytes: number }, boolean]>([
    ['right sha256', DigestFunction.SHA256, { hash: SHA256, sizeBytes: 5 }, true],
    ['wrong sha256', DigestFunction.SHA256, { hash: 'b'.repeat(64), sizeBytes: 5 }, false],
    ['wrong size', DigestFunction.SHA256, { hash: SHA256, sizeBytes: 6 }, false],
    ['right sha1', DigestFunction.SHA1, { hash: SHA1, sizeBytes: 5 }, true],
    // b3sum of "hello"
    ['right blake3', DigestFunction.BLAKE3, { hash: BLAKE3_HELLO, sizeBytes: 5 }, true],
    ['wrong blake3', DigestFunction.BLAKE3, { hash: 'c'.repeat(64), sizeBytes: 5 }, false],
    ['sha256 hash under blake3', DigestFunction.BLAKE3, { hash: SHA256, sizeBytes: 5 }, false],
    ['blake3 still checks size', DigestFunction.BLAKE3, { hash: BLAKE3_HELLO, sizeBytes: 4 }, false],
    ['sha256tree trusted on size', DigestFunction.SHA256TREE, { hash: 'c'.repeat(64), sizeBytes: 5 }, true],
    ['vso trusted on size', DigestFunction.VSO, { hash: 'c'.repeat(66), sizeBytes: 5 }, true],
    ['murmur3 still checks size', DigestFunction.MURMUR3, { hash: 'c'.repeat(32), sizeBytes: 4 }, false],
  ])('%s', (_name, fn, digest, ok) => {
    expect(verifyBlob(fn, digest, data) === undefined).toBe(ok);
  });
});

describe('byteStreamReadName', () => {
  const d = { hash: SHA256, sizeBytes: 5 };
  it.each<[string, string, number, string]>([
    ['empty instance', '', DigestFunction.SHA256, `blobs/${SHA256}/5`],
    ['one segment', 'main', DigestFunction.SHA256, `main/blobs/${SHA256}/5`],
    ['several segments', 'a/b/c', DigestFunction.SHA256, `a/b/c/blobs/${SHA256}/5`],
    ['classic function omitted', 'x', DigestFunction.SHA1, `x/blobs/${SHA256}/5`],
    ['blake3 named', 'x', DigestFunction.BLAKE3, `x/blobs/blake3/${SHA256}/5`],
    ['sha256tree named', '', DigestFunction.SHA256TREE, `blobs/sha256tree/${SHA256}/5`],
  ])('%s', (_name, instance, fn, expected) => {
    expect(byteStreamReadName(instance, fn, d)).toBe(expected);
  });
});
