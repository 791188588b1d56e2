/**
 * limits.clientPushedBytesPerHour: bytes one client may upload to the binary
 * cache per sliding hour. An upload reserves its announced size
 * (Content-Length) before a byte is read, so concurrent uploads cannot slip
 * past the limit together; an upload that ends early gives the unused part
 * back. The client is the same identity the realisation limits use (token
 * name, certificate subject, or address). Pure (the clock is injected).
 */

const HOUR_MS = 3_600_000;

interface Entry {
  at: number;
  bytes: number;
}

export interface QuotaReservation {
  /** Keeps `usedBytes` of the reservation and returns the rest. Idempotent. */
  settle(usedBytes: number): void;
}

export class PushQuota {
  private readonly byClient = new Map<string, Entry[]>();

  constructor(
    private readonly limitBytes: number | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Reserves `bytes` for `client`, or says why not. */
  reserve(client: string, bytes: number): QuotaReservation | { problem: string } {
    if (this.limitBytes === undefined) return { settle() {} };
    const entries = this.current(client);
    const used = entries.reduce((n, e) => n + e.bytes, 0);
    if (used + bytes > this.limitBytes) {
      return {
        problem:
          `client '${client}' has uploaded or is uploading ${used} bytes in the last hour; ${bytes} more would pass ` +
          `limits.clientPushedBytesPerHour = ${this.limitBytes}. Retry later, or ask the proxy's operator to raise the limit`,
      };
    }
    const entry: Entry = { at: this.now(), bytes };
    entries.push(entry);
    this.byClient.set(client, entries);
    let settled = false;
    return {
      settle: (usedBytes: number) => {
        if (settled) return;
        settled = true;
        entry.bytes = Math.max(0, Math.min(entry.bytes, usedBytes));
      },
    };
  }

  private current(client: string): Entry[] {
    const since = this.now() - HOUR_MS;
    const entries = (this.byClient.get(client) ?? []).filter((e) => e.at > since && e.bytes > 0);
    if (entries.length === 0) this.byClient.delete(client);
    return entries;
  }
}
