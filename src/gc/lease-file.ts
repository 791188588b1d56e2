/**
 * A replica's lease file: the store paths its running (and recently finished)
 * actions need, so that a prune in any process never drops their roots.
 *
 * The file says itself when it stops counting (`writtenAtMs + ttlMs`, on the
 * writer's clock), so a prune needs no setting shared with the proxies, and a
 * crashed replica's file simply goes stale. JSON, replaced atomically by
 * rename. Pure: encoding, decoding and staleness only.
 */
import { STORE_PATH_RE } from '../nix/store-path';

export const LEASE_FORMAT = 'nix-reapi-proxy-lease/1';
/** Replica ids become file names. */
export const REPLICA_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const LEASE_SUFFIX = '.lease.json';
/** A lease that claims to live longer than this is capped: a wrong clock or a bad file must not pin roots forever. */
export const MAX_LEASE_TTL_MS = 24 * 3_600_000;

export interface LeaseRecord {
  replica: string;
  /** Host and pid of the writer, for a person reading the file. */
  host: string;
  pid: number;
  writtenAtMs: number;
  ttlMs: number;
  paths: string[];
}

export function encodeLease(lease: LeaseRecord): string {
  return JSON.stringify({ format: LEASE_FORMAT, ...lease });
}

export type DecodedLease = { ok: true; lease: LeaseRecord; skippedPaths: number } | { ok: false; problem: string };

export function decodeLease(text: string): DecodedLease {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'is not JSON' };
  }
  if (raw === null || typeof raw !== 'object') return { ok: false, problem: 'is not a JSON object' };
  const o = raw as Record<string, unknown>;
  if (o.format !== LEASE_FORMAT)
    return { ok: false, problem: `has format ${JSON.stringify(o.format)}, not ${LEASE_FORMAT}` };
  if (typeof o.replica !== 'string' || !REPLICA_ID_RE.test(o.replica))
    return { ok: false, problem: 'has no valid replica id' };
  if (typeof o.writtenAtMs !== 'number' || !Number.isFinite(o.writtenAtMs))
    return { ok: false, problem: 'has no writtenAtMs' };
  if (typeof o.ttlMs !== 'number' || !(o.ttlMs > 0)) return { ok: false, problem: 'has no positive ttlMs' };
  if (!Array.isArray(o.paths)) return { ok: false, problem: 'has no paths array' };
  const paths: string[] = [];
  let skippedPaths = 0;
  for (const p of o.paths) {
    if (typeof p === 'string' && STORE_PATH_RE.test(p)) paths.push(p);
    else skippedPaths++;
  }
  return {
    ok: true,
    skippedPaths,
    lease: {
      replica: o.replica,
      host: typeof o.host === 'string' ? o.host.slice(0, 255) : '',
      pid: typeof o.pid === 'number' ? o.pid : 0,
      writtenAtMs: o.writtenAtMs,
      ttlMs: Math.min(o.ttlMs, MAX_LEASE_TTL_MS),
      paths,
    },
  };
}

/**
 * A lease counts while `now` is within its ttl after it was written. A lease
 * written in the future (clock skew between hosts) counts until its ttl after
 * `now` would have run out, never longer.
 */
export function leaseIsLive(lease: Pick<LeaseRecord, 'writtenAtMs' | 'ttlMs'>, nowMs: number): boolean {
  const age = nowMs - lease.writtenAtMs;
  return age <= lease.ttlMs && age >= -lease.ttlMs;
}

/** A file name for a replica's lease. */
export function leaseFileName(replica: string): string {
  return replica + LEASE_SUFFIX;
}

/** Makes a safe replica id from a host name, pid and random suffix. */
export function replicaId(host: string, pid: number, random: string): string {
  const cleanHost =
    host
      .replace(/[^A-Za-z0-9.-]/g, '_')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 64) || 'host';
  const cleanRandom = random.replace(/[^A-Za-z0-9]/g, '').slice(0, 16);
  return `${cleanHost}-${pid}-${cleanRandom}`;
}
