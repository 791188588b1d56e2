import { describe, expect, it } from 'vitest';
import { MAX_URL_LENGTH, NAR_EXTENSIONS, routeOf } from '../../../src/cache/cache-routes';

const H = '0b8fd980k13nhvjkpmmli254dbr8k0a4';
const FH = '1y1k1qn5lndfmgj5cqx13hm4nihqpfmxvsb9a3n983s29chwilyd';

function status(method: string, url: string): number | string {
  const route = routeOf(method, url);
  return route.kind === 'refused' ? route.status : route.kind;
}

describe('routeOf: the names stock Nix uses', () => {
  it.each(['GET', 'HEAD'])('%s /nix-cache-info is the cache info', (method) => {
    expect(routeOf(method, '/nix-cache-info')).toEqual({ kind: 'cache-info' });
  });

  it.each(['GET', 'HEAD', 'PUT'])('%s /<hash>.narinfo is that narinfo', (method) => {
    expect(routeOf(method, `/${H}.narinfo`)).toEqual({ kind: 'narinfo', hash: H });
  });

  it.each(['GET', 'HEAD'])('%s /nar/<hash32>.nar is the NAR of a valid path', (method) => {
    expect(routeOf(method, `/nar/${H}.nar`)).toEqual({ kind: 'served-nar', hash: H });
  });

  it.each(Object.entries(NAR_EXTENSIONS))(
    'PUT /nar/<filehash>.nar%s is a pushed NAR compressed with %s',
    (ext, compression) => {
      expect(routeOf('PUT', `/nar/${FH}.nar${ext}`)).toEqual({
        kind: 'pushed-nar',
        fileName: `${FH}.nar${ext}`,
        fileHash: FH,
        compression,
      });
    },
  );

  it('HEAD of a pushed NAR name is the pushed NAR (Nix asks before uploading)', () => {
    expect(routeOf('HEAD', `/nar/${FH}.nar.xz`)).toEqual({
      kind: 'pushed-nar',
      fileName: `${FH}.nar.xz`,
      fileHash: FH,
      compression: 'xz',
    });
  });
});

describe('routeOf: methods', () => {
  it.each([
    ['PUT', '/nix-cache-info', 'GET and HEAD'],
    ['POST', '/nix-cache-info', 'GET and HEAD'],
    ['DELETE', `/${H}.narinfo`, 'GET, HEAD and PUT'],
    ['POST', `/${H}.narinfo`, 'GET, HEAD and PUT'],
    ['PUT', `/nar/${H}.nar`, 'GET and HEAD'],
    ['DELETE', `/nar/${H}.nar`, 'GET and HEAD'],
    ['GET', `/nar/${FH}.nar.xz`, 'HEAD and PUT'],
    ['DELETE', `/nar/${FH}.nar`, 'HEAD and PUT'],
  ])('%s %s is refused 405, naming the methods allowed', (method, url, allowed) => {
    expect(routeOf(method, url)).toEqual({
      kind: 'refused',
      status: 405,
      message: `${method} is not allowed on ${url}; this binary cache accepts ${allowed} there`,
    });
  });

  it.each(['get', 'Put'])('compares methods exactly (%s is not a method Node passes on)', (method) => {
    expect(status(method, `/${H}.narinfo`)).toBe(405);
  });
});

describe('routeOf: names it does not keep', () => {
  it.each([
    ['a build log', `/log/${H}-hello.drv`],
    ['a listing', `/${H}.ls`],
    ['a realisation', '/realisations/sha256:abc!out.doi'],
    ['the root', '/'],
  ])('PUT of %s is refused 404, listing what the cache stores', (_label, url) => {
    const route = routeOf('PUT', url);
    expect(route).toMatchObject({ kind: 'refused', status: 404 });
    expect(route.kind === 'refused' && route.message).toContain('it accepts /<hash>.narinfo and /nar/<filehash>.nar');
  });

  it.each([
    ['a build log', `/log/${H}-hello.drv`],
    ['the root', '/'],
    ['a trailing slash', '/nix-cache-info/'],
    ['an upper-case name', '/NIX-CACHE-INFO'],
    ['a narinfo under nar/', `/nar/${H}.narinfo`],
    ['a served NAR with a compression extension', `/nar/${H}.nar.xz`],
    ['a pushed NAR with an unknown extension', `/nar/${FH}.nar.zip`],
    ['a pushed NAR with .nar doubled', `/nar/${FH}.nar.nar`],
    ['a NAR outside nar/', `/${FH}.nar.xz`],
    ['a NAR in a subdirectory of nar/', `/nar/x/${FH}.nar.xz`],
  ])('GET of %s is refused 404', (_label, url) => {
    expect(routeOf('GET', url)).toEqual({
      kind: 'refused',
      status: 404,
      message: `${url} is not in this binary cache`,
    });
  });
});

describe('routeOf: hashes', () => {
  it.each([
    ['e', `${H.slice(0, 31)}e`],
    ['o', `o${H.slice(1)}`],
    ['u', `${H.slice(0, 10)}u${H.slice(11)}`],
    ['t', `${H.slice(0, 20)}t${H.slice(21)}`],
    ['an upper-case letter', H.toUpperCase()],
    ['a dash', `${H.slice(0, 31)}-`],
  ])('refuses a narinfo hash with %s', (_label, hash) => {
    for (const method of ['GET', 'PUT']) expect(status(method, `/${hash}.narinfo`)).toBe(404);
  });

  it.each([
    ['31 characters', H.slice(1)],
    ['33 characters', `${H}0`],
    ['52 characters (a file hash)', FH],
    ['nothing', ''],
  ])('refuses a narinfo hash of %s', (_label, hash) => {
    expect(status('GET', `/${hash}.narinfo`)).toBe(404);
    expect(status('PUT', `/${hash}.narinfo`)).toBe(404);
  });

  it.each([
    ['51 characters', FH.slice(1)],
    ['53 characters', `${FH}0`],
    ['a t', `${FH.slice(0, 51)}t`],
  ])('refuses a pushed NAR hash of %s', (_label, hash) => {
    expect(status('PUT', `/nar/${hash}.nar.xz`)).toBe(404);
  });

  it.each([
    ['31 characters', H.slice(1)],
    ['33 characters', `${H}0`],
    ['an e', `${H.slice(0, 31)}e`],
  ])('refuses a served NAR hash of %s', (_label, hash) => {
    expect(status('GET', `/nar/${hash}.nar`)).toBe(404);
  });
});

describe('routeOf: URLs that could name another file are refused before any lookup', () => {
  const ESCAPES = 'the URL may not hold a query, fragment, percent escape or backslash';
  const DOTS = "the URL may not hold '//', '.' or '..' segments";

  it.each([
    ['a dot-dot segment', '/nar/../x'],
    ['a dot-dot segment reaching a narinfo', `/nar/../${H}.narinfo`],
    ['a leading dot-dot', `/../${H}.narinfo`],
    ['a trailing dot-dot', '/nar/..'],
    ['a dot segment', `/./${H}.narinfo`],
    ['a dot segment inside nar/', `/nar/./${FH}.nar`],
    ['a doubled slash', `//${H}.narinfo`],
    ['a doubled slash inside', `/nar//${FH}.nar`],
  ])('%s is refused 400', (_label, url) => {
    for (const method of ['GET', 'HEAD', 'PUT'])
      expect(routeOf(method, url)).toEqual({ kind: 'refused', status: 400, message: DOTS });
  });

  it.each([
    ['an encoded dot-dot', '/nar/%2e%2e/x'],
    ['an encoded upper-case dot-dot', '/nar/%2E%2E/x'],
    ['an encoded slash', `/nar%2f${FH}.nar`],
    ['an encoded hash character', `/%30${H.slice(1)}.narinfo`],
    ['a backslash', `/nar\\..\\${H}.narinfo`],
    ['a query', `/${H}.narinfo?x=1`],
    ['an empty query', `/${H}.narinfo?`],
    ['a fragment', `/${H}.narinfo#x`],
  ])('%s is refused 400', (_label, url) => {
    for (const method of ['GET', 'HEAD', 'PUT']) {
      expect(routeOf(method, url)).toEqual({ kind: 'refused', status: 400, message: ESCAPES });
    }
  });

  it('refuses ?compression=zstd: a store URL option Nix applies itself and never sends', () => {
    expect(routeOf('PUT', `/nar/${FH}.nar.zst?compression=zstd`)).toEqual({
      kind: 'refused',
      status: 400,
      message: ESCAPES,
    });
    expect(routeOf('GET', '/nix-cache-info?compression=zstd')).toEqual({
      kind: 'refused',
      status: 400,
      message: ESCAPES,
    });
  });

  it.each([
    ['no leading slash', `${H}.narinfo`],
    ['an absolute URL', `http://cache.example.org/${H}.narinfo`],
    ['an asterisk', '*'],
    ['nothing', ''],
  ])('a request target with %s is refused 400', (_label, url) => {
    expect(routeOf('GET', url)).toEqual({
      kind: 'refused',
      status: 400,
      message: 'the request target must be a path starting with /',
    });
  });

  it('a dot inside a name is not a dot segment', () => {
    expect(status('GET', `/${H}.narinfo`)).toBe('narinfo');
    expect(status('GET', '/..narinfo')).toBe(404);
  });
});

describe('routeOf: URL length', () => {
  it(`refuses a URL longer than ${MAX_URL_LENGTH} characters with 414, whatever it holds`, () => {
    const url = '/' + 'a'.repeat(MAX_URL_LENGTH);
    expect(routeOf('GET', url)).toEqual({
      kind: 'refused',
      status: 414,
      message: `the URL is longer than ${MAX_URL_LENGTH} characters`,
    });
    expect(status('GET', '/..' + '/x'.repeat(MAX_URL_LENGTH))).toBe(414);
  });

  it(`looks at a URL of exactly ${MAX_URL_LENGTH} characters`, () => {
    expect(status('GET', '/' + 'a'.repeat(MAX_URL_LENGTH - 1))).toBe(404);
  });
});
