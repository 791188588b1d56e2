import { DEFAULTS, type Config } from '../../../src/config/config';
import { startProxy, type RunningProxy } from '../../../src/main';
import { testLogger } from '../../support/test-logger';

/** The proxy in this process, pure pass-through (no shared store), on 127.0.0.1:0 in front of `upstream`. */
export function startPassthroughProxy(upstream: string, overrides: Partial<Config> = {}): Promise<RunningProxy> {
  const config: Config = {
    ...DEFAULTS,
    listen: '127.0.0.1:0',
    upstream,
    // Tests never wait on keepalive PINGs; off keeps timers out of the picture.
    keepalive: { timeMs: 0, timeoutMs: 10_000 },
    ...overrides,
  };
  return startProxy(config, testLogger());
}
