/**
 * narinfo files: the metadata a Nix binary cache holds per store path. The
 * parser is strict and bounded, since a pushed narinfo is hostile input:
 * `Key: value` lines, a size and line cap, the fields stock Nix 2.8 writes
 * checked for form (store paths by STORE_PATH_RE, hashes as `sha256:` plus 52
 * base-32 characters, sizes as safe integers), duplicates refused, unknown
 * keys ignored as Nix ignores them. `problem` is a sentence for an HTTP 400
 * body. Pure.
 */
import { STORE_PATH_RE, STORE_PREFIX, baseName } from '../nix/store-path';
import { NAR_EXTENSIONS } from './cache-routes';

export interface NarInfo {
  storePath: string;
  /** `nar/<filehash>.nar[.<ext>]` for pushed paths; `nar/<hash>.nar` for paths the proxy serves. */
  url: string;
  compression: string;
  fileHash?: string;
  fileSize?: number;
  narHash: string;
  narSize: number;
  /** Full store paths, sorted, without duplicates. */
  references: string[];
  deriver?: string;
  sigs: string[];
  ca?: string;
}

export const MAX_NARINFO_BYTES = 256 * 1024;
export const MAX_REFERENCES = 20_000;
const MAX_LINES = MAX_REFERENCES + 200;
const MAX_SIGS = 64;
const SHA256_RE = /^sha256:[0-9a-df-np-sv-z]{52}$/;
const URL_RE = /^nar\/[0-9a-df-np-sv-z]{32,52}\.nar(\.[a-z0-9]{1,4})?$/;
const SIG_RE = /^[A-Za-z0-9._+-]{1,128}:[A-Za-z0-9+/]{1,200}={0,2}$/;
const CA_RE = /^[\x21-\x7e]{1,512}$/;
const COMPRESSIONS = new Set(Object.values(NAR_EXTENSIONS));
const SINGLE_KEYS = new Set([
  'StorePath',
  'URL',
  'Compression',
  'FileHash',
  'FileSize',
  'NarHash',
  'NarSize',
  'References',
  'Deriver',
  'CA',
  'System',
]);

export type ParsedNarInfo = { ok: true; info: NarInfo } | { ok: false; problem: string };

function size(value: string): number | undefined {
  if (!/^\d{1,16}$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function parseNarInfo(text: string): ParsedNarInfo {
  const fail = (problem: string): ParsedNarInfo => ({ ok: false, problem });
  if (Buffer.byteLength(text, 'utf8') > MAX_NARINFO_BYTES)
    return fail(`the narinfo is larger than ${MAX_NARINFO_BYTES} bytes`);
  const lines = text.split('\n');
  if (lines.length > MAX_LINES) return fail(`the narinfo has more than ${MAX_LINES} lines`);
  const fields = new Map<string, string>();
  const sigs: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const colon = line.indexOf(': ');
    if (colon <= 0) return fail(`line ${i + 1} is not "Key: value"`);
    const key = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (!/^[A-Za-z][A-Za-z0-9-]{0,31}$/.test(key)) return fail(`line ${i + 1} has a malformed key`);
    if (/[\u0000-\u001f\u007f]/.test(value)) return fail(`${key} holds control characters`);
    if (key === 'Sig') {
      if (sigs.length >= MAX_SIGS) return fail(`the narinfo has more than ${MAX_SIGS} Sig lines`);
      if (!SIG_RE.test(value)) return fail('a Sig line is not KEYNAME:BASE64');
      sigs.push(value);
      continue;
    }
    if (SINGLE_KEYS.has(key) && fields.has(key)) return fail(`${key} is given twice`);
    fields.set(key, value);
  }
  const storePath = fields.get('StorePath');
  if (storePath === undefined) return fail('StorePath is missing');
  if (!STORE_PATH_RE.test(storePath)) return fail('StorePath is not a valid store path');
  const url = fields.get('URL');
  if (url === undefined) return fail('URL is missing');
  if (!URL_RE.test(url)) return fail('URL is not nar/<hash>.nar[.<compression>]');
  const compression = fields.get('Compression') ?? 'bzip2';
  if (!COMPRESSIONS.has(compression))
    return fail(`Compression ${JSON.stringify(compression.slice(0, 20))} is not one Nix writes`);
  const narHash = fields.get('NarHash');
  if (narHash === undefined) return fail('NarHash is missing');
  if (!SHA256_RE.test(narHash)) return fail('NarHash is not sha256:<52 base-32 characters>');
  const narSizeText = fields.get('NarSize');
  if (narSizeText === undefined) return fail('NarSize is missing');
  const narSize = size(narSizeText);
  if (narSize === undefined || narSize === 0) return fail('NarSize is not a positive integer');
  const info: NarInfo = { storePath, url, compression, narHash, narSize, references: [], sigs };
  const fileHash = fields.get('FileHash');
  if (fileHash !== undefined) {
    if (!SHA256_RE.test(fileHash)) return fail('FileHash is not sha256:<52 base-32 characters>');
    info.fileHash = fileHash;
  }
  const fileSizeText = fields.get('FileSize');
  if (fileSizeText !== undefined) {
    const fileSize = size(fileSizeText);
    if (fileSize === undefined) return fail('FileSize is not a non-negative integer');
    info.fileSize = fileSize;
  }
  const refsText = fields.get('References') ?? '';
  const refNames = refsText === '' ? [] : refsText.split(' ');
  if (refNames.length > MAX_REFERENCES) return fail(`References lists more than ${MAX_REFERENCES} paths`);
  const refs = new Set<string>();
  for (const name of refNames) {
    const ref = STORE_PREFIX + name;
    if (name === '' || !STORE_PATH_RE.test(ref))
      return fail('References holds something that is not a store path base name');
    refs.add(ref);
  }
  info.references = [...refs].sort();
  const deriver = fields.get('Deriver');
  if (deriver !== undefined && deriver !== 'unknown-deriver') {
    const path = STORE_PREFIX + deriver;
    if (!STORE_PATH_RE.test(path) || !deriver.endsWith('.drv'))
      return fail('Deriver is not the base name of a .drv store path');
    info.deriver = path;
  }
  const ca = fields.get('CA');
  if (ca !== undefined) {
    if (!CA_RE.test(ca)) return fail('CA is malformed');
    info.ca = ca;
  }
  return { ok: true, info };
}

/** The text Nix writes for `info`. */
export function formatNarInfo(info: NarInfo): string {
  const lines = [`StorePath: ${info.storePath}`, `URL: ${info.url}`, `Compression: ${info.compression}`];
  if (info.fileHash !== undefined) lines.push(`FileHash: ${info.fileHash}`);
  if (info.fileSize !== undefined) lines.push(`FileSize: ${info.fileSize}`);
  lines.push(
    `NarHash: ${info.narHash}`,
    `NarSize: ${info.narSize}`,
    `References: ${info.references.map(baseName).join(' ')}`,
  );
  if (info.deriver !== undefined) lines.push(`Deriver: ${baseName(info.deriver)}`);
  for (const sig of info.sigs) lines.push(`Sig: ${sig}`);
  if (info.ca !== undefined) lines.push(`CA: ${info.ca}`);
  return lines.join('\n') + '\n';
}

/** What a narinfo signature signs: `1;<path>;<NarHash>;<NarSize>;<references, comma separated>`. */
export function narInfoFingerprint(info: Pick<NarInfo, 'storePath' | 'narHash' | 'narSize' | 'references'>): string {
  return `1;${info.storePath};${info.narHash};${info.narSize};${[...info.references].sort().join(',')}`;
}
