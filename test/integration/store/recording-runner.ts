/**
 * A NixRunner decorator for integration tests: records every spawn and can
 * answer chosen invocations with an injected outcome instead of running Nix.
 */
import type { NixInvocation, NixOutcome, NixRunner } from '../../../src/store/nix-command';

export class RecordingRunner implements NixRunner {
  readonly calls: NixInvocation[] = [];
  /** Checked in order before each spawn; the first that returns an outcome answers instead of Nix. */
  readonly faults: Array<(inv: NixInvocation) => NixOutcome | undefined> = [];

  constructor(private readonly inner: NixRunner) {}

  run(inv: NixInvocation, signal: AbortSignal): Promise<NixOutcome> {
    this.calls.push(inv);
    for (const fault of this.faults) {
      const outcome = fault(inv);
      if (outcome) return Promise.resolve(outcome);
    }
    return this.inner.run(inv, signal);
  }

  copies(): NixInvocation[] {
    return this.calls.filter((c) => c.program === 'nix' && c.args[0] === 'copy');
  }

  /** A fault that fails the next `count` copies with `stderr`, as Nix would. */
  failCopies(count: number, stderr: string): void {
    let left = count;
    this.faults.push((inv) => {
      if (left <= 0 || inv.program !== 'nix' || inv.args[0] !== 'copy') return undefined;
      left--;
      return { exitCode: 1, signal: null, stdout: '', stderr, ms: 0 };
    });
  }
}
