import type { ConfigKey } from './config-keys';
import { formatDuration, parseDuration } from './duration';
import { formatSize, parseSize } from './size';

/**
 * Turns one raw configuration value into its typed form. Raw values are
 * strings from the environment and flags, string[] from repeatable flags,
 * booleans from boolean flags, and anything at all from a config file.
 * Keys with a parser become their parsed value (HostPort, UpstreamTarget,
 * StoreUrl); this is the only place setting text is parsed. Pure: no I/O.
 */
export type Coerced = { ok: true; value: unknown } | { ok: false; errors: string[] };

const fail = (...errors: string[]): Coerced => ({ ok: false, errors });
const ok = (value: unknown): Coerced => ({ ok: true, value });

function typeName(raw: unknown): string {
  if (raw === null) return 'null';
  if (Array.isArray(raw)) return 'a list';
  if (typeof raw === 'object') return 'a mapping';
  return `a ${typeof raw}`;
}

function checkBounds(key: ConfigKey, n: number, show: (n: number) => string): Coerced {
  if (key.min !== undefined && n < key.min) return fail(`must be at least ${show(key.min)}`);
  if (key.max !== undefined && n > key.max) return fail(`must be at most ${show(key.max)}`);
  return ok(n);
}

function coerceString(key: ConfigKey, raw: unknown): Coerced {
  if (typeof raw !== 'string') return fail(`must be a string, not ${typeName(raw)}`);
  if (raw === '') return key.optional ? ok(undefined) : fail('must not be empty');
  if (key.parse) {
    const parsed = key.parse(raw);
    return 'error' in parsed ? fail(parsed.error) : ok(parsed.value);
  }
  const problem = key.check?.(raw);
  return problem ? fail(problem) : ok(raw);
}

function coerceDuration(key: ConfigKey, raw: unknown): Coerced {
  let ms: number;
  if (typeof raw === 'number') {
    if (!Number.isSafeInteger(raw)) return fail('must be a whole number of milliseconds or a string like 30s');
    ms = raw;
  } else if (typeof raw === 'string') {
    const parsed = parseDuration(raw);
    if ('error' in parsed) return fail(parsed.error);
    ms = parsed.ms;
  } else {
    return fail(`must be a duration like 30s, not ${typeName(raw)}`);
  }
  return checkBounds(key, ms, formatDuration);
}

function coerceSize(key: ConfigKey, raw: unknown): Coerced {
  let bytes: number;
  if (typeof raw === 'number') {
    if (!Number.isSafeInteger(raw)) return fail('must be a whole number of bytes or a string like 4MiB');
    bytes = raw;
  } else if (typeof raw === 'string') {
    const parsed = parseSize(raw);
    if ('error' in parsed) return fail(parsed.error);
    bytes = parsed.bytes;
  } else {
    return fail(`must be a size like 4MiB, not ${typeName(raw)}`);
  }
  return checkBounds(key, bytes, formatSize);
}

function coerceInteger(key: ConfigKey, raw: unknown): Coerced {
  let n: number;
  if (typeof raw === 'number') n = raw;
  else if (typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw)) n = Number(raw);
  else return fail(`must be a whole number, not ${typeof raw === 'string' ? 'text' : typeName(raw)}`);
  if (!Number.isSafeInteger(n)) return fail('must be a whole number');
  return checkBounds(key, n, String);
}

const TRUE_WORDS = ['true', '1', 'yes', 'on'];
const FALSE_WORDS = ['false', '0', 'no', 'off'];

function coerceBoolean(raw: unknown): Coerced {
  if (typeof raw === 'boolean') return ok(raw);
  if (typeof raw === 'string') {
    const word = raw.trim().toLowerCase();
    if (TRUE_WORDS.includes(word)) return ok(true);
    if (FALSE_WORDS.includes(word)) return ok(false);
  }
  return fail('must be true or false');
}

/** Lists: an array of strings, or one string of items separated by commas or whitespace. */
function coerceList(key: ConfigKey, raw: unknown): Coerced {
  let items: unknown[];
  if (typeof raw === 'string') items = raw.split(/[\s,]+/).filter((item) => item !== '');
  else if (Array.isArray(raw)) items = raw;
  else return fail(`must be a list of strings, not ${typeName(raw)}`);
  const errors: string[] = [];
  const values: unknown[] = [];
  items.forEach((item, index) => {
    if (typeof item !== 'string' || item === '') {
      errors.push(`item ${index + 1} must be a non-empty string, not ${typeName(item)}`);
      return;
    }
    if (key.parse) {
      const parsed = key.parse(item);
      if ('error' in parsed) errors.push(`item ${JSON.stringify(item)} ${parsed.error}`);
      else values.push(parsed.value);
      return;
    }
    const problem = key.check?.(item);
    if (problem) errors.push(`item ${JSON.stringify(item)} ${problem}`);
    else values.push(item);
  });
  return errors.length ? fail(...errors) : ok(values);
}

function coerceChoice(key: ConfigKey, raw: unknown): Coerced {
  if (typeof raw === 'string' && key.choices?.includes(raw)) return ok(raw);
  return fail(`must be one of ${key.choices?.join(', ')}`);
}

export function coerceValue(key: ConfigKey, raw: unknown): Coerced {
  if (raw === null || raw === undefined) {
    if (key.optional) return ok(undefined);
    if (key.kind === 'list') return ok([]);
    return fail('has no value');
  }
  switch (key.kind) {
    case 'string':
    case 'file':
      return coerceString(key, raw);
    case 'duration':
      return coerceDuration(key, raw);
    case 'size':
      return coerceSize(key, raw);
    case 'integer':
      return coerceInteger(key, raw);
    case 'boolean':
      return coerceBoolean(raw);
    case 'list':
      return coerceList(key, raw);
    case 'choice':
      return coerceChoice(key, raw);
  }
}
