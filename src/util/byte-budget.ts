/**
 * A count of bytes held across many holders against one limit: each holder
 * takes what it is about to keep and gives it back when done. Taking fails
 * (returns false) rather than waits, so the caller can refuse at once. Pure.
 */
export class ByteBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}
