import { ProxyError } from '../errors';
import { T } from '../reapi/protos';
import { Code } from '../reapi/grpc-status';
import type { ServerCall } from '../rpc/server-call';

export const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
export const HEALTH_WATCH = '/grpc.health.v1.Health/Watch';

const SERVING = 1;
const NOT_SERVING = 2;

/**
 * grpc.health.v1.Health, answered by the proxy itself: SERVING while it accepts
 * calls, NOT_SERVING once shutdown began (so load balancers drain it first).
 * Service names: "" (the proxy) and every service the proxy serves.
 */
export class HealthService {
  private serving = true;
  private readonly watchers = new Set<ServerCall>();

  constructor(private readonly services: ReadonlySet<string>) {}

  setNotServing(): void {
    this.serving = false;
    for (const w of this.watchers) void w.sendMessage(encodeStatus(NOT_SERVING));
  }

  async handle(call: ServerCall): Promise<void> {
    const { message } = await call.readUnaryRequest();
    let service: string;
    try {
      service = (T.HealthCheckRequest.decode(message) as unknown as { service: string }).service;
    } catch (err) {
      throw new ProxyError(
        Code.INVALID_ARGUMENT,
        'BAD_MESSAGE',
        `not a grpc.health.v1.HealthCheckRequest: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (service !== '' && !this.services.has(service)) {
      call.end({ code: Code.NOT_FOUND, message: `unknown service '${service}'` });
      return;
    }
    const status = encodeStatus(this.serving ? SERVING : NOT_SERVING);
    if (call.path === HEALTH_CHECK) {
      await call.sendMessage(status);
      call.end({ code: Code.OK });
      return;
    }
    this.watchers.add(call);
    await call.sendMessage(status);
    await new Promise<void>((resolve) => call.signal.addEventListener('abort', () => resolve(), { once: true }));
    this.watchers.delete(call);
  }
}

function encodeStatus(status: number): Uint8Array {
  return T.HealthCheckResponse.encode({ status }).finish();
}
