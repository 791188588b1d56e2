import { CONFIG_FILE_ENV, CONFIG_KEYS, ENV_PREFIX } from './config-keys';
import type { RawEntry } from './sources';

const KEY_BY_ENV = new Map(CONFIG_KEYS.map((key) => [key.env, key]));

/**
 * Picks NIX_REAPI_PROXY_* variables out of an environment. An empty variable
 * counts as set: it clears an optional key, empties a list, and is refused
 * for other keys. Unknown NIX_REAPI_PROXY_* names are problems (a typo would
 * otherwise be silently ignored). Pure.
 */
export function readEnv(env: Readonly<Record<string, string | undefined>>): {
  entries: RawEntry[];
  problems: string[];
} {
  const entries: RawEntry[] = [];
  const problems: string[] = [];
  for (const name of Object.keys(env).sort()) {
    const value = env[name];
    if (!name.startsWith(ENV_PREFIX) || name === CONFIG_FILE_ENV || value === undefined) continue;
    const key = KEY_BY_ENV.get(name);
    if (key) entries.push({ key, raw: value, origin: { kind: 'env', name } });
    else problems.push(`${name}: unknown variable (every ${ENV_PREFIX}* variable is listed in --help)`);
  }
  return { entries, problems };
}
