import type { ConfigKey } from './config-keys';

/** Where a setting's value came from. Precedence: default < file < env < flag. */
export type Origin =
  { kind: 'default' } | { kind: 'file'; file: string } | { kind: 'env'; name: string } | { kind: 'flag'; name: string };

/** Source of every Config key, by dotted path ('limits.treeDepth'). */
export type Sources = Record<string, Origin>;

/** A raw value from one source, not yet checked. */
export interface RawEntry {
  key: ConfigKey;
  raw: unknown;
  origin: Origin;
}

/** How a problem line names the setting: '--listen', 'NIX_REAPI_PROXY_LISTEN', 'listen in /etc/p.yaml'. */
export function describeOrigin(path: string, origin: Origin): string {
  switch (origin.kind) {
    case 'default':
      return `${path} (default)`;
    case 'file':
      return `${path} in ${origin.file}`;
    case 'env':
      return origin.name;
    case 'flag':
      return origin.name;
  }
}

/** Every way to set a key, for messages that ask the user to set one. */
export function allNamesOf(key: ConfigKey): string {
  return `--${key.flag}, ${key.env} or file key ${key.path}`;
}
