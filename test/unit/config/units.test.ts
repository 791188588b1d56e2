import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../../src/config/duration';
import { formatSize, parseSize } from '../../../src/config/size';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['14d', 1_209_600_000],
    ['1500', 1500],
    ['0', 0],
    ['1.5s', 1500],
    [' 10s ', 10_000],
  ])('%j is %d ms', (text, ms) => {
    expect(parseDuration(text)).toEqual({ ms });
  });

  it.each(['', 's', '10x', '-5s', '1.5', '0.5ms', '5 minutes', '1h30m', '1e3', '99999999999999999999d'])(
    '%j is refused with a reason',
    (text) => {
      const parsed = parseDuration(text);
      expect(parsed).toHaveProperty('error');
      expect((parsed as { error: string }).error).toMatch(/duration|milliseconds/);
    },
  );

  it.each([
    [30_000, '30s'],
    [300_000, '5m'],
    [1500, '1500ms'],
    [86_400_000, '1d'],
    [0, '0ms'],
  ])('formats %d as %s, which parses back', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    expect(parseDuration(text)).toEqual({ ms });
  });
});

describe('parseSize', () => {
  it.each([
    ['4194304', 4_194_304],
    ['4MiB', 4_194_304],
    ['512KiB', 524_288],
    ['1GiB', 1_073_741_824],
    ['2MB', 2_000_000],
    ['2mb', 2_000_000],
    ['1.5KiB', 1536],
    ['10B', 10],
  ])('%j is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toEqual({ bytes });
  });

  it.each(['', 'MiB', '4XB', '-1', '1.5', '0.3KiB', '4 MiB bytes'])('%j is refused with a reason', (text) => {
    expect(parseSize(text)).toHaveProperty('error');
  });

  it.each([
    [4_194_304, '4MiB'],
    [1000, '1000'],
    [1_073_741_824, '1GiB'],
  ])('formats %d as %s, which parses back', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
    expect(parseSize(text)).toEqual({ bytes });
  });
});
