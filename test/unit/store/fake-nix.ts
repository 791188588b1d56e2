/**
 * An in-memory stand-in for the Nix command line, for unit tests of the
 * composed store side: stores are sets of paths, `references` gives closures,
 * and `nix copy` copies whole closures or fails like Nix 2.8 does when the
 * source lacks part of one. Every spawn is recorded; copies can be held open
 * with a gate and failures injected.
 */
import type { NixInvocation, NixOutcome, NixRunner } from '../../../src/store/nix-command';

export function storePath(name: string, seed = 0): string {
  const alphabet = '0123456789abcdfghijklmnpqrsvwxyz';
  let h = 0;
  for (const c of `${seed}:${name}`) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  let hash = '';
  for (let i = 0; i < 32; i++) {
    h = (h * 1103515245 + 12345) >>> 0;
    hash += alphabet[h % 32];
  }
  return `/nix/store/${hash}-${name}`;
}

export class FakeNix implements NixRunner {
  readonly stores = new Map<string, Set<string>>();
  readonly references = new Map<string, string[]>();
  readonly calls: NixInvocation[] = [];
  /** Stores whose every command fails as if unreachable. */
  readonly unreachable = new Set<string>();
  /** When set, each copy waits for it before doing anything. */
  gate: Promise<void> | undefined;
  /** Each queued entry makes one upcoming copy fail with that stderr. */
  readonly copyFailures: string[] = [];

  store(url: string): Set<string> {
    let s = this.stores.get(url);
    if (!s) this.stores.set(url, (s = new Set()));
    return s;
  }

  closure(path: string): string[] {
    const seen = new Set<string>();
    const walk = (p: string): void => {
      if (seen.has(p)) return;
      seen.add(p);
      for (const r of this.references.get(p) ?? []) walk(r);
    };
    walk(path);
    return [...seen];
  }

  copies(): NixInvocation[] {
    return this.calls.filter((c) => c.program === 'nix' && c.args[0] === 'copy');
  }

  checks(store?: string): NixInvocation[] {
    return this.calls.filter(
      (c) => c.args.includes('--check-validity') && (store === undefined || c.args[1] === store),
    );
  }

  async run(inv: NixInvocation, signal: AbortSignal): Promise<NixOutcome> {
    this.calls.push(inv);
    const done = (exitCode: number, stdout = '', stderr = ''): NixOutcome => ({
      exitCode,
      signal: null,
      stdout,
      stderr,
      ms: 1,
    });
    const paths = inv.args.filter((a) => a.startsWith('/nix/store/'));
    if (inv.program === 'nix-store' && inv.args.includes('--check-validity')) {
      const url = inv.args[1]!;
      await Promise.resolve();
      if (this.unreachable.has(url))
        return done(1, '', `error: cannot open connection to remote store '${url}': error: unexpected end-of-file`);
      const s = this.store(url);
      return done(
        0,
        paths
          .filter((p) => !s.has(p))
          .map((p) => p + '\n')
          .join(''),
      );
    }
    if (inv.program === 'nix' && inv.args[0] === 'copy') {
      const from = inv.args[inv.args.indexOf('--from') + 1]!;
      const to = inv.args[inv.args.indexOf('--to') + 1]!;
      if (this.gate) await this.gate;
      if (signal.aborted) throw new Error('fake nix: aborted');
      const injected = this.copyFailures.shift();
      if (injected !== undefined) return done(1, '', injected);
      if (this.unreachable.has(from))
        return done(1, '', `error: cannot open connection to remote store '${from}': error: unexpected end-of-file`);
      const src = this.store(from);
      const all = new Set(paths.flatMap((p) => this.closure(p)));
      for (const p of paths)
        if (!src.has(p))
          return done(1, '', `error: path '${p}' is required, but there is no substituter that can build it`);
      for (const p of all) if (!src.has(p)) return done(1, '', `error: path '${p}' is not valid`);
      const dst = this.store(to);
      for (const p of all) dst.add(p);
      return done(0, '', `copying ${all.size} paths...`);
    }
    return done(1, '', `fake nix: unsupported ${inv.program} ${inv.args.join(' ')}`);
  }
}
