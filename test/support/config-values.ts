import type { Config } from '../../src/config/config';
import { parseListenAddress, parseUpstreamTarget, type HostPort } from '../../src/config/value-checks';
import type { UpstreamTarget } from '../../src/config/upstream-target';
import { parseSharedStoreUrl, parseSubstituterUrl, type StoreUrl } from '../../src/store/store-url';

/**
 * Typed config values from their text, for tests that build a Config by hand
 * (loadConfig does this for the real proxy). Each throws on text the config
 * loader would refuse, so a test cannot run with a value a user could not set.
 */
export function hostPort(text: string): HostPort {
  const parsed = parseListenAddress(text);
  if ('error' in parsed) throw new Error(`${JSON.stringify(text)} ${parsed.error}`);
  return parsed.value;
}

export function upstreamTarget(text: string): UpstreamTarget {
  const parsed = parseUpstreamTarget(text);
  if ('error' in parsed) throw new Error(`${JSON.stringify(text)} ${parsed.error}`);
  return parsed.value;
}

export function sharedStoreUrl(text: string): StoreUrl {
  const parsed = parseSharedStoreUrl(text);
  if (!parsed.ok) throw new Error(`${JSON.stringify(text)} ${parsed.problem}`);
  return parsed.store;
}

export function substituterUrl(text: string): StoreUrl {
  const parsed = parseSubstituterUrl(text);
  if (!parsed.ok) throw new Error(`${JSON.stringify(text)} ${parsed.problem}`);
  return parsed.store;
}

export function substituterUrls(texts: readonly string[]): StoreUrl[] {
  return texts.map(substituterUrl);
}

/** Config overrides with the parsed settings written as text, as a user would write them. */
export type TextOverrides = Omit<
  Partial<Config>,
  'listen' | 'upstream' | 'metricsListen' | 'sharedStore' | 'substituters'
> & {
  listen?: string;
  upstream?: string;
  metricsListen?: string;
  sharedStore?: string;
  substituters?: readonly string[];
};

/** Parses the text-valued settings of `over`; other keys pass as they are. */
export function typed(over: TextOverrides): Partial<Config> {
  const { listen, upstream, metricsListen, sharedStore, substituters, ...rest } = over;
  return {
    ...rest,
    ...(listen !== undefined ? { listen: hostPort(listen) } : {}),
    ...(upstream !== undefined ? { upstream: upstreamTarget(upstream) } : {}),
    ...(metricsListen !== undefined ? { metricsListen: hostPort(metricsListen) } : {}),
    ...(sharedStore !== undefined ? { sharedStore: sharedStoreUrl(sharedStore) } : {}),
    ...(substituters !== undefined ? { substituters: substituterUrls(substituters) } : {}),
  };
}
