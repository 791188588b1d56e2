import { describe, expect, it } from 'vitest';
import { isDeletingLine, parseGcSummary } from '../../../src/gc/gc-output';
import {
  decodeLease,
  encodeLease,
  leaseIsLive,
  MAX_LEASE_TTL_MS,
  replicaId,
  REPLICA_ID_RE,
} from '../../../src/gc/lease-file';
import { parsePathInfoJson, type PathInfoMap } from '../../../src/gc/path-info-json';
import { isOwnRoot, storePathOfEntry } from '../../../src/gc/root-entries';
import { rootLocation } from '../../../src/gc/root-location';
import { parseSharedStoreUrl } from '../../../src/store/store-url';
import { storePath } from '../store/fake-nix';

const A = storePath('a');
const B = storePath('b');

describe('rootLocation', () => {
  const store = (url: string) => {
    const r = parseSharedStoreUrl(url);
    if (!r.ok) throw new Error(r.problem);
    return r.store;
  };
  it.each([
    ['/srv/nix', undefined, '/srv/nix/nix/var/nix/gcroots/nix-reapi-proxy', '/srv/nix'],
    ['/srv/nix/', undefined, '/srv/nix/nix/var/nix/gcroots/nix-reapi-proxy', '/srv/nix'],
    ['local', undefined, '/nix/var/nix/gcroots/nix-reapi-proxy', '/nix/var/nix'],
    ['local?root=/x', undefined, '/x/nix/var/nix/gcroots/nix-reapi-proxy', '/x'],
    ['local?root=/x&state=/s', undefined, '/s/gcroots/nix-reapi-proxy', '/s'],
    ['daemon', undefined, '/nix/var/nix/gcroots/nix-reapi-proxy', '/nix/var/nix'],
    ['unix:///nix/var/nix/daemon-socket/socket', undefined, '/nix/var/nix/gcroots/nix-reapi-proxy', '/nix/var/nix'],
    ['ssh-ng://builder', '/mnt/builder-gcroots/proxy/', '/mnt/builder-gcroots/proxy', '/mnt/builder-gcroots'],
    ['/srv/nix', '/elsewhere', '/elsewhere', '/'],
  ])('%s (gcRootsDir %s) -> %s', (url, override, dir, mustExist) => {
    const loc = rootLocation(store(url), override);
    expect(loc).toMatchObject({ on: true, dir, mustExist });
  });

  it.each([
    ['ssh-ng://builder', 'on another host'],
    ['ssh://me@builder', 'set gcRootsDir'],
    ['unix:///run/other.sock', 'non-default socket'],
  ])('%s: roots are off, saying why', (url, why) => {
    const loc = rootLocation(store(url));
    expect(loc.on).toBe(false);
    if (!loc.on) expect(loc.why).toContain(why);
  });
});

describe('root entries', () => {
  it.each([
    [A.slice(11), A, true],
    [A.slice(11), B, false],
    [A.slice(11), `/x${A}`, false],
    ['.leases', '/nix/store/.leases', false],
    ['not-a-store-path', '/nix/store/not-a-store-path', false],
    ['../../etc', '/nix/store/../../etc', false],
  ])('%s -> %s: own root %s', (name, target, own) => {
    expect(isOwnRoot(name, target)).toBe(own);
  });
  it('maps names to store paths strictly', () => {
    expect(storePathOfEntry(A.slice(11))).toBe(A);
    expect(storePathOfEntry('x')).toBeUndefined();
    expect(storePathOfEntry(`${A.slice(11)}/sub`)).toBeUndefined();
  });
});

describe('lease files', () => {
  const lease = { replica: 'host-1-abc', host: 'host', pid: 1, writtenAtMs: 1000, ttlMs: 120_000, paths: [A, B] };

  it('round-trips', () => {
    expect(decodeLease(encodeLease(lease))).toEqual({ ok: true, lease, skippedPaths: 0 });
  });

  it.each([
    ['not json', '{', 'is not JSON'],
    ['not an object', '3', 'not a JSON object'],
    ['other format', JSON.stringify({ ...lease, format: 'x/2' }), 'has format'],
    ['bad replica', JSON.stringify({ format: 'nix-reapi-proxy-lease/1', ...lease, replica: '../x' }), 'replica'],
    ['no ttl', JSON.stringify({ format: 'nix-reapi-proxy-lease/1', ...lease, ttlMs: 0 }), 'ttlMs'],
    ['no paths', JSON.stringify({ format: 'nix-reapi-proxy-lease/1', ...lease, paths: 'x' }), 'paths'],
  ])('refuses %s', (_name, text, problem) => {
    const d = decodeLease(text);
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.problem).toContain(problem);
  });

  it('skips malformed paths and caps the ttl', () => {
    const d = decodeLease(
      JSON.stringify({ format: 'nix-reapi-proxy-lease/1', ...lease, ttlMs: 1e15, paths: [A, '/etc/x', 5, B] }),
    );
    expect(d).toMatchObject({ ok: true, skippedPaths: 2, lease: { paths: [A, B], ttlMs: MAX_LEASE_TTL_MS } });
  });

  it.each([
    [1000, true],
    [121_000, true],
    [121_001, false],
    [-119_000, true], // written "in the future" by a skewed clock: bounded
    [-119_001 - 1000, false],
  ])('a lease written at 1000 with ttl 120s is live at %i: %s', (now, live) => {
    expect(leaseIsLive(lease, now)).toBe(live);
  });

  it('makes file-safe replica ids', () => {
    for (const [host, random] of [
      ['build-01.example.com', 'a1b2'],
      ['../../etc', 'x/y'],
      ['', ''],
      ['-x', 'zz'],
    ] as const) {
      expect(replicaId(host, 42, random)).toMatch(REPLICA_ID_RE);
    }
  });
});

describe('nix path-info --json', () => {
  it('reads Nix 2.8 arrays, skipping invalid entries and foreign references', () => {
    const into: PathInfoMap = new Map();
    const text = JSON.stringify([
      { path: A, narSize: 288, references: [B, '/not/a/path'] },
      { path: B, narSize: 10, references: [] },
      { path: storePath('gone'), valid: false },
      { path: 'junk', narSize: 1 },
    ]);
    expect(parsePathInfoJson(text, into)).toBe(2);
    expect(into.get(A)).toEqual({ narSize: 288, references: [B] });
    expect(into.has(storePath('gone'))).toBe(false);
  });

  it('reads the object form of later Nix versions', () => {
    const into: PathInfoMap = new Map();
    parsePathInfoJson(JSON.stringify({ [A]: { narSize: 5, references: [] }, [B]: null }), into);
    expect([...into.keys()]).toEqual([A]);
  });

  it('treats a missing or bad size as 0 and rejects text that is not JSON', () => {
    const into: PathInfoMap = new Map();
    parsePathInfoJson(JSON.stringify([{ path: A, narSize: -1 }]), into);
    expect(into.get(A)).toEqual({ narSize: 0, references: [] });
    expect(() => parsePathInfoJson('warning: x', into)).toThrow();
    expect(() => parsePathInfoJson('"x"', into)).toThrow();
  });
});

describe('nix-store --gc output', () => {
  it.each([
    ['2 store paths deleted, 0.00 MiB freed\n', { pathsDeleted: 2, bytesFreed: 0 }],
    ['1 store paths deleted, 1.50 MiB freed', { pathsDeleted: 1, bytesFreed: 1_572_864 }],
    ['0 store paths deleted, 0.00 MiB freed', { pathsDeleted: 0, bytesFreed: 0 }],
    ['nothing useful', undefined],
  ])('%j', (text, summary) => {
    expect(parseGcSummary(text)).toEqual(summary);
  });

  it('recognises per-path deletion lines only', () => {
    expect(isDeletingLine(`deleting '${A}'`)).toBe(true);
    expect(isDeletingLine('deleting garbage...')).toBe(false);
    expect(isDeletingLine('deleting unused links...')).toBe(false);
  });
});
