import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The identity of the client a piece of work is done for, carried through
 * everything a call's handler awaits (the Execute preparation, the ensurer,
 * the realiser), so the store side can apply per-client limits without every
 * interface in between passing it along.
 */
const scope = new AsyncLocalStorage<string>();

/** Runs `fn` (and all it awaits) on behalf of `client`; without a client, as it is. */
export function runAsClient<T>(client: string | undefined, fn: () => T): T {
  return client === undefined ? fn() : scope.run(client, fn);
}

/** The client the current work is for, if a call set one. */
export function currentClient(): string | undefined {
  return scope.getStore();
}
