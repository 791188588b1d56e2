/**
 * Flags that belong to one subcommand rather than to Config, and the flags
 * every command accepts. Like config-keys.ts, this table feeds both the
 * parser and --help. Pure.
 */

export const COMMANDS = ['serve', 'health', 'prune', 'help', 'version'] as const;
export type Command = (typeof COMMANDS)[number];

export interface CommandFlag {
  readonly name: string;
  readonly type: 'string' | 'boolean';
  readonly valueName: string;
  readonly description: string;
  /** Shown in --help. */
  readonly defaultText: string;
  readonly short?: string;
}

export const GLOBAL_FLAGS: readonly CommandFlag[] = [
  {
    name: 'config',
    type: 'string',
    valueName: 'FILE',
    defaultText: 'none',
    description:
      'YAML or JSON file of settings (camelCase keys, nested like the dotted names below). Also env NIX_REAPI_PROXY_CONFIG.',
  },
  {
    name: 'help',
    short: 'h',
    type: 'boolean',
    valueName: '',
    defaultText: '-',
    description: 'Print this help and exit.',
  },
  { name: 'version', type: 'boolean', valueName: '', defaultText: '-', description: 'Print the version and exit.' },
];

export const HEALTH_FLAGS: readonly CommandFlag[] = [
  {
    name: 'address',
    type: 'string',
    valueName: 'HOST:PORT',
    defaultText: 'the listen setting, with 0.0.0.0 and [::] replaced by loopback',
    description: 'Address of the running proxy to check.',
  },
  {
    name: 'timeout',
    type: 'string',
    valueName: 'DURATION',
    defaultText: '5s',
    description: 'Give up (exit non-zero) when no answer arrives within this time.',
  },
  {
    name: 'tls',
    type: 'boolean',
    valueName: '',
    defaultText: 'off',
    description: 'Connect with TLS (implied by --ca, --cert, --key and --server-name).',
  },
  {
    name: 'ca',
    type: 'string',
    valueName: 'FILE',
    defaultText: 'system roots',
    description: "PEM CA bundle that signs the proxy's certificate.",
  },
  {
    name: 'cert',
    type: 'string',
    valueName: 'FILE',
    defaultText: 'none',
    description: 'PEM client certificate, when the proxy requires mTLS (needs --key).',
  },
  { name: 'key', type: 'string', valueName: 'FILE', defaultText: 'none', description: 'PEM private key of --cert.' },
  {
    name: 'server-name',
    type: 'string',
    valueName: 'NAME',
    defaultText: 'the host of --address',
    description: "Name to verify in the proxy's certificate.",
  },
];

export const PRUNE_FLAGS: readonly CommandFlag[] = [
  {
    name: 'unused-for',
    type: 'string',
    valueName: 'DURATION',
    defaultText: 'required',
    description: 'Drop the GC roots of store paths no action has used for this long (e.g. 14d; 0s = all not in use).',
  },
  {
    name: 'dry-run',
    type: 'boolean',
    valueName: '',
    defaultText: 'off',
    description: 'Only print what would be dropped; change nothing.',
  },
  {
    name: 'gc',
    type: 'boolean',
    valueName: '',
    defaultText: 'off',
    description: "Run the shared store's garbage collector afterwards and report what it freed.",
  },
];

export const HEALTH_DEFAULT_TIMEOUT_MS = 5_000;
