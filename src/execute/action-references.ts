import { ProxyError } from '../errors';
import { scanStorePaths } from '../nix/reference-scanner';
import { Code } from '../reapi/grpc-status';
import { capWhere } from './memo-size';

/**
 * Store paths an Action and its Command mention outside the input tree:
 * arguments, environment variable values, the working directory and platform
 * properties (names and values) of both. Pure.
 */

interface Property {
  name?: string | null;
  value?: string | null;
}

export interface ActionFields {
  platform?: { properties?: Property[] | null } | null;
}

export interface CommandFields {
  arguments?: string[] | null;
  environmentVariables?: Property[] | null;
  workingDirectory?: string | null;
  platform?: { properties?: Property[] | null } | null;
}

/** Store path -> where it was first seen, e.g. `argument 0`, `environment variable PATH`. */
export type References = Map<string, string>;

/**
 * Adds each store path found to `into` with where it was found (the first
 * place wins). Throws RESOURCE_EXHAUSTED once `into` would exceed `maxPaths`.
 */
export function collectActionReferences(
  action: ActionFields,
  command: CommandFields,
  into: References,
  maxPaths: number,
): void {
  const add = (text: string | null | undefined, where: string): void => {
    if (!text) return;
    addFound(text, where, into, maxPaths);
  };
  (command.arguments ?? []).forEach((arg, i) => add(arg, `argument ${i}`));
  for (const env of command.environmentVariables ?? []) add(env.value, `environment variable ${env.name ?? ''}`);
  add(command.workingDirectory, 'working directory');
  for (const p of action.platform?.properties ?? []) {
    add(p.name, `Action platform property name ${p.name ?? ''}`);
    add(p.value, `Action platform property ${p.name ?? ''}`);
  }
  for (const p of command.platform?.properties ?? []) {
    add(p.name, `Command platform property name ${p.name ?? ''}`);
    add(p.value, `Command platform property ${p.name ?? ''}`);
  }
}

/** Scans `input` and records new paths with `where`; shared with the tree walker's limit handling. */
export function addFound(input: string | Uint8Array, where: string, into: References, maxPaths: number): void {
  const found = new Set<string>();
  scanStorePaths(input, found);
  for (const path of found) {
    if (into.has(path)) continue;
    if (into.size >= maxPaths) throw tooManyPaths(maxPaths);
    into.set(path, capWhere(where));
  }
}

export function tooManyPaths(maxPaths: number): ProxyError {
  return new ProxyError(
    Code.RESOURCE_EXHAUSTED,
    'TOO_MANY_STORE_PATHS',
    `the action references more than ${maxPaths} distinct Nix store paths (limits.storePathsPerAction); ` +
      'reduce what its inputs reference, or raise the limit in the proxy configuration',
  );
}
