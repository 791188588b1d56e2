import { describe, expect, it } from 'vitest';
import { findStorePaths, scanStorePaths } from '../../../src/nix/reference-scanner';

const H1 = '0c3y1v9zcgbl2xn8v7ns6hblkhsb3f1z';
const H2 = 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz';
const P1 = `/nix/store/${H1}-clang-16`;
const P2 = `/nix/store/${H2}-bash-5.2`;

describe('findStorePaths', () => {
  it.each<[string, string, string[]]>([
    ['a bare store path', P1, [P1]],
    ['a sub-path maps to its store path', `${P1}/bin/cc`, [P1]],
    ['at the start of a string', `${P1} -c x`, [P1]],
    ['at the end of a string', `exec ${P1}`, [P1]],
    ['inside a flag', `-I${P1}/include`, [P1]],
    ['in PATH-like lists', `PATH=${P1}/bin:${P2}/bin:/usr/bin`, [P1, P2]],
    ['quoted', `"${P1}/bin/cc" '${P2}'`, [P1, P2]],
    ['repeated once', `${P1} ${P1}/bin ${P1}/lib`, [P1]],
    ['adjacent after separators', `${P1},${P2}`, [P1, P2]],
    ['a .drv', `/nix/store/${H1}-foo.drv`, [`/nix/store/${H1}-foo.drv`]],
    ['name with ?=+', `/nix/store/${H1}-a+b?c=d`, [`/nix/store/${H1}-a+b?c=d`]],
    ['stops at a semicolon', `${P1};rm -rf /`, [P1]],
    ['stops at $(', `${P1}$(id)`, [P1]],
    ['stops at a newline', `${P1}\nx`, [P1]],
    ['stops at NUL', `${P1}\0x`, [P1]],
    ['stops before non-ASCII', `${P1}é`, [P1]],
    ['no match: hash with e', `/nix/store/${H1.slice(0, 31)}e-x`, []],
    ['no match: hash of 31', `/nix/store/${H1.slice(1)}-x`, []],
    ['no match: hash of 33', `/nix/store/${H1}z-x`, []],
    ['no match: no dash', `/nix/store/${H1}`, []],
    ['no match: empty name', `/nix/store/${H1}-`, []],
    ['no match: empty name before slash', `/nix/store/${H1}-/bin`, []],
    ['no match: dot name', `/nix/store/${H1}-.x`, []],
    ['no match: upper-case hash', `/nix/store/${H1.toUpperCase()}-x`, []],
    ['no match: other store', `/gnu/store/${H1}-x`, []],
    ['no match: name too long', `/nix/store/${H1}-${'a'.repeat(212)}`, []],
    ['name of exactly 211', `/nix/store/${H1}-${'a'.repeat(211)}/x`, [`/nix/store/${H1}-${'a'.repeat(211)}`]],
    ['a lookalike then a real one', `/nix/store/${H1.slice(1)}-x ${P2}`, [P2]],
    ['prefix repeated then a path', `/nix/store//nix/store/${P1}`, [P1]],
    ['truncated at the end', `/nix/store/${H1.slice(0, 10)}`, []],
  ])('%s', (_label, input, expected) => {
    expect(findStorePaths(input).sort()).toEqual([...expected].sort());
  });

  it('scans binary buffers', () => {
    const bin = Buffer.concat([
      Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 0xff]),
      Buffer.from(`${P1}/lib\0`),
      Buffer.alloc(100, 0xfe),
    ]);
    expect(findStorePaths(bin)).toEqual([P1]);
  });

  it('scans a Uint8Array view at an offset', () => {
    const backing = Buffer.from(`xxxx${P2}/bin/bash`);
    expect(findStorePaths(new Uint8Array(backing.buffer, backing.byteOffset + 4, backing.length - 4))).toEqual([P2]);
  });

  it('does not invent ASCII from multi-byte characters', () => {
    // U+012F has low byte 0x2f ('/'), U+016E has 0x6e ('n'): a latin1 cast would forge bytes.
    const forged = '\u012fnix\u012fstore\u012f' + `${H1}-x`;
    expect(findStorePaths(forged)).toEqual([]);
  });

  it('stays linear on megabytes of prefixes', () => {
    const hostile = '/nix/store/'.repeat(400_000);
    expect(findStorePaths(hostile)).toEqual([]);
  });

  it('stops at maxDistinct and says so', () => {
    const set = new Set<string>();
    expect(scanStorePaths(`${P1} ${P2}`, set, 1)).toBe(false);
    expect(set.size).toBe(1);
    const again = new Set<string>([P1]);
    expect(scanStorePaths(`${P1} ${P1}`, again, 1)).toBe(true);
  });
});
