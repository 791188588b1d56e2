import type { Config } from './config';
import { CONFIG_KEYS, getPath } from './config-keys';
import type { Sources } from './sources';
import { formatValue } from './usage';
import { redactUrl } from './value-checks';

/**
 * The effective configuration as a flat object for the start-up log line:
 * dotted keys, durations and sizes with units, passwords in URLs masked,
 * unset keys left out; `sources` names where each non-default value came from.
 */
export function describeConfig(config: Config, sources?: Sources): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const value = getPath(config, key.path);
    if (value === undefined) continue;
    const show = (item: unknown) => (key.show ? (key.show as (v: unknown) => string)(item) : item);
    if (key.kind === 'list') settings[key.path] = (value as unknown[]).map((item) => redactUrl(String(show(item))));
    else if (key.kind === 'duration' || key.kind === 'size') settings[key.path] = formatValue(key, value);
    else {
      const shown = show(value);
      settings[key.path] = typeof shown === 'string' ? redactUrl(shown) : shown;
    }
  }
  if (!sources) return { settings };
  const from: Record<string, string> = {};
  for (const [path, origin] of Object.entries(sources)) {
    if (origin.kind === 'file') from[path] = `file ${origin.file}`;
    else if (origin.kind === 'env') from[path] = `env ${origin.name}`;
    else if (origin.kind === 'flag') from[path] = `flag ${origin.name}`;
  }
  return { settings, sources: from };
}
