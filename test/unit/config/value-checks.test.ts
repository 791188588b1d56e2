import { describe, expect, it } from 'vitest';
import { checkAbsolutePath, checkListenAddress, checkUpstreamUrl, redactUrl } from '../../../src/config/value-checks';
import { parseSharedStoreUrl, parseSubstituterUrl } from '../../../src/store/store-url';

// Store URLs are parsed by src/store/store-url.ts alone; these rows check the config accepts and refuses the same.
const checkSubstituter = (text: string) => {
  const r = parseSubstituterUrl(text);
  return r.ok ? undefined : r.problem;
};
const checkSharedStore = (text: string) => {
  const r = parseSharedStoreUrl(text);
  return r.ok ? undefined : r.problem;
};

type Case = [check: (v: string) => string | undefined, value: string, ok: boolean];

const cases: Record<string, Case[]> = {
  listen: [
    [checkListenAddress, '127.0.0.1:8980', true],
    [checkListenAddress, '0.0.0.0:0', true],
    [checkListenAddress, '[::1]:8980', true],
    [checkListenAddress, '[::]:443', true],
    [checkListenAddress, 'localhost:1', true],
    [checkListenAddress, 'proxy.example.com:65535', true],
    [checkListenAddress, '8980', false],
    [checkListenAddress, ':8980', false],
    [checkListenAddress, '127.0.0.1', false],
    [checkListenAddress, '127.0.0.1:65536', false],
    [checkListenAddress, '127.0.0.1:http', false],
    [checkListenAddress, '::1:8980', false],
    [checkListenAddress, 'host name:80', false],
    [checkListenAddress, 'grpc://127.0.0.1:80', false],
  ],
  upstream: [
    [checkUpstreamUrl, 'grpc://127.0.0.1:8981', true],
    [checkUpstreamUrl, 'grpcs://frontend.buildbarn:443', true],
    [checkUpstreamUrl, 'grpc://[::1]:8981', true],
    [checkUpstreamUrl, 'grpc://host:8981/', true],
    [checkUpstreamUrl, 'grpc://host', false],
    [checkUpstreamUrl, 'grpc://host:0', false],
    [checkUpstreamUrl, 'http://host:80', false],
    [checkUpstreamUrl, 'host:80', false],
    [checkUpstreamUrl, 'grpc://user:pw@host:80', false],
    [checkUpstreamUrl, 'grpc://host:80/path', false],
    [checkUpstreamUrl, 'grpc://host:80?x=1', false],
    [checkUpstreamUrl, 'grpc://:80', false],
  ],
  substituter: [
    [checkSubstituter, 'local', true],
    [checkSubstituter, 'daemon', true],
    [checkSubstituter, 'file:///srv/binary-cache', true],
    [checkSubstituter, 'https://cache.nixos.org', true],
    [checkSubstituter, 'http://10.0.0.1:8080/cache?priority=10', true],
    [checkSubstituter, 'ssh://builder', true],
    [checkSubstituter, 'ssh-ng://root@builder?ssh-key=/root/.ssh/id', true],
    [checkSubstituter, 's3://bucket?region=eu-west-1', true],
    [checkSubstituter, 'ftp://mirror/cache', false],
    [checkSubstituter, 'gs://bucket', false],
    [checkSubstituter, 'file://relative/path', false],
    [checkSubstituter, 'https://', false],
    [checkSubstituter, 'cache.nixos.org', false],
    [checkSubstituter, 'https://cache.nixos.org extra', false],
    [checkSubstituter, 'ssh://user:pw@builder', false],
  ],
  sharedStore: [
    [checkSharedStore, '/srv/nix-shared', true],
    [checkSharedStore, 'local', true],
    [checkSharedStore, 'daemon', true],
    [checkSharedStore, 'ssh://nfs-server', true],
    [checkSharedStore, 'ssh-ng://root@nfs-server', true],
    [checkSharedStore, 'ssh-ng://nfs-server?remote-store=/srv/store', true],
    [checkSharedStore, 'unix:///nix/var/nix/daemon-socket/socket', true],
    [checkSharedStore, '/', false],
    [checkSharedStore, 'relative/dir', false],
    [checkSharedStore, '/srv/../etc', false],
    [checkSharedStore, 'https://cache.nixos.org', false],
    [checkSharedStore, 's3://bucket', false],
    [checkSharedStore, 'ssh://', false],
    [checkSharedStore, 'ssh://host/path', false],
    [checkSharedStore, 'unix://relative', false],
    [checkSharedStore, '-oProxyCommand=x', false],
  ],
  absolutePath: [
    [checkAbsolutePath, '/mnt/nix', true],
    [checkAbsolutePath, 'mnt/nix', false],
    [checkAbsolutePath, '/mnt/./nix', false],
    [checkAbsolutePath, '/mnt/\nnix', false],
  ],
};

describe.each(Object.entries(cases))('%s', (_name, rows) => {
  it.each(rows.map(([check, value, ok]) => ({ check, value, ok })))('$value -> ok=$ok', ({ check, value, ok }) => {
    const reason = check(value);
    if (ok) expect(reason).toBeUndefined();
    else expect(reason).toMatch(/\w+/);
  });
});

describe('redactUrl', () => {
  it.each([
    ['https://user:secret@cache.example.com/x', 'https://user:***@cache.example.com/x'],
    ['https://cache.example.com', 'https://cache.example.com'],
    ['ssh://root@builder', 'ssh://root@builder'],
    ['127.0.0.1:8980', '127.0.0.1:8980'],
  ])('%s -> %s', (input, output) => {
    expect(redactUrl(input)).toBe(output);
  });
});
