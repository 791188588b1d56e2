/**
 * How many Executes are being prepared at once, overall and per client
 * (limits.concurrentPreparations, limits.clientConcurrentPreparations): each
 * preparation holds its request, a tree walk's memory and a place in the
 * realisation queue, so beyond the limits an Execute is refused at once with
 * RESOURCE_EXHAUSTED (clients retry it) instead of piling up. Pure.
 */
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';

export class PreparationSlots {
  private running = 0;
  private readonly perClient = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly maxPerClient: number | undefined,
  ) {}

  get inUse(): number {
    return this.running;
  }

  /** Takes a slot for `client` (undefined: not told apart); returns its release, or throws RESOURCE_EXHAUSTED. */
  take(client: string | undefined): () => void {
    if (this.running >= this.max) {
      throw new ProxyError(
        Code.RESOURCE_EXHAUSTED,
        'PREPARATIONS_LIMIT',
        `the proxy is preparing ${this.running} Executes already, the most it prepares at once (limits.concurrentPreparations = ${this.max}); retry shortly`,
      );
    }
    const mine = client === undefined ? 0 : (this.perClient.get(client) ?? 0);
    if (client !== undefined && this.maxPerClient !== undefined && mine >= this.maxPerClient) {
      throw new ProxyError(
        Code.RESOURCE_EXHAUSTED,
        'CLIENT_PREPARATIONS_LIMIT',
        `client '${client}' has ${mine} Executes being prepared, the most it may have at once (limits.clientConcurrentPreparations = ${this.maxPerClient}); retry once they are forwarded`,
      );
    }
    this.running++;
    if (client !== undefined) this.perClient.set(client, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      if (client === undefined) return;
      const n = (this.perClient.get(client) ?? 1) - 1;
      if (n <= 0) this.perClient.delete(client);
      else this.perClient.set(client, n);
    };
  }
}
