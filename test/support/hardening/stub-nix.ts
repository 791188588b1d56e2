import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A directory of stand-in `nix` and `nix-store` programs for `nixBinDir`, so
 * a test decides how "Nix" behaves and sees every argument vector the proxy
 * passed. The behaviour of each program is read from a file on every run, so
 * it can change while the proxy runs:
 *
 *   invalid            nix-store --check-validity prints every store path it was given (invalid
 *                      everywhere); nix fails as if the path were not valid
 *   missing-in-shared  nix-store prints the paths only when asked about the shared store (see
 *                      `sharedStore`); every substituter has them
 *   valid              prints nothing and exits 0 (all valid; copies succeed)
 *   hang               never answers (sleeps) until killed
 *   unreachable        fails like an unreachable store (exit 1, "cannot connect")
 *   enospc             fails like a full disk (exit 1, "No space left on device")
 *   wait-release       succeeds once the file `release` exists in the directory (see `release()`)
 *
 * `nix path-info` (unless hanging) describes every store path it is given as
 * valid, registered now, of `narSize` bytes.
 *
 * Each run writes its arguments, NUL-separated, to calls/<pid>.args; a hanging
 * run also leaves hung/<pid>, so the test can check the process is gone later.
 */

export type StubMode = 'invalid' | 'missing-in-shared' | 'valid' | 'hang' | 'unreachable' | 'enospc' | 'wait-release';

const SCRIPT = `#!/bin/sh
dir=$(dirname "$0")
prog=$(basename "$0")
printf '%s\\0' "$@" > "$dir/calls/$$.args"
printf '%s' "$NIX_CONFIG" > "$dir/calls/$$.env"
mode=$(cat "$dir/mode.$prog" 2>/dev/null || echo valid)
if [ "$prog" = nix ] && [ "$1" = path-info ] && [ "$mode" != hang ]; then
  # Every store path argument: valid, registered now, of the size in nar-size (default 1024).
  size=$(cat "$dir/nar-size" 2>/dev/null || echo 1024)
  now=$(date +%s)
  sep=
  printf '['
  for a in "$@"; do case "$a" in /nix/store/*) printf '%s{"path":"%s","narSize":%s,"registrationTime":%s}' "$sep" "$a" "$size" "$now"; sep=, ;; esac; done
  printf ']'
  exit 0
fi
case "$mode" in
  wait-release)
    while [ ! -e "$dir/release" ]; do sleep 0.05; done
    exit 0 ;;
  hang)
    : > "$dir/hung/$$"
    exec sleep 3600 ;;
  unreachable)
    echo "error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused" >&2
    exit 1 ;;
  enospc)
    echo "error: writing to file: No space left on device" >&2
    exit 1 ;;
  missing-in-shared)
    shared=$(cat "$dir/shared-store" 2>/dev/null)
    prev=; store=
    for a in "$@"; do [ "$prev" = --store ] && store=$a; prev=$a; done
    if [ "$store" = "$shared" ]; then
      for a in "$@"; do case "$a" in /nix/store/*) printf '%s\\n' "$a" ;; esac; done
    fi
    exit 0 ;;
  invalid)
    if [ "$prog" = nix-store ]; then
      for a in "$@"; do case "$a" in /nix/store/*) printf '%s\\n' "$a" ;; esac; done
      exit 0
    fi
    echo "error: path is not valid" >&2
    exit 1 ;;
  *)
    exit 0 ;;
esac
`;

export class StubNix {
  constructor(readonly dir: string) {
    mkdirSync(join(dir, 'calls'), { recursive: true });
    mkdirSync(join(dir, 'hung'), { recursive: true });
    for (const prog of ['nix', 'nix-store']) {
      writeFileSync(join(dir, prog), SCRIPT);
      chmodSync(join(dir, prog), 0o755);
    }
    this.set('nix-store', 'valid');
    this.set('nix', 'valid');
  }

  /** The store URL 'missing-in-shared' treats as the shared store. */
  set sharedStore(url: string) {
    writeFileSync(join(this.dir, 'shared-store'), url);
  }

  set(program: 'nix' | 'nix-store', mode: StubMode): void {
    writeFileSync(join(this.dir, `mode.${program}`), mode);
  }

  set narSize(bytes: number) {
    writeFileSync(join(this.dir, 'nar-size'), String(bytes));
  }

  /** Lets every 'wait-release' run finish (and later ones pass at once, until `hold()`). */
  release(): void {
    writeFileSync(join(this.dir, 'release'), '');
  }

  hold(): void {
    rmSync(join(this.dir, 'release'), { force: true });
  }

  /** NIX_CONFIG of every run so far. */
  environments(): string[] {
    const dir = join(this.dir, 'calls');
    return readdirSync(dir)
      .filter((f) => f.endsWith('.env'))
      .map((f) => readFileSync(join(dir, f), 'utf8'));
  }

  setBoth(mode: StubMode): void {
    this.set('nix', mode);
    this.set('nix-store', mode);
  }

  /** Argument vectors of every run so far (order unspecified). */
  calls(): string[][] {
    const dir = join(this.dir, 'calls');
    return readdirSync(dir)
      .filter((f) => f.endsWith('.args'))
      .map((f) => {
        const text = readFileSync(join(dir, f), 'latin1');
        const parts = text.split('\0');
        parts.pop();
        return parts;
      });
  }

  /** PIDs of runs that hung, whether or not they are still alive. */
  hungPids(): number[] {
    return readdirSync(join(this.dir, 'hung')).map(Number);
  }

  static alive(pid: number): boolean {
    return existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(safeRead(`/proc/${pid}/status`));
  }
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
