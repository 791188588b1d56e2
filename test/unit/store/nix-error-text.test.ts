import { describe, expect, it } from 'vitest';
import { chunkArgs } from '../../../src/store/argv-chunks';
import { classifyCopyFailure, nixErrorSummary, type CopyFailureKind } from '../../../src/store/nix-error-text';
import { describeInvocation, nixEnvironment } from '../../../src/store/nix-command';

const P = '/nix/store/0c3y1v9zcgbl2xn8v7ns6hblkhsb3f1z-lib';
const stores = { source: 'file:///srv/cache', destination: 'ssh-ng://store' };

describe('classifyCopyFailure', () => {
  it.each<[string, string, CopyFailureKind]>([
    ['dependency missing in a cache', `copying 2 paths...\nerror: path '${P}' is not valid`, 'path'],
    ['path in no source', `error: path '${P}' is required, but there is no substituter that can build it`, 'path'],
    ['unsigned', `error: cannot add path '${P}' because it lacks a valid signature`, 'path'],
    ['hash mismatch', `error: hash mismatch importing path '${P}';\n  specified: sha256:x\n  got: sha256:y`, 'path'],
    ['concurrent-copy bug', "error: not an absolute path: 'nix-archive-1'", 'transient'],
    [
      'destination unreachable',
      "ssh: connect to host store port 22: Connection refused\nerror: cannot open connection to remote store 'ssh-ng://store': error: unexpected end-of-file",
      'destination',
    ],
    ['source unreachable', "error: cannot open connection to remote store 'file:///srv/cache/': x", 'source'],
    [
      'http source down',
      "error: unable to download 'https://cache.example.com/abc.narinfo': Couldn't resolve host name (6)",
      'source',
    ],
    ['disk full', `error: writing to file: No space left on device`, 'destination'],
    ['read-only store', `error: creating directory '/srv/x/nix/store/y': Read-only file system`, 'destination'],
    ['unknown', 'error: something unexpected', 'transient'],
    ['empty', '', 'transient'],
  ])('%s -> %s', (_what, stderr, kind) => {
    expect(classifyCopyFailure(stderr, stores)).toBe(kind);
  });
});

describe('nixErrorSummary', () => {
  it.each<[string, string, string]>([
    [
      'keeps error lines, drops progress',
      `copying 2 paths...\ncopying path '${P}' from 'x'...\nerror: path '${P}' is not valid\n`,
      `error: path '${P}' is not valid`,
    ],
    [
      'keeps ssh complaints',
      'ssh: connect to host 127.0.0.1 port 22: Connection refused\r\nerror: cannot open connection',
      'ssh: connect to host 127.0.0.1 port 22: Connection refused / error: cannot open connection',
    ],
    ['strips colours', '\u001b[31;1merror:\u001b[0m boom', 'error: boom'],
    ['falls back to the last line', 'something\nstrange happened', 'strange happened'],
    ['de-duplicates', 'error: x\nerror: x', 'error: x'],
  ])('%s', (_what, stderr, summary) => {
    expect(nixErrorSummary(stderr)).toBe(summary);
  });

  it('trims to the bound', () => {
    expect(nixErrorSummary('error: ' + 'x'.repeat(1000), 50)).toHaveLength(50);
  });
});

describe('chunkArgs', () => {
  it.each<[string, number, number, number[]]>([
    ['fits in one', 10, 1000, [10]],
    ['split by bytes', 10, 60 * 3 + 1, [3, 3, 3, 1]],
    ['split by count', 10, 1_000_000, [4, 4, 2]],
    ['empty', 0, 1000, []],
  ])('%s', (_what, n, budget, sizes) => {
    const args = Array.from({ length: n }, (_, i) => `${P.slice(0, -3)}${String(i).padStart(3, '0')}`);
    const chunks = chunkArgs(args, budget, 4);
    expect(chunks.map((c) => c.length)).toEqual(n === 10 && budget === 1000 ? [4, 4, 2] : sizes);
    expect(chunks.flat()).toEqual(args);
  });

  it('puts an argument larger than the budget alone rather than dropping it', () => {
    expect(chunkArgs(['a'.repeat(100), 'b'], 10)).toEqual([['a'.repeat(100)], ['b']]);
  });
});

describe('nix command helpers', () => {
  it('forces empty substituters after any inherited NIX_CONFIG', () => {
    const env = nixEnvironment({ PATH: '/bin', NIX_CONFIG: 'substituters = https://cache.nixos.org' });
    expect(env.PATH).toBe('/bin');
    const lines = env.NIX_CONFIG!.split('\n');
    expect(lines[0]).toBe('substituters = https://cache.nixos.org');
    expect(lines.lastIndexOf('substituters =')).toBeGreaterThan(0);
    expect(lines).toContain('extra-experimental-features = nix-command');
  });

  it('describes a command counting store paths instead of listing them', () => {
    expect(describeInvocation({ program: 'nix', args: ['copy', '--from', 'local', '--to', '/srv/s', P, P] })).toBe(
      'nix copy --from local --to /srv/s (2 paths)',
    );
  });
});
