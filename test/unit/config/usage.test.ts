import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../../src/config/config';
import { CONFIG_FILE_ENV, CONFIG_KEYS, getPath } from '../../../src/config/config-keys';
import { knownFlagNames } from '../../../src/config/cli-args';
import { GLOBAL_FLAGS, HEALTH_FLAGS, PRUNE_FLAGS } from '../../../src/config/command-flags';
import { formatValue, usageText } from '../../../src/config/usage';

const help = usageText('1.2.3');

/** The help entry of one flag: its line and the two below it. */
function entry(flag: string): string {
  const lines = help.split('\n');
  // Entry headers are the lines that start with a flag; usage lines mention flags too.
  const index = lines.findIndex((line) => line.startsWith('  -') && new RegExp(`(^|[ ,|])--${flag}( |$)`).test(line));
  expect(index, `--${flag} in help`).toBeGreaterThanOrEqual(0);
  return lines.slice(index, index + 3).join('\n');
}

describe('--help', () => {
  it.each(knownFlagNames())('documents --%s', (flag) => {
    expect(entry(flag)).toMatch(/default: /);
  });

  it.each(CONFIG_KEYS.map((key) => ({ flag: key.flag, env: key.env, path: key.path, key })))(
    '--$flag shows its default, $env and file key $path',
    ({ key }) => {
      const text = entry(key.flag);
      expect(text).toContain(`default: ${formatValue(key, getPath(DEFAULTS, key.path))}`);
      expect(text).toContain(`env: ${key.env}`);
      expect(text).toContain(`file key: ${key.path}`);
      expect(text).toContain(key.description);
    },
  );

  it('documents the config-file variable, the subcommands and the value syntax', () => {
    expect(entry('config')).toContain(`env: ${CONFIG_FILE_ENV}`);
    for (const word of ['health', 'prune', '--version', '250ms', '4MiB', 'commas or whitespace'])
      expect(help).toContain(word);
  });

  it('documents exactly the flags the parser accepts', () => {
    const documented = new Set([...help.matchAll(/--([a-z][a-z-]*)/g)].map((m) => m[1]));
    const parsed = new Set(knownFlagNames());
    const all = new Set([
      ...CONFIG_KEYS.map((k) => k.flag),
      ...[...GLOBAL_FLAGS, ...HEALTH_FLAGS, ...PRUNE_FLAGS].map((f) => f.name),
    ]);
    for (const flag of all) expect(parsed.has(flag), flag).toBe(true);
    for (const flag of documented) expect(parsed.has(flag!), `--${flag} is documented but not parsed`).toBe(true);
  });

  it('names flags as the kebab-case path, durations without Ms, sizes with Bytes', () => {
    const flags = Object.fromEntries(CONFIG_KEYS.map((k) => [k.path, k.flag]));
    expect(flags).toMatchObject({
      connectTimeoutMs: 'connect-timeout',
      'upstreamTls.ca': 'upstream-tls-ca',
      'tls.clientCa': 'tls-client-ca',
      'limits.treeDepth': 'limits-tree-depth',
      'cache.validityTtlMs': 'cache-validity-ttl',
      maxMessageBytes: 'max-message-bytes',
      'keepalive.timeMs': 'keepalive-time',
      substituters: 'substituter',
      trustedPublicKeys: 'trusted-public-key',
    });
    const envs = Object.fromEntries(CONFIG_KEYS.map((k) => [k.path, k.env]));
    expect(envs).toMatchObject({
      connectTimeoutMs: 'NIX_REAPI_PROXY_CONNECT_TIMEOUT_MS',
      'upstreamTls.serverName': 'NIX_REAPI_PROXY_UPSTREAM_TLS_SERVER_NAME',
      'limits.treeDepth': 'NIX_REAPI_PROXY_LIMITS_TREE_DEPTH',
    });
  });
});
