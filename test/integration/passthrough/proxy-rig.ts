import { DEFAULTS, type Config } from '../../../src/config/config';
import { startProxy, type RunningProxy } from '../../../src/main';
import { frontMode, startFront } from '../../support/front-process';
import { testLogger } from '../../support/test-logger';
import { typed } from '../../support/config-values';

/**
 * The proxy in this process, pure pass-through (no shared store), on
 * 127.0.0.1:0 in front of `upstream`. With NRP_FRONT=haproxy (the
 * "front+proxy" vitest project) the returned endpoint is the shipped HTTP/2
 * front instead, routing Execution, Capabilities and Health to this proxy and
 * every other call straight to `upstream`: the same tests then prove the
 * front keeps the pass-through's guarantees.
 */
export async function startPassthroughProxy(upstream: string, overrides: Partial<Config> = {}): Promise<RunningProxy> {
  const config: Config = {
    ...DEFAULTS,
    ...typed({ listen: '127.0.0.1:0', upstream }),
    // Tests never wait on keepalive PINGs; off keeps timers out of the picture.
    keepalive: { timeMs: 0, timeoutMs: 10_000 },
    ...overrides,
  };
  const proxy = await startProxy(config, testLogger());
  if (frontMode() === undefined) return proxy;
  const front = await startFront({ proxy: proxy.endpoint, cluster: upstream });
  return {
    ...proxy,
    endpoint: front.endpoint,
    close: async (graceMs?: number) => {
      await front.stop();
      await proxy.close(graceMs);
    },
  };
}
