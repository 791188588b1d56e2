import { DEFAULTS } from './config';
import { CONFIG_FILE_ENV, CONFIG_KEYS, getPath, type ConfigKey } from './config-keys';
import { GLOBAL_FLAGS, HEALTH_FLAGS, PRUNE_FLAGS, type CommandFlag } from './command-flags';
import { formatDuration } from './duration';
import { formatSize } from './size';

/** --help text, generated from the same tables the parser uses. Pure. */

function showItem(key: ConfigKey, value: unknown): string {
  return key.show ? (key.show as (v: unknown) => string)(value) : String(value);
}

/** A value as a user would type it back: durations and sizes with units. */
export function formatValue(key: ConfigKey, value: unknown): string {
  if (value === undefined) return 'unset';
  switch (key.kind) {
    case 'duration':
      return formatDuration(value as number);
    case 'size':
      return formatSize(value as number);
    case 'list': {
      const items = value as unknown[];
      return items.length === 0 ? 'none' : items.map((item) => showItem(key, item)).join(',');
    }
    default:
      return showItem(key, value);
  }
}

function configFlagLines(key: ConfigKey): string[] {
  const flag =
    key.kind === 'boolean'
      ? `--${key.flag} | --no-${key.flag}`
      : `--${key.flag} ${key.valueName}${key.kind === 'list' ? ' (repeatable)' : ''}`;
  const fallback = formatValue(key, getPath(DEFAULTS, key.path));
  return [
    `  ${flag}`,
    `      ${key.description}`,
    `      default: ${fallback} | env: ${key.env} | file key: ${key.path}`,
  ];
}

function commandFlagLines(flag: CommandFlag, envNote: string): string[] {
  const name = `${flag.short ? `-${flag.short}, ` : ''}--${flag.name}${flag.valueName ? ` ${flag.valueName}` : ''}`;
  return [`  ${name}`, `      ${flag.description}`, `      default: ${flag.defaultText} | ${envNote}`];
}

export function usageText(version: string): string {
  const lines = [
    `nix-reapi-proxy ${version}: a Remote Execution API v2 proxy that makes the /nix/store paths an action`,
    "references valid on the executors' shared Nix store, then forwards the action unchanged.",
    '',
    'Usage:',
    '  nix-reapi-proxy [serve] --upstream URL [--listen HOST:PORT] [--config FILE] [settings]',
    '  nix-reapi-proxy health [--address HOST:PORT] [--timeout DURATION] [--tls] [--ca FILE] [--cert FILE --key FILE]',
    '  nix-reapi-proxy prune --shared-store STORE --unused-for DURATION [--dry-run] [--gc] [settings]',
    '  nix-reapi-proxy help | --help | -h',
    '  nix-reapi-proxy version | --version',
    '',
    'Each setting comes from, lowest precedence first: its default, the config file (YAML or JSON,',
    'camelCase keys nested as in the dotted file keys below), its environment variable, its flag.',
    'Durations: 250ms, 30s, 5m, 2h, 14d (a bare integer is milliseconds).',
    'Sizes: 4194304, 512KiB, 4MiB, 1GiB (binary) or 2MB (decimal).',
    'Lists in environment variables are separated by commas or whitespace; list flags repeat.',
    '',
    'Flags of every command:',
    ...GLOBAL_FLAGS.flatMap((flag) =>
      commandFlagLines(flag, flag.name === 'config' ? `env: ${CONFIG_FILE_ENV}` : 'env: none'),
    ),
    '',
    'Settings (serve and prune):',
    ...CONFIG_KEYS.flatMap(configFlagLines),
    '',
    'health: asks a running proxy for its gRPC health status; exits 0 when SERVING.',
    ...HEALTH_FLAGS.flatMap((flag) => commandFlagLines(flag, 'env: none (flag only)')),
    '',
    'GC roots: the proxy roots every path it makes valid in <store state>/gcroots/nix-reapi-proxy, so the',
    "store's garbage collector keeps it while actions use it. For an ssh:// or ssh-ng:// shared store roots",
    "are OFF unless gcRootsDir names the store host's gcroots directory mounted here (deploy/kubernetes",
    'does this); the start-up log says "GC roots on" or "GC roots are OFF" and why, and the metric',
    'nix_reapi_proxy_gc_roots_enabled is 1 or 0.',
    '',
    'prune: deletes store paths from the shared store that no action has used for a while.',
    ...PRUNE_FLAGS.flatMap((flag) => commandFlagLines(flag, 'env: none (flag only)')),
    '',
  ];
  return lines.join('\n');
}
