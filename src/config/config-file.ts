import YAML from 'yaml';
import { CONFIG_KEYS, KEY_BY_PATH } from './config-keys';
import type { RawEntry } from './sources';

/**
 * Reads the text of a config file (YAML or JSON; JSON is YAML) into raw
 * entries keyed by Config path. Keys are the camelCase Config keys, nested
 * as in Config. Pure: the caller reads the file.
 */

const GROUPS: ReadonlySet<string> = new Set(
  CONFIG_KEYS.flatMap((key) => {
    const segments = key.path.split('.');
    return segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('.'));
  }),
);

const normalise = (name: string) => name.replace(/[-_.]/g, '').toLowerCase();
const NORMALISED = new Map<string, string>([
  ...[...GROUPS].map((g) => [normalise(g), g] as const),
  ...CONFIG_KEYS.map((key) => [normalise(key.path), key.path] as const),
  ...CONFIG_KEYS.filter((key) => key.flagOverride).map((key) => [normalise(key.flag), key.path] as const),
]);

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function parseConfigText(text: string, file: string): { entries: RawEntry[]; problems: string[] } {
  const entries: RawEntry[] = [];
  const problems: string[] = [];
  const doc = YAML.parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    for (const error of doc.errors) problems.push(`config file ${file}: ${error.message.split('\n')[0]}`);
    return { entries, problems };
  }
  const root: unknown = doc.toJS();
  if (root === null || root === undefined) return { entries, problems };
  if (!isMapping(root)) {
    problems.push(
      `config file ${file}: must be a mapping of settings (e.g. "listen: 127.0.0.1:8980"), not a list or a value`,
    );
    return { entries, problems };
  }

  const walk = (node: Record<string, unknown>, prefix: string) => {
    for (const [name, value] of Object.entries(node)) {
      const path = prefix ? `${prefix}.${name}` : name;
      const key = KEY_BY_PATH.get(path);
      if (key) {
        entries.push({ key, raw: value, origin: { kind: 'file', file } });
      } else if (GROUPS.has(path)) {
        if (isMapping(value)) walk(value, path);
        else if (value !== null) problems.push(`${path} in ${file}: must be a mapping (nested keys such as ${path}.…)`);
      } else {
        const guess = NORMALISED.get(normalise(path));
        const hint = guess ? ` (did you mean ${guess}?)` : ' (keys are camelCase, as in --help)';
        problems.push(`${path} in ${file}: unknown key${hint}`);
      }
    }
  };
  walk(root, '');
  return { entries, problems };
}
