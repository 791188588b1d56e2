import { describe, expect, it } from 'vitest';
import { parseSharedStoreUrl, parseSubstituterUrl, type StoreUrl } from '../../../src/store/store-url';

type Expect = Partial<StoreUrl>;

describe('parseSharedStoreUrl', () => {
  it.each<[string, Expect]>([
    ['/srv/nix-shared', { kind: 'chroot', localDir: '/srv/nix-shared', params: {} }],
    ['/srv/nix-shared/', { kind: 'chroot', localDir: '/srv/nix-shared' }],
    ['/mnt/nfs/store_1.x', { kind: 'chroot', localDir: '/mnt/nfs/store_1.x' }],
    ['local', { kind: 'local', params: {} }],
    ['local?root=/srv/x', { kind: 'local', localDir: '/srv/x', params: { root: '/srv/x' } }],
    [
      'local?store=/nix/store&state=/srv/state&real=/srv/real',
      { kind: 'local', params: { store: '/nix/store', state: '/srv/state', real: '/srv/real' } },
    ],
    ['daemon', { kind: 'daemon' }],
    ['daemon?max-connections=4', { kind: 'daemon', params: { 'max-connections': '4' } }],
    ['unix:///run/nix/daemon-socket/socket', { kind: 'daemon' }],
    ['ssh://builder', { kind: 'ssh', host: 'builder' }],
    ['ssh-ng://nix@store.example.com', { kind: 'ssh-ng', host: 'nix@store.example.com' }],
    ['ssh-ng://127.0.0.1', { kind: 'ssh-ng', host: '127.0.0.1' }],
    ['ssh-ng://host?remote-store=/srv/shared', { kind: 'ssh-ng', params: { 'remote-store': '/srv/shared' } }],
    ['ssh-ng://host?remote-store=%2Fsrv%2Fshared', { kind: 'ssh-ng', params: { 'remote-store': '/srv/shared' } }],
    [
      'ssh://host?ssh-key=/etc/proxy/id_ed25519&compress=true',
      { kind: 'ssh', params: { 'ssh-key': '/etc/proxy/id_ed25519', compress: 'true' } },
    ],
  ])('accepts %s', (input, expected) => {
    const r = parseSharedStoreUrl(input);
    expect(r).toMatchObject({ ok: true, store: { url: input, ...expected } });
  });

  it.each<[string, string, RegExp]>([
    ['empty', '', /empty/],
    ['relative directory', 'srv/nix', /not a store URL/],
    ['root directory', '/', /root directory.*local/],
    ['dot-dot', '/srv/../etc', /'\.' or '\.\.'/],
    ['double slash', '/srv//nix', /\/\//],
    ['space', '/srv/nix store', /spaces/],
    ['newline', 'local\n', /spaces or control/],
    ['query on a chroot path', '/srv/nix?root=/x', /local\?root=/],
    ['binary cache', 'file:///srv/cache', /binary caches/],
    ['http cache', 'https://cache.nixos.org', /binary caches/],
    ['port on ssh', 'ssh-ng://host:2222', /no port.*NIX_SSHOPTS/],
    ['path on ssh', 'ssh://host/srv/nix', /remote-store/],
    ['host that looks like an option', 'ssh://-oProxyCommand=id', /not a host name/],
    ['user that looks like an option', 'ssh://-l@host', /user name/],
    ['password', 'ssh://u:pw@host', /user name/],
    ['unknown setting', 'ssh-ng://host?proxy-command=id', /do not take/],
    ['duplicate setting', 'local?root=/a&root=/b', /twice/],
    ['relative remote-store', 'ssh-ng://host?remote-store=srv', /absolute/],
    ['unix socket relative', 'unix://run/socket', /absolute/],
    ['fragment', 'daemon#x', /fragment/],
    ['unknown scheme', 'ftp://host', /unsupported scheme/],
    ['bare word', 'auto', /not a store URL/],
    ['too long', '/' + 'a'.repeat(3000), /longer/],
  ])('rejects %s', (_what, input, problem) => {
    const r = parseSharedStoreUrl(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(problem);
  });
});

describe('parseSubstituterUrl', () => {
  it.each<[string, Expect]>([
    ['local', { kind: 'local' }],
    ['daemon', { kind: 'daemon' }],
    ['/srv/other-store', { kind: 'chroot', localDir: '/srv/other-store' }],
    ['file:///srv/cache', { kind: 'file', localDir: '/srv/cache' }],
    ['file:///srv/cache/?compression=none', { kind: 'file', localDir: '/srv/cache', params: { compression: 'none' } }],
    ['https://cache.nixos.org', { kind: 'http', host: 'cache.nixos.org' }],
    ['http://10.0.0.5:5000/nix?priority=30', { kind: 'http', host: '10.0.0.5', params: { priority: '30' } }],
    ['ssh://builder', { kind: 'ssh' }],
    ['ssh-ng://nix@builder', { kind: 'ssh-ng' }],
    ['s3://my-nix-cache?region=eu-west-1', { kind: 's3', params: { region: 'eu-west-1' } }],
  ])('accepts %s', (input, expected) => {
    expect(parseSubstituterUrl(input)).toMatchObject({ ok: true, store: { url: input, ...expected } });
  });

  it.each<[string, string, RegExp]>([
    ['file with two slashes', 'file://srv/cache', /three slashes/],
    ['file relative', 'file://./cache', /three slashes/],
    ['file with dot-dot', 'file:///srv/../cache', /'\.' or '\.\.'/],
    ['credentials in http', 'https://user:pw@cache.example.com', /netrc/],
    ['http without host', 'https:///path', /http\(s\):\/\/host/],
    ['http port out of range', 'http://cache:70000', /outside/],
    ['http with space', 'https://cache/a b', /spaces/],
    ['s3 bucket with path', 's3://bucket/prefix', /no path/],
    ['s3 upper case', 's3://MyBucket', /lower-case/],
    ['file setting on http', 'https://cache?remote-store=/x', /do not take/],
    ['gopher', 'gopher://x', /unsupported scheme/],
  ])('rejects %s', (_what, input, problem) => {
    const r = parseSubstituterUrl(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(problem);
  });
});
