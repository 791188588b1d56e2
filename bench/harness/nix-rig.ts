/**
 * The Nix side of the Execute scenarios: a fresh chroot store standing in for
 * the executors' shared store, the host store as the substituter, and
 * `nix`/`nix-store` wrappers that log every invocation, so the bench can count
 * the Nix processes the proxy starts. Everything lives in one temp directory.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildPaths, makeChrootStore, nixAvailable, run, type PathSpec } from '../../test/support/nix-fixtures';

export interface NixInvocation {
  program: string;
  /** The first arguments (the log keeps at most a few hundred characters per call). */
  args: string[];
}

export interface NixRig {
  /** Chroot store URL (a directory) for --shared-store. */
  store: string;
  /** Directory of the logging wrappers, for --nix-bin-dir. */
  binDir: string;
  /** Every Nix process the proxy started so far. */
  invocations(): NixInvocation[];
  /** Builds store paths into the host store (fresh, salted); entry name -> path. */
  build(spec: readonly PathSpec[]): Promise<Record<string, string>>;
  /** Makes paths (and closures) valid in the shared store ahead of time. */
  preload(paths: readonly string[]): Promise<void>;
  cleanup(): void;
}

export { nixAvailable };

function realBinary(name: string): string {
  return execFileSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8', timeout: 5000 }).trim();
}

export async function makeNixRig(): Promise<NixRig> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nix-reapi-bench-'));
  try {
    const binDir = path.join(dir, 'bin');
    const log = path.join(dir, 'nix-invocations.log');
    writeFileSync(log, '');
    execFileSync('mkdir', ['-p', binDir]);
    for (const name of ['nix', 'nix-store']) {
      const real = realBinary(name);
      if (!real) throw new Error(`${name} is not on PATH`);
      const wrapper = path.join(binDir, name);
      // The paths are ours (temp dir, `command -v`), quoted for sh; the proxy's arguments are only logged.
      writeFileSync(wrapper, `#!/bin/sh\necho "${name} $*" | cut -c1-400 >> '${log}'\nexec '${real}' "$@"\n`);
      chmodSync(wrapper, 0o755);
    }
    const store = await makeChrootStore(path.join(dir, 'shared-store'));
    return {
      store,
      binDir,
      invocations: () =>
        readFileSync(log, 'utf8')
          .split('\n')
          .filter((l) => l.length > 0)
          .map((l) => {
            const [program, ...args] = l.split(' ');
            return { program: program!, args };
          }),
      build: (spec) => buildPaths(spec),
      preload: async (paths) => {
        if (paths.length > 0) await run('nix', ['copy', '--to', store, '--no-check-sigs', ...paths]);
      },
      cleanup: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Invocations that ask the shared store which paths are valid. */
export function isValidityQuery(i: NixInvocation): boolean {
  return i.program === 'nix-store' && i.args.includes('--check-validity');
}

/** Invocations that copy paths into the shared store. */
export function isRealisation(i: NixInvocation): boolean {
  return (i.program === 'nix' && i.args[0] === 'copy') || (i.program === 'nix-store' && i.args.includes('--realise'));
}
