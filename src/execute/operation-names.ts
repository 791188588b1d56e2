import { randomUUID } from 'node:crypto';

/**
 * Names of the Operations the proxy hands out while it prepares an Execute:
 * `{instance}/operations/nix-reapi-proxy/{uuid}` (without `{instance}/` for the
 * empty instance). The fixed segment lets WaitExecution tell ours from the
 * upstream's without any state; the UUID is random so names cannot be guessed.
 * Pure apart from the random source.
 */
const MARKER = 'operations/nix-reapi-proxy/';
const OURS_RE = /(?:^|\/)operations\/nix-reapi-proxy\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function newOperationName(instanceName: string, uuid: string = randomUUID()): string {
  return instanceName === '' ? `${MARKER}${uuid}` : `${instanceName}/${MARKER}${uuid}`;
}

/** True for any name of our form, known or not (an unknown one is answered NOT_FOUND, never sent upstream). */
export function isOurOperationName(name: string): boolean {
  return OURS_RE.test(name);
}
