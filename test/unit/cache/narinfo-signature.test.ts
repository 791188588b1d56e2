import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { narInfoFingerprint, parseNarInfo, type NarInfo } from '../../../src/cache/narinfo';
import { parsePublicKey, signFingerprint, verifyNarInfo, type TrustedKey } from '../../../src/cache/narinfo-signature';
import { NIX_NARINFO_CONTENT_ADDRESSED, NIX_NARINFO_WITH_REFERENCES, NIX_PUBLIC_KEY, NIX_SECRET_KEY } from './fixtures';

interface TestKey {
  name: string;
  privateKey: KeyObject;
  /** `NAME:BASE64` of the raw 32-byte public key, as trustedPublicKeys holds it. */
  publicText: string;
  /** `NAME:BASE64` of seed and public key, as `nix-store --generate-binary-cache-key` writes a secret key. */
  secretText: string;
}

function testKey(name: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  expect(pub).toHaveLength(32);
  return {
    name,
    privateKey,
    publicText: `${name}:${pub.toString('base64')}`,
    secretText: `${name}:${Buffer.concat([seed, pub]).toString('base64')}`,
  };
}

function trusted(...keys: string[]): TrustedKey[] {
  return keys.map((text) => {
    const key = parsePublicKey(text);
    if (!key) throw new Error(`not a public key: ${text}`);
    return key;
  });
}

function parsed(text: string): NarInfo {
  const result = parseNarInfo(text);
  if (!result.ok) throw new Error(result.problem);
  return result.info;
}

/** Signs the way Nix does: ed25519 over the fingerprint, `NAME:BASE64SIG`. */
function nixSign(info: NarInfo, key: TestKey): string {
  return `${key.name}:${sign(null, Buffer.from(narInfoFingerprint(info), 'utf8'), key.privateKey).toString('base64')}`;
}

const ALICE = testKey('cache.example.org-1');
const MALLORY = testKey('mallory-1');
const UNSIGNED: NarInfo = { ...parsed(NIX_NARINFO_WITH_REFERENCES), sigs: [] };
const SIGNED: NarInfo = { ...UNSIGNED, sigs: [nixSign(UNSIGNED, ALICE)] };

function withSigBytes(sigText: string, change: (bytes: Buffer) => Buffer): string {
  const colon = sigText.indexOf(':');
  return `${sigText.slice(0, colon)}:${change(Buffer.from(sigText.slice(colon + 1), 'base64')).toString('base64')}`;
}

describe('parsePublicKey', () => {
  it('reads NAME:BASE64 of a raw 32-byte ed25519 key', () => {
    const key = parsePublicKey(ALICE.publicText);
    expect(key?.name).toBe('cache.example.org-1');
    expect(key?.key.asymmetricKeyType).toBe('ed25519');
  });

  it('reads a key Nix generated, ignoring surrounding white space', () => {
    expect(parsePublicKey(`  ${NIX_PUBLIC_KEY}\n`)?.name).toBe('test-cache-1');
  });

  it.each([
    ['no colon', ALICE.publicText.replace(':', '')],
    ['an empty name', ALICE.publicText.slice(ALICE.publicText.indexOf(':'))],
    ['nothing after the colon', 'cache-1:'],
    ['characters outside base64', 'cache-1:!!!!'],
    [
      'a space inside the base64',
      `cache-1:${Buffer.alloc(16).toString('base64')} ${Buffer.alloc(16).toString('base64')}`,
    ],
    ['31 bytes', `cache-1:${Buffer.alloc(31, 1).toString('base64')}`],
    ['33 bytes', `cache-1:${Buffer.alloc(33, 1).toString('base64')}`],
    ['a 64-byte secret key given as a public key', ALICE.secretText],
    ['an empty string', ''],
  ])('refuses a key with %s', (_label, text) => {
    expect(parsePublicKey(text)).toBeUndefined();
  });
});

describe('verifyNarInfo', () => {
  it('trusts a narinfo Nix signed, with the key Nix generated', () => {
    for (const text of [NIX_NARINFO_WITH_REFERENCES, NIX_NARINFO_CONTENT_ADDRESSED]) {
      expect(verifyNarInfo(parsed(text), trusted(NIX_PUBLIC_KEY))).toEqual({ trusted: true, keyName: 'test-cache-1' });
    }
  });

  it('trusts a signature over the fingerprint by a trusted key, and names the key', () => {
    expect(verifyNarInfo(SIGNED, trusted(ALICE.publicText))).toEqual({ trusted: true, keyName: ALICE.name });
  });

  it('trusts it when another trusted key is listed first', () => {
    expect(verifyNarInfo(SIGNED, trusted(MALLORY.publicText, ALICE.publicText))).toEqual({
      trusted: true,
      keyName: ALICE.name,
    });
  });

  it('trusts it when an untrusted signature comes first', () => {
    const info = { ...SIGNED, sigs: [nixSign(UNSIGNED, MALLORY), ...SIGNED.sigs] };
    expect(verifyNarInfo(info, trusted(ALICE.publicText))).toEqual({ trusted: true, keyName: ALICE.name });
  });

  it('still trusts it after fields outside the fingerprint change (URL, FileHash, FileSize, Compression, Deriver, CA)', () => {
    const info: NarInfo = {
      ...SIGNED,
      url: 'nar/0dl2fmk8d18i3r14vswbv3xwyyl4js05awsvbpl04zc0515dz1p5.nar',
      compression: 'none',
      fileHash: 'sha256:0dl2fmk8d18i3r14vswbv3xwyyl4js05awsvbpl04zc0515dz1p5',
      fileSize: 1,
      deriver: undefined,
      ca: 'fixed:sha256:06h8a9gk1cq82dfl06p3wyqfhchkwbyzl4acakf3blxwmqy8ahh3',
    };
    expect(verifyNarInfo(info, trusted(ALICE.publicText)).trusted).toBe(true);
  });

  const MISMATCH = `the signature by key ${ALICE.name} does not match the path's NarHash, NarSize and References`;

  it.each<[string, (info: NarInfo) => NarInfo]>([
    ['the NarHash', (i) => ({ ...i, narHash: i.narHash.replace(/.$/, (c) => (c === '0' ? '1' : '0')) })],
    ['the NarSize', (i) => ({ ...i, narSize: i.narSize + 1 })],
    ['the StorePath', (i) => ({ ...i, storePath: i.storePath.replace('top0', 'top1') })],
    ['a reference', (i) => ({ ...i, references: [i.references[0]!, i.references[1]!.replace('pair1', 'evil1')] })],
    ['a reference removed', (i) => ({ ...i, references: i.references.slice(1) })],
    [
      'a reference added',
      (i) => ({ ...i, references: [...i.references, '/nix/store/0c3y1v9zcgbl2xn8v7ns6hblkhsb3f1z-x'] }),
    ],
  ])('refuses it once %s changes, naming the key', (_label, tamper) => {
    expect(verifyNarInfo(tamper(SIGNED), trusted(ALICE.publicText))).toEqual({ trusted: false, why: MISMATCH });
  });

  it('refuses a narinfo Nix signed once its NarHash is changed in the text', () => {
    const text = NIX_NARINFO_WITH_REFERENCES.replace(
      'NarHash: sha256:0dkhw3rngz4jwi4gx0jy8jf1lpdlbagv4z6mlx2yyq4lcgnbsi7l',
      'NarHash: sha256:1dkhw3rngz4jwi4gx0jy8jf1lpdlbagv4z6mlx2yyq4lcgnbsi7l',
    );
    expect(text).not.toBe(NIX_NARINFO_WITH_REFERENCES);
    expect(verifyNarInfo(parsed(text), trusted(NIX_PUBLIC_KEY))).toEqual({
      trusted: false,
      why: "the signature by key test-cache-1 does not match the path's NarHash, NarSize and References",
    });
  });

  it.each([0, 31, 63])('refuses a signature with a bit of byte %i flipped', (index) => {
    const sig = withSigBytes(SIGNED.sigs[0]!, (b) => {
      const copy = Buffer.from(b);
      copy[index]! ^= 0x01;
      return copy;
    });
    expect(verifyNarInfo({ ...SIGNED, sigs: [sig] }, trusted(ALICE.publicText))).toEqual({
      trusted: false,
      why: MISMATCH,
    });
  });

  it.each([
    ['truncated to 63 bytes', (b: Buffer) => b.subarray(0, 63)],
    ['extended to 65 bytes', (b: Buffer) => Buffer.concat([b, Buffer.alloc(1)])],
    ['empty', () => Buffer.alloc(0)],
  ])('refuses a signature %s', (_label, change) => {
    const sig = withSigBytes(SIGNED.sigs[0]!, change);
    expect(verifyNarInfo({ ...SIGNED, sigs: [sig] }, trusted(ALICE.publicText)).trusted).toBe(false);
  });

  it('refuses a signature made by another key under a trusted key’s name', () => {
    const impostor = { ...MALLORY, name: ALICE.name };
    expect(verifyNarInfo({ ...SIGNED, sigs: [nixSign(UNSIGNED, impostor)] }, trusted(ALICE.publicText))).toEqual({
      trusted: false,
      why: MISMATCH,
    });
  });

  it('refuses a valid signature by a key not in trustedPublicKeys, naming the key', () => {
    expect(verifyNarInfo({ ...SIGNED, sigs: [nixSign(UNSIGNED, MALLORY)] }, trusted(ALICE.publicText))).toEqual({
      trusted: false,
      why: 'it is signed by key(s) mallory-1, none of which is in trustedPublicKeys',
    });
  });

  it('refuses a signed narinfo when nothing is trusted', () => {
    expect(verifyNarInfo(SIGNED, [])).toEqual({
      trusted: false,
      why: `it is signed by key(s) ${ALICE.name}, none of which is in trustedPublicKeys`,
    });
  });

  it('names each untrusted key once', () => {
    const sig = nixSign(UNSIGNED, MALLORY);
    expect(verifyNarInfo({ ...SIGNED, sigs: [sig, sig] }, trusted(ALICE.publicText))).toEqual({
      trusted: false,
      why: 'it is signed by key(s) mallory-1, none of which is in trustedPublicKeys',
    });
  });

  it('refuses an unsigned narinfo', () => {
    expect(verifyNarInfo(UNSIGNED, trusted(ALICE.publicText))).toEqual({
      trusted: false,
      why: 'the narinfo carries no signature',
    });
  });

  it('looks at no more than 16 signatures', () => {
    const junk = Array.from({ length: 16 }, (_, i) => `junk-${i}:${Buffer.alloc(64).toString('base64')}`);
    expect(
      verifyNarInfo({ ...SIGNED, sigs: [...junk.slice(1), ...SIGNED.sigs] }, trusted(ALICE.publicText)).trusted,
    ).toBe(true);
    expect(verifyNarInfo({ ...SIGNED, sigs: [...junk, ...SIGNED.sigs] }, trusted(ALICE.publicText)).trusted).toBe(
      false,
    );
  });
});

describe('signFingerprint', () => {
  it('makes the signature Nix made with the same secret key (ed25519 is deterministic)', () => {
    const info = parsed(NIX_NARINFO_WITH_REFERENCES);
    expect(signFingerprint(narInfoFingerprint(info), NIX_SECRET_KEY)).toBe(info.sigs[0]);
  });

  it('makes a signature verifyNarInfo trusts under the key’s public half', () => {
    const sig = signFingerprint(narInfoFingerprint(UNSIGNED), ALICE.secretText);
    expect(sig.startsWith(`${ALICE.name}:`)).toBe(true);
    expect(verifyNarInfo({ ...UNSIGNED, sigs: [sig] }, trusted(ALICE.publicText))).toEqual({
      trusted: true,
      keyName: ALICE.name,
    });
  });

  it.each([
    ['a public key', ALICE.publicText],
    ['no name', ALICE.secretText.slice(ALICE.secretText.indexOf(':'))],
    ['not base64', 'cache-1:???'],
  ])('throws for %s instead of a 64-byte secret key', (_label, text) => {
    expect(() => signFingerprint('1;x;y;1;', text)).toThrow('not a Nix secret key');
  });
});
