/**
 * Per-client limits on realisations (limits.clientConcurrentRealisations,
 * limits.clientRealisedBytesPerHour), in front of the single-flight realiser.
 * The client is whoever the current call is for (read through
 * `currentClient`, set by the listener's admission check). A client over a
 * limit is refused with RESOURCE_EXHAUSTED naming the limit and the client;
 * clients retry those with backoff. Paths a realisation joined (another
 * client's copy in flight) cost nothing: the first asker pays.
 *
 * Bytes are reserved before a realisation starts: its `estimate` (the
 * closure's NAR size as the sources state it, known before anything is
 * copied) is held against the hour's budget while it runs, so concurrent
 * realisations cannot all start under the limit. When it ends, the
 * reservation is replaced by what it really made valid on the shared store
 * (its `measure`), counted over a sliding hour. A copy that starts under the
 * limit is never cut short, so a client can exceed the hour's budget by one
 * realisation, and is then refused until the hour has moved on. A caller that
 * gives up stops waiting, but the realisation (which goes on for others) keeps
 * its slot and its reservation until it ends, and is counted then.
 */
import type { Logger } from 'pino';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { untilAborted } from '../util/abortable';
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
  /** Bytes realising `paths` would add at most, asked before it starts (0 when unknown). */
  estimate?: (paths: readonly string[], signal: AbortSignal) => Promise<number>;
  /** Aborted at shutdown: realisations a caller gave up on run under it. */
  lifetime?: AbortSignal;
  logger: Logger;
  now?: () => number;
}

const HOUR_MS = 3_600_000;

interface ClientState {
  running: number;
  /** Bytes reserved by the realisations running now. */
  reserved: number;
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
    this.checkBytes(client, state, maxBytes);
    let reservation = 0;
    if (maxBytes !== undefined && this.o.estimate) {
      state.running++;
      try {
        reservation = await this.o.estimate(paths, signal).catch((err: unknown) => {
          this.o.logger.warn(
            { client, paths: paths.length, err: (err as Error).message },
            'cannot estimate the bytes of a realisation; reserving none',
          );
          return 0;
        });
      } finally {
        state.running--;
      }
      // Asked meanwhile by this client's other calls: check again with what they reserved.
      this.checkBytes(client, state, maxBytes);
    }
    state.running++;
    state.reserved += reservation;
    const started = this.now();
    // The work runs to its end (and is counted) even if this caller stops waiting.
    const work = this.inner
      .realise(paths, this.o.lifetime ?? new AbortController().signal)
      .then(async (outcomes) => {
        // Counted before answering, so the next Execute of this client already sees it.
        if (maxBytes !== undefined) await this.account(client, state, paths, outcomes, started);
        return outcomes;
      })
      .finally(() => {
        state.running--;
        state.reserved -= reservation;
        this.forgetIfIdle(client, state);
      });
    return untilAborted(work, signal, 'realising Nix store paths');
  }

  private checkBytes(client: string, state: ClientState, maxBytes: number | undefined): void {
    if (maxBytes === undefined) return;
    const used = this.usedLastHour(state);
    if (used + state.reserved < maxBytes) return;
    const running = state.reserved > 0 ? ` and ${state.reserved} more reserved by its realisations running now` : '';
    throw new ProxyError(
      Code.RESOURCE_EXHAUSTED,
      'CLIENT_BYTES_LIMIT',
      `client '${client}' had ${used} bytes of Nix store paths realised in the last hour${running}, the most it may have ` +
        `(limits.clientRealisedBytesPerHour = ${maxBytes}); retry later, or ask the proxy's operator to raise the limit`,
    );
  }

  private async account(
    client: string,
    state: ClientState,
    paths: readonly string[],
    outcomes: Map<string, PathOutcome>,
    started: number,
  ): Promise<void> {
    const mine = paths.filter((p) => {
      const o = outcomes.get(p);
      return o?.ok === true && !o.joined;
    });
    if (mine.length === 0) return;
    let bytes: number;
    try {
      bytes = await this.o.measure(mine, started);
    } catch (err) {
      this.o.logger.warn(
        { client, paths: mine.length, err: (err as Error).message },
        'cannot measure realised bytes; not counted',
      );
      return;
    }
    state.window.push({ at: this.now(), bytes });
    this.clients.set(client, state);
    this.o.logger.info({ client, bytes, lastHour: this.usedLastHour(state) }, 'realised bytes counted');
  }

  private stateOf(client: string): ClientState {
    let state = this.clients.get(client);
    if (state === undefined) this.clients.set(client, (state = { running: 0, reserved: 0, window: [] }));
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
