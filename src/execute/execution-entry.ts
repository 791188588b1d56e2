import type { ProxyError } from '../errors';
import type { BlobDigest } from './digests';
import { operationHead, queuedOperation } from './operation-messages';

/**
 * One Execute the proxy has named, from the first QUEUED Operation until the
 * upstream has taken it over, and what a later WaitExecution on that name
 * needs to know.
 *
 *   preparing  -> ready       references ensured; waiting for an attached call to forward it
 *   preparing  -> finished    store paths missing: `finalOperation` is ours (done, failed status)
 *   preparing  -> gone        preparation failed (`error`) or nobody stayed attached
 *   ready      -> forwarding  an attached call relays the original Execute upstream
 *   forwarding -> finished    the upstream's done Operation was seen
 *   forwarding -> ready       the relaying client went away before the upstream answered
 *   forwarding -> gone        the upstream ended the call without naming an Operation
 *
 * Calls (the Execute itself, WaitExecutions) attach while they follow the
 * entry. Preparation outlives the Execute call that started it: a client
 * whose stream broke (Bazel's --remote_timeout deadline on a long
 * realisation) comes back with WaitExecution and finds it going on. Only when
 * no call has been attached for `graceMs` is the entry abandoned.
 *
 * Single-threaded state: every change is synchronous and then announced to
 * the waiters, so two calls never both take over the forwarding.
 */
export type EntryState = 'preparing' | 'ready' | 'forwarding' | 'finished' | 'gone';

export type WaitResult = 'changed' | 'tick' | 'aborted';

export class ExecutionEntry {
  state: EntryState = 'preparing';
  /** Our QUEUED Operation: sent first to every call that attaches, and as a keepalive. */
  readonly queued: Buffer;
  /** The upstream's Operation name, once its first Operation went by. */
  upstreamName: string | undefined;
  /** A done Operation (ours, or the upstream's), once known. */
  finalOperation: Buffer | undefined;
  /** Why preparation failed, for the Execute call that started it. */
  error: ProxyError | undefined;
  /** True while one attached call relays the Execute upstream. */
  forwardingActive = false;
  /**
   * Set once preparation has to wait for something (a CAS read, a Nix
   * process, a realisation): only then do calls send the QUEUED Operation. A
   * warm action (everything known) goes upstream without one, and the client
   * sees the upstream's Operations only.
   */
  waiting = false;

  private attached = 0;
  private graceTimer: NodeJS.Timeout | undefined;
  private unfollowedTimer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly settledCallbacks: Array<() => void> = [];
  private settledFired = false;

  constructor(
    readonly name: string,
    readonly actionDigest: BlobDigest,
    /** The client's Execute request exactly as received, for forwarding by whichever call does it. */
    readonly requestFrame: Buffer,
    private readonly graceMs: number,
    private readonly onAbandoned: (entry: ExecutionEntry) => void,
  ) {
    this.queued = queuedOperation(name, actionDigest);
  }

  /** Bytes held, for the registry's size bound. */
  get sizeBytes(): number {
    return 512 + this.name.length + this.requestFrame.length + this.queued.length + (this.finalOperation?.length ?? 0);
  }

  /**
   * Runs `callback` once the action needs nothing more of the proxy: its
   * Operation is done (finished), it is gone, or it is being executed
   * upstream and no call has followed it for `graceMs`. What an action holds
   * (its store paths' leases) is held until then, whichever call follows it.
   */
  get settled(): boolean {
    return this.settledFired;
  }

  onSettled(callback: () => void): void {
    if (this.settledFired) return callback();
    this.settledCallbacks.push(callback);
  }

  attach(): () => void {
    this.attached++;
    if (this.graceTimer !== undefined) {
      clearTimeout(this.graceTimer);
      this.graceTimer = undefined;
    }
    if (this.unfollowedTimer !== undefined) {
      clearTimeout(this.unfollowedTimer);
      this.unfollowedTimer = undefined;
    }
    let detached = false;
    return () => {
      if (detached) return;
      detached = true;
      this.attached--;
      this.armGrace();
    };
  }

  get attachedCalls(): number {
    return this.attached;
  }

  setState(state: EntryState, fields: { error?: ProxyError; finalOperation?: Buffer } = {}): void {
    this.state = state;
    if (fields.error !== undefined) this.error = fields.error;
    if (fields.finalOperation !== undefined) this.finalOperation = fields.finalOperation;
    if (state === 'finished' || state === 'gone') {
      this.clearGrace();
      this.settle();
    } else this.armGrace();
    this.notify();
  }

  private settle(): void {
    if (this.settledFired) return;
    this.settledFired = true;
    if (this.unfollowedTimer !== undefined) clearTimeout(this.unfollowedTimer);
    for (const callback of this.settledCallbacks.splice(0)) callback();
  }

  /** Preparation waits for I/O: attached calls send the QUEUED Operation now. */
  markWaiting(): void {
    if (this.waiting) return;
    this.waiting = true;
    this.notify();
  }

  /** Sees each upstream Operation as it is relayed (bytes unchanged): learns its name and the final one. */
  observeUpstream(message: Buffer): void {
    const head = operationHead(message);
    if (head === undefined) return;
    let changed = false;
    if (head.name !== '' && head.name !== this.upstreamName) {
      this.upstreamName = head.name;
      changed = true;
    }
    if (head.done) {
      this.finalOperation = Buffer.from(message);
      this.state = 'finished';
      this.clearGrace();
      this.settle();
      changed = true;
    }
    if (changed) this.notify();
  }

  /** Resolves on the next change, after `tickMs` (never when it is Infinity), or when `signal` aborts, whichever comes first. */
  waitForChange(signal: AbortSignal, tickMs: number): Promise<WaitResult> {
    if (signal.aborted) return Promise.resolve('aborted');
    return new Promise<WaitResult>((resolve) => {
      const done = (result: WaitResult): void => {
        if (timer !== undefined) clearTimeout(timer);
        this.listeners.delete(onChange);
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const onChange = (): void => done('changed');
      const onAbort = (): void => done('aborted');
      const timer = Number.isFinite(tickMs) ? setTimeout(() => done('tick'), tickMs) : undefined;
      this.listeners.add(onChange);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Only states that still need a call to move on can be abandoned. */
  private armGrace(): void {
    if (
      this.attached === 0 &&
      this.state === 'forwarding' &&
      this.unfollowedTimer === undefined &&
      !this.settledFired
    ) {
      // Executing upstream and nobody follows it any more: after the grace period the proxy lets go of it.
      this.unfollowedTimer = setTimeout(() => {
        this.unfollowedTimer = undefined;
        if (this.attached === 0 && this.state === 'forwarding') this.settle();
      }, this.graceMs);
      this.unfollowedTimer.unref();
    }
    if (this.attached > 0 || this.graceTimer !== undefined) return;
    if (this.state !== 'preparing' && this.state !== 'ready') return;
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      if (this.attached === 0 && (this.state === 'preparing' || this.state === 'ready')) this.onAbandoned(this);
    }, this.graceMs);
    this.graceTimer.unref();
  }

  private clearGrace(): void {
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
  }
}
