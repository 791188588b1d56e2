import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HashIndex } from '../../../src/cache/hash-index';

const A = '0b8fd980k13nhvjkpmmli254dbr8k0a4';
const B = 'ny6syja1g678qdx830ag4ip6vvdd360n';
const C = 'qvxccg7yij6xiwihp90fyvpg7im79218';
const TTL = 10_000;

let dir: string;
let warnings: { obj: unknown; msg: string }[];
let now: number;

function logger(): Logger {
  return { warn: (obj: unknown, msg: string) => warnings.push({ obj, msg }) } as unknown as Logger;
}

function index(opts: { dirs?: string[]; maxEntries?: number } = {}): HashIndex {
  return new HashIndex({
    dirs: opts.dirs ?? [dir],
    maxEntries: opts.maxEntries ?? 100,
    listTtlMs: TTL,
    logger: logger(),
    now: () => now,
  });
}

function entry(name: string, under = dir): void {
  writeFileSync(path.join(under, name), '');
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hash-index-test-'));
  warnings = [];
  now = 1_700_000_000_000;
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('HashIndex', () => {
  it('maps the hash of a path it was told of to the path', async () => {
    const idx = index({ dirs: [] });
    idx.add(`/nix/store/${A}-hello`);
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-hello`);
  });

  it('ignores what is not a store path', async () => {
    const idx = index({ dirs: [] });
    idx.add(`/nix/store/${A}-hello/bin/hello`);
    idx.add(`/gnu/store/${B}-hello`);
    idx.add(`${C}-hello`);
    expect(await idx.lookup(A)).toBeUndefined();
    expect(await idx.lookup(B)).toBeUndefined();
    expect(await idx.lookup(C)).toBeUndefined();
  });

  it('finds a path on a miss by listing its directories', async () => {
    const other = path.join(dir, 'roots');
    mkdirSync(other);
    entry(`${A}-hello`);
    entry(`${B}-world`, other);
    const idx = index({ dirs: [dir, other] });
    expect(await idx.lookup(B)).toBe(`/nix/store/${B}-world`);
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-hello`);
  });

  it('skips lock files and names that are not store path base names', async () => {
    entry(`${A}-hello.lock`);
    entry(`${B}`);
    entry('.links');
    entry(`${C}-.hidden`);
    const idx = index();
    for (const h of [A, B, C]) expect(await idx.lookup(h)).toBeUndefined();
  });

  it('reuses a listing for listTtlMs before a miss lists again', async () => {
    const idx = index();
    expect(await idx.lookup(A)).toBeUndefined();
    entry(`${A}-late`);
    now += TTL - 1;
    expect(await idx.lookup(A)).toBeUndefined();
    now += 1;
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-late`);
  });

  it('answers a hit without listing', async () => {
    const idx = index({ dirs: [path.join(dir, 'not-a-dir')] });
    writeFileSync(path.join(dir, 'not-a-dir'), '');
    idx.add(`/nix/store/${A}-hello`);
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-hello`);
    expect(warnings).toEqual([]);
  });

  it('passes over a missing directory silently', async () => {
    entry(`${A}-hello`);
    const idx = index({ dirs: [path.join(dir, 'missing'), dir] });
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-hello`);
    expect(warnings).toEqual([]);
  });

  it('warns of a directory it cannot list, and goes on to the next', async () => {
    const file = path.join(dir, 'a-file');
    writeFileSync(file, '');
    entry(`${A}-hello`);
    const idx = index({ dirs: [file, dir] });
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-hello`);
    expect(warnings).toEqual([
      { obj: { dir: file, err: 'ENOTDIR' }, msg: 'cannot list store path names for the binary cache' },
    ]);
  });

  it('shares one listing between concurrent misses', async () => {
    const file = path.join(dir, 'a-file');
    writeFileSync(file, '');
    const idx = index({ dirs: [file] });
    await Promise.all([idx.lookup(A), idx.lookup(B), idx.lookup(C)]);
    expect(warnings).toHaveLength(1);
  });

  it('keeps at most maxEntries paths, dropping the least recently used', async () => {
    const idx = index({ dirs: [], maxEntries: 2 });
    idx.add(`/nix/store/${A}-a`);
    idx.add(`/nix/store/${B}-b`);
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-a`);
    idx.add(`/nix/store/${C}-c`);
    expect(await idx.lookup(B)).toBeUndefined();
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-a`);
    expect(await idx.lookup(C)).toBe(`/nix/store/${C}-c`);
  });

  it('maps a hash to the path added last', async () => {
    const idx = index({ dirs: [] });
    idx.add(`/nix/store/${A}-old`);
    idx.add(`/nix/store/${A}-new`);
    expect(await idx.lookup(A)).toBe(`/nix/store/${A}-new`);
  });
});
