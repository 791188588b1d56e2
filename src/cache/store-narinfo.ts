/**
 * The narinfo the binary cache serves for a path valid on the shared store,
 * built from `nix path-info --json` (pure). The NAR is served uncompressed
 * (`Compression: none`, `nar/<hash>.nar`), straight from `nix store
 * dump-path`, so FileHash and FileSize are the NAR's own.
 */
import { HASH_LENGTH, STORE_PATH_RE, STORE_PREFIX } from '../nix/store-path';
import type { NarInfo } from './narinfo';
import { encodeNixBase32 } from './nix-base32';

/** `sha256-<base64>` (Nix 2.8's JSON) or `sha256:<base32>` -> `sha256:<base32>`; undefined otherwise. */
export function base32Sha256(hash: string): string | undefined {
  if (/^sha256:[0-9a-df-np-sv-z]{52}$/.test(hash)) return hash;
  const sri = /^sha256-([A-Za-z0-9+/]{43}=)$/.exec(hash);
  if (!sri) return undefined;
  const bytes = Buffer.from(sri[1]!, 'base64');
  return bytes.length === 32 ? `sha256:${encodeNixBase32(bytes)}` : undefined;
}

/** One entry of `nix path-info --json` as a narinfo, or undefined when it is not a valid path's entry. */
export function narInfoFromPathInfo(raw: unknown): NarInfo | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const o = raw as Record<string, unknown>;
  if (o.valid === false || typeof o.path !== 'string' || !STORE_PATH_RE.test(o.path)) return undefined;
  const narHash = typeof o.narHash === 'string' ? base32Sha256(o.narHash) : undefined;
  const narSize = o.narSize;
  if (narHash === undefined || typeof narSize !== 'number' || !Number.isSafeInteger(narSize) || narSize < 0)
    return undefined;
  const references = Array.isArray(o.references)
    ? o.references.filter((r): r is string => typeof r === 'string' && STORE_PATH_RE.test(r))
    : [];
  const sigs = Array.isArray(o.signatures)
    ? o.signatures.filter((s): s is string => typeof s === 'string' && /^[^\s:]+:[A-Za-z0-9+/=]+$/.test(s))
    : [];
  const hash = o.path.slice(STORE_PREFIX.length, STORE_PREFIX.length + HASH_LENGTH);
  const info: NarInfo = {
    storePath: o.path,
    url: `nar/${hash}.nar`,
    compression: 'none',
    fileHash: narHash,
    fileSize: narSize,
    narHash,
    narSize,
    references: [...new Set(references)].sort(),
    sigs,
  };
  if (typeof o.deriver === 'string' && STORE_PATH_RE.test(o.deriver) && o.deriver.endsWith('.drv'))
    info.deriver = o.deriver;
  if (typeof o.ca === 'string' && /^[\x21-\x7e]{1,512}$/.test(o.ca)) info.ca = o.ca;
  return info;
}

/** Every valid path's narinfo in `nix path-info --json` output (Nix 2.8's array, or later versions' map). */
export function narInfosFromPathInfoJson(text: string): Map<string, NarInfo> {
  const raw: unknown = JSON.parse(text);
  const out = new Map<string, NarInfo>();
  const entries = Array.isArray(raw)
    ? raw
    : raw !== null && typeof raw === 'object'
      ? Object.entries(raw).map(([path, v]) =>
          v !== null && typeof v === 'object' ? { ...(v as object), path } : undefined,
        )
      : [];
  for (const entry of entries) {
    const info = narInfoFromPathInfo(entry);
    if (info) out.set(info.storePath, info);
  }
  return out;
}
