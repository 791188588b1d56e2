/**
 * Signatures on narinfo files: ed25519 over the fingerprint
 * (narinfo.ts), keys and signatures written `NAME:BASE64` as
 * `nix-store --generate-binary-cache-key` and `nix store sign` write them.
 * Pure apart from node:crypto.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { narInfoFingerprint, type NarInfo } from './narinfo';

export interface TrustedKey {
  name: string;
  key: KeyObject;
}

/** DER prefixes that wrap a raw 32-byte ed25519 key as SPKI (public) and PKCS#8 (private). */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** Signatures looked at per narinfo. */
const MAX_SIGS_CHECKED = 16;

function splitNamed(text: string): { name: string; bytes: Buffer } | undefined {
  const colon = text.indexOf(':');
  if (colon <= 0) return undefined;
  const b64 = text.slice(colon + 1);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  return { name: text.slice(0, colon), bytes: Buffer.from(b64, 'base64') };
}

export function parsePublicKey(text: string): TrustedKey | undefined {
  const named = splitNamed(text.trim());
  if (!named || named.bytes.length !== 32) return undefined;
  return {
    name: named.name,
    key: createPublicKey({ key: Buffer.concat([SPKI_PREFIX, named.bytes]), format: 'der', type: 'spki' }),
  };
}

export type Verdict = { trusted: true; keyName: string } | { trusted: false; why: string };

export function verifyNarInfo(info: NarInfo, keys: readonly TrustedKey[]): Verdict {
  if (info.sigs.length === 0) return { trusted: false, why: 'the narinfo carries no signature' };
  const fingerprint = Buffer.from(narInfoFingerprint(info), 'utf8');
  const names: string[] = [];
  let mismatched: string | undefined;
  for (const sigText of info.sigs.slice(0, MAX_SIGS_CHECKED)) {
    const sig = splitNamed(sigText);
    if (!sig) continue;
    names.push(sig.name);
    const key = keys.find((k) => k.name === sig.name);
    if (!key || sig.bytes.length !== 64) continue;
    if (verify(null, fingerprint, key.key, sig.bytes)) return { trusted: true, keyName: key.name };
    mismatched = sig.name;
  }
  if (mismatched !== undefined) {
    return {
      trusted: false,
      why: `the signature by key ${mismatched} does not match the path's NarHash, NarSize and References`,
    };
  }
  return {
    trusted: false,
    why: `it is signed by key(s) ${[...new Set(names)].join(', ')}, none of which is in trustedPublicKeys`,
  };
}

/** Signs `fingerprint` with a Nix secret key (`NAME:BASE64` of seed and public key, 64 bytes); returns `NAME:BASE64SIG`. */
export function signFingerprint(fingerprint: string, secretKeyText: string): string {
  const named = splitNamed(secretKeyText.trim());
  if (!named || named.bytes.length !== 64) throw new Error('not a Nix secret key (NAME:BASE64 of 64 bytes)');
  const key = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, named.bytes.subarray(0, 32)]),
    format: 'der',
    type: 'pkcs8',
  });
  return `${named.name}:${sign(null, Buffer.from(fingerprint, 'utf8'), key).toString('base64')}`;
}
