/**
 * Per-client limits on realisations (limits.clientConcurrentRealisations,
 * limits.clientRealisedBytesPerHour), in front of the single-flight realiser.
 * The client is whoever the current call is for (read through
 * `currentClient`, set by the listener's admission check). A client over a
 * limit is refused with RESOURCE_EXHAUSTED naming the limit and the client;
 * clients retry those with backoff. Paths a realisation joined (another
 * client's copy in flight) cost nothing: the first asker pays.
 *
 * Bytes are what the realisation made valid on the shared store (its
 * `measure`), counted over a sliding hour once the copy is done; a copy that
 * starts under the limit is never cut short, so a client can exceed the hour's
 * budget by one realisation, and is then refused until the hour has moved on.
 */
import type { Logger } from 'pino';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import type { PathOutcome, Realiser } from './shared-store';

export interface ClientLimits {
  concurrentRealisations?: number;
  realisedBytesPerHour?: number;
}

export interface ClientLimitedRealiserOptions {
  limits: ClientLimits;
  currentClient: () => string | undefined;
  /** Bytes realising `paths` added to the shared store since `sinceMs`. */
  measure: (paths: readonly string[], sinceMs: number) => Promise<number>;
  logger: Logger;
  now?: () => number;
}

const HOUR_MS = 3_600_000;

interface ClientState {
  running: number;
  /** Realised bytes in the last hour, oldest first. */
  window: Array<{ at: number; bytes: number }>;
}

export class ClientLimitedRealiser implements Realiser {
  private readonly clients = new Map<string, ClientState>();
  private readonly now: () => number;

  constructor(
    private readonly inner: Realiser,
    private readonly o: ClientLimitedRealiserOptions,
  ) {
    this.now = o.now ?? Date.now;
  }

  async realise(paths: readonly string[], signal: AbortSignal): Promise<Map<string, PathOutcome>> {
    const client = this.o.currentClient();
    if (client === undefined) return this.inner.realise(paths, signal);
    const state = this.stateOf(client);
    const { concurrentRealisations: maxRunning, realisedBytesPerHour: maxBytes } = this.o.limits;
    if (maxRunning !== undefined && state.running >= maxRunning) {
      throw new ProxyError(
        Code.RESOURCE_EXHAUSTED,
        'CLIENT_REALISATIONS_LIMIT',
        `client '${client}' already has ${state.running} realisations of Nix store paths running, the most it may have at once ` +
          `(limits.clientConcurrentRealisations = ${maxRunning}); retry once they have finished`,
      );
    }
    const used = this.usedLastHour(state);
    if (maxBytes !== undefined && used >= maxBytes) {
      throw new ProxyError(
        Code.RESOURCE_EXHAUSTED,
        'CLIENT_BYTES_LIMIT',
        `client '${client}' had ${used} bytes of Nix store paths realised in the last hour, the most it may have ` +
          `(limits.clientRealisedBytesPerHour = ${maxBytes}); retry later, or ask the proxy's operator to raise the limit`,
      );
    }
    state.running++;
    const started = this.now();
    try {
      const outcomes = await this.inner.realise(paths, signal);
      // Counted before answering, so the next Execute of this client already sees it.
      if (maxBytes !== undefined) await this.account(client, state, paths, outcomes, started);
      return outcomes;
    } finally {
      state.running--;
      this.forgetIfIdle(client, state);
    }
  }

  private async account(client: string, state: ClientState, paths: readonly string[], outcomes: Map<string, PathOutcome>, started: number): Promise<void> {
    const mine = paths.filter((p) => {
      const o = outcomes.get(p);
      return o?.ok === true && !o.joined;
    });
    if (mine.length === 0) return;
    let bytes: number;
    try {
      bytes = await this.o.measure(mine, started);
    } catch (err) {
      this.o.logger.warn({ client, paths: mine.length, err: (err as Error).message }, 'cannot measure realised bytes; not counted');
      return;
    }
    state.window.push({ at: this.now(), bytes });
    this.clients.set(client, state);
    this.o.logger.info({ client, bytes, lastHour: this.usedLastHour(state) }, 'realised bytes counted');
  }

  private stateOf(client: string): ClientState {
    let state = this.clients.get(client);
    if (state === undefined) this.clients.set(client, (state = { running: 0, window: [] }));
    return state;
  }

  private usedLastHour(state: ClientState): number {
    const since = this.now() - HOUR_MS;
    while (state.window.length > 0 && state.window[0]!.at <= since) state.window.shift();
    let total = 0;
    for (const e of state.window) total += e.bytes;
    return total;
  }

  /** Keeps the map to clients with something running or counted. */
  private forgetIfIdle(client: string, state: ClientState): void {
    if (state.running === 0 && this.usedLastHour(state) === 0 && state.window.length === 0) this.clients.delete(client);
  }
}
