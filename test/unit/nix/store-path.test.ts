import { describe, expect, it } from 'vitest';
import { baseName, isStorePath, parseStorePath, storePathOf } from '../../../src/nix/store-path';

const H = '0c3y1v9zcgbl2xn8v7ns6hblkhsb3f1z';

describe('parseStorePath', () => {
  it.each([
    [`/nix/store/${H}-clang-16`, { hash: H, name: 'clang-16' }],
    [`/nix/store/${H}-a`, { hash: H, name: 'a' }],
    [`/nix/store/${H}-x.drv`, { hash: H, name: 'x.drv' }],
    [`/nix/store/${H}-a+b_c?d=e-1.0`, { hash: H, name: 'a+b_c?d=e-1.0' }],
    [`/nix/store/${H}-${'n'.repeat(211)}`, { hash: H, name: 'n'.repeat(211) }],
  ])('accepts %s', (input, expected) => {
    expect(parseStorePath(input)).toEqual({ path: input, ...expected });
  });

  it.each([
    ['empty', ''],
    ['no name', `/nix/store/${H}`],
    ['empty name', `/nix/store/${H}-`],
    ['name starts with a dot', `/nix/store/${H}-.hidden`],
    ['hash too short', `/nix/store/${H.slice(1)}-x`],
    ['hash too long', `/nix/store/${H}a-x`],
    ['e in hash', `/nix/store/${H.slice(0, 31)}e-x`],
    ['o in hash', `/nix/store/o${H.slice(1)}-x`],
    ['t in hash', `/nix/store/t${H.slice(1)}-x`],
    ['u in hash', `/nix/store/u${H.slice(1)}-x`],
    ['upper-case hash', `/nix/store/${H.toUpperCase()}-x`],
    ['sub-path', `/nix/store/${H}-x/bin/cc`],
    ['trailing slash', `/nix/store/${H}-x/`],
    ['other store dir', `/gnu/store/${H}-x`],
    ['relative', `nix/store/${H}-x`],
    ['dot-dot', `/nix/store/../store/${H}-x`],
    ['semicolon', `/nix/store/${H}-x;rm -rf /`],
    ['command substitution', `/nix/store/${H}-$(id)`],
    ['space', `/nix/store/${H}-a b`],
    ['newline', `/nix/store/${H}-a\nb`],
    ['NUL', `/nix/store/${H}-a\0`],
    ['non-ASCII', `/nix/store/${H}-café`],
    ['name too long', `/nix/store/${H}-${'n'.repeat(212)}`],
  ])('rejects %s', (_label, input) => {
    expect(parseStorePath(input)).toBeUndefined();
    expect(isStorePath(input)).toBe(false);
  });
});

describe('storePathOf', () => {
  it.each([
    [`/nix/store/${H}-clang/bin/cc`, `/nix/store/${H}-clang`],
    [`/nix/store/${H}-clang`, `/nix/store/${H}-clang`],
    [`/nix/store/${H}-clang/`, `/nix/store/${H}-clang`],
    [`/nix/store/${H}/bin`, undefined],
    [`/usr/bin/cc`, undefined],
    [`/nix/store/${H}-.x/y`, undefined],
  ])('%s -> %s', (input, expected) => {
    expect(storePathOf(input)).toBe(expected);
  });

  it('baseName strips the store directory', () => {
    expect(baseName(`/nix/store/${H}-clang`)).toBe(`${H}-clang`);
  });
});
