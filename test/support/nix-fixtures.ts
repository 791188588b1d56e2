/**
 * Real Nix store fixtures for integration tests: build fresh store paths
 * offline (no nixpkgs), make chroot stores and file:// binary caches, and ask
 * stores what they hold. Everything runs through spawn with argument arrays;
 * NIX_CONFIG empties `substituters` so no command waits on DNS for
 * cache.nixos.org.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, normalize } from 'node:path';

export const FIXTURE_NIX_CONFIG = ['substituters =', 'experimental-features = nix-command', 'sandbox = false'].join(
  '\n',
);

const FIXTURE_TIMEOUT_MS = 120_000;
const OUTPUT_LIMIT = 16 * 1024 * 1024;

function fixtureEnv(): NodeJS.ProcessEnv {
  return { ...process.env, NIX_CONFIG: FIXTURE_NIX_CONFIG };
}

let available: boolean | undefined;

/** True when `nix` and `nix-store` run here (integration tests skip otherwise). */
export function nixAvailable(): boolean {
  if (available === undefined) {
    const opts = { env: fixtureEnv(), timeout: 10_000, stdio: 'ignore' as const };
    available =
      spawnSync('nix-store', ['--version'], opts).status === 0 && spawnSync('nix', ['--version'], opts).status === 0;
  }
  return available;
}

/** Runs a command (argument array, no shell); resolves stdout, rejects with stderr on a non-zero exit. */
export function run(cmd: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: fixtureEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), FIXTURE_TIMEOUT_MS);
    child.stdout.on('data', (b: Buffer) => {
      size += b.length;
      if (size <= OUTPUT_LIMIT) out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (err.length < 1000) err.push(b);
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else
        reject(
          new Error(
            `${cmd} ${args.slice(0, 6).join(' ')}${args.length > 6 ? ' ...' : ''} failed (${code ?? sig}): ${Buffer.concat(err).toString('utf8').trim()}`,
          ),
        );
    });
    child.stdin.end(input ?? '');
  });
}

function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

export interface PathSpec {
  /** Entry name: letters, digits, '_' and '-', starting with a letter; becomes the end of the store path's name. */
  name: string;
  /**
   * Names of other entries of the same spec (or absolute store paths already
   * in the host store) this one references; their paths are written into
   * `$out/nix-support/fixture-refs`, so Nix records the references.
   */
  deps?: string[];
  /** Relative path -> content; `@dep:<name>@` becomes that entry's store path (and so a reference too). */
  files?: Record<string, string>;
  /** Files (relative paths, keys of `files`) to mark executable. */
  executable?: string[];
}

const ENTRY_NAME_RE = /^[A-Za-z][A-Za-z0-9_-]{0,40}$/;

function nixString(s: string): string {
  return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$\{/g, '\\${') + '"';
}

function shellQuote(s: string): string {
  return "'" + s.replace(/'/g, `'\\''`) + "'";
}

function checkRelative(p: string): string {
  const n = normalize(p);
  if (isAbsolute(n) || n.startsWith('..') || n === '.' || n.includes('\0')) {
    throw new Error(`fixture file path ${JSON.stringify(p)} must be relative and stay inside the output`);
  }
  return n;
}

/** Nix expression text for one derivation with one output per entry, references resolved by placeholders. */
function expressionFor(spec: readonly PathSpec[], salt: string): string {
  const names = new Set<string>();
  for (const e of spec) {
    if (!ENTRY_NAME_RE.test(e.name)) throw new Error(`fixture entry name ${JSON.stringify(e.name)} is not allowed`);
    if (names.has(e.name)) throw new Error(`fixture entry name ${e.name} given twice`);
    names.add(e.name);
  }
  // Within one derivation an output's path is only known at build time: Nix
  // rewrites `builtins.placeholder "<output>"` to it in attributes.
  const ref = (dep: string): string => {
    if (names.has(dep)) return `\${builtins.placeholder ${nixString(dep)}}`;
    if (dep.startsWith('/nix/store/')) return `\${builtins.storePath ${nixString(dep)}}`;
    throw new Error(`fixture dep ${JSON.stringify(dep)} is neither an entry of this spec nor a store path`);
  };
  const attrs: string[] = [];
  const script: string[] = ['set -e'];
  let n = 0;
  for (const e of spec) {
    // Output names with '-' are not shell variables: read each output's path through an attribute instead.
    const outAttr = `out_${n}`;
    attrs.push(`${outAttr} = "\${builtins.placeholder ${nixString(e.name)}}";`);
    const out = `"$${outAttr}"`;
    script.push(`/bin/mkdir -p ${out}/nix-support`);
    const refs = (e.deps ?? []).map(ref).join('\n');
    const refsAttr = `refs_${n}`;
    attrs.push(`${refsAttr} = "${refs}";`);
    script.push(`printf '%s\\n' "$${refsAttr}" > ${out}/nix-support/fixture-refs`);
    let f = 0;
    for (const [rel, content] of Object.entries(e.files ?? {})) {
      const relPath = checkRelative(rel);
      const contentNix = nixString(content).replace(/@dep:([A-Za-z][A-Za-z0-9_-]*)@/g, (_m, dep: string) => ref(dep));
      const attr = `file_${n}_${f++}`;
      attrs.push(`${attr} = ${contentNix};`);
      const dir = relPath.includes('/') ? relPath.slice(0, relPath.lastIndexOf('/')) : '';
      if (dir) script.push(`/bin/mkdir -p ${out}/${shellQuote(dir)}`);
      script.push(`printf '%s' "$${attr}" > ${out}/${shellQuote(relPath)}`);
    }
    for (const rel of e.executable ?? []) {
      if (!(rel in (e.files ?? {}))) throw new Error(`fixture executable ${rel} is not among ${e.name}'s files`);
      script.push(`/bin/chmod +x ${out}/${shellQuote(checkRelative(rel))}`);
    }
    n++;
  }
  return [
    'derivation {',
    `  name = ${nixString(`fx-${salt}`)};`,
    '  system = builtins.currentSystem;',
    '  builder = "/bin/sh";',
    `  outputs = [ ${spec.map((e) => nixString(e.name)).join(' ')} ];`,
    `  args = [ "-c" ${nixString(script.join('\n'))} ];`,
    ...attrs.map((a) => '  ' + a),
    '}',
  ].join('\n');
}

/**
 * Builds store paths offline into the HOST store (/nix/store) as the outputs
 * of one derivation (far faster than a chain of derivations), salted so that
 * no store has them yet. Returns entry name -> store path. Paths are named
 * `<hash>-fx-<salt>-<entry name>`.
 */
export async function buildPaths(spec: readonly PathSpec[]): Promise<Record<string, string>> {
  if (spec.length === 0) return {};
  const salt = randomBytes(6).toString('hex');
  const dir = await mkdtemp(join(tmpdir(), 'nix-fixture-'));
  try {
    const file = join(dir, 'fixture.nix');
    await writeFile(file, expressionFor(spec, salt));
    // For a derivation whose first output is not `out`, nix-instantiate prints `<drv>!<output>`.
    const drv = lines(await run('nix-instantiate', [file]))[0]?.split('!')[0];
    if (!drv) throw new Error('nix-instantiate printed no derivation');
    await run('nix-store', ['--realise', drv, '--no-build-output']);
    const shown = JSON.parse(await run('nix', ['show-derivation', drv])) as Record<
      string,
      { outputs: Record<string, { path: string }> }
    >;
    const outputs = Object.values(shown)[0]?.outputs ?? {};
    const result: Record<string, string> = {};
    for (const e of spec) {
      const p = outputs[e.name]?.path;
      if (!p) throw new Error(`output ${e.name} missing from ${drv}`);
      result[e.name] = p;
    }
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Creates and initialises a chroot store in `dir` (files under `<dir>/nix/store`); returns its store URL. */
export async function makeChrootStore(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  // The first concurrent use of a fresh store can fail: initialise it once now.
  await run('nix', ['store', 'ping', '--store', dir]);
  return dir;
}

/** Copies `paths` (with their closures) from the host store into a new file:// binary cache; returns its URL. */
export async function makeBinaryCache(dir: string, paths: readonly string[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  if (paths.length > 0) {
    await run('nix', ['copy', '--to', `file://${dir}?compression=none`, ...paths]);
  } else {
    await run('nix', ['store', 'ping', '--store', `file://${dir}?compression=none`]);
  }
  return `file://${dir}`;
}

/** Which of `paths` are valid in `store` (any store URL Nix understands). */
export async function validIn(store: string, paths: readonly string[]): Promise<Set<string>> {
  if (paths.length === 0) return new Set();
  const invalid = new Set(
    lines(await run('nix-store', ['--store', store, '--check-validity', '--print-invalid', ...paths])),
  );
  return new Set(paths.filter((p) => !invalid.has(p)));
}

/** The closure of `path` in `store`, sorted. */
export async function closureOf(store: string, path: string): Promise<string[]> {
  return lines(await run('nix-store', ['--store', store, '--query', '--requisites', path])).sort();
}

/** A well-formed store path that no store has (random hash). */
export function absentStorePath(name = 'absent'): string {
  const alphabet = '0123456789abcdfghijklmnpqrsvwxyz';
  const bytes = randomBytes(32);
  let hash = '';
  for (const b of bytes) hash += alphabet[b % 32];
  return `/nix/store/${hash}-${name}`;
}
