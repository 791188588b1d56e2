/**
 * The process runner with stand-in `nix` / `nix-store` scripts (real
 * processes, no Nix needed): timeouts and aborts stop the whole process
 * group, failures to start are UNAVAILABLE, output is bounded, long argument
 * lists are split.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { DEFAULTS } from '../../../src/config/config';
import { createClosureEnsurer } from '../../../src/compose/create-closure-ensurer';
import { runOverPaths, SpawnNixRunner } from '../../../src/store/nix-command';
import { testLogger } from '../../support/test-logger';
import { typed } from '../../support/config-values';

let bin: string;

async function script(name: string, body: string): Promise<void> {
  const file = join(bin, name);
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
}

/** True while `pid` is a live process (a zombie counts as gone). */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function rejection(p: Promise<unknown>): Promise<ProxyError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProxyError);
  return err as ProxyError;
}

/** Waits until `file` has content (the script wrote its pids). */
async function readWhenWritten(file: string): Promise<string> {
  for (let i = 0; i < 2000; i++) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (text.trim().split('\n').length >= 2) return text;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`${file} was never written`);
}

describe('SpawnNixRunner', () => {
  beforeAll(async () => {
    bin = await mkdtemp(join(tmpdir(), 'nix-runner-'));
  });
  afterAll(async () => {
    await rm(bin, { recursive: true, force: true });
  });

  it('returns exit code, stdout and stderr; the environment forces empty substituters', async () => {
    await script('nix-store', 'printf "%s\\n" "$@"; printf "%s" "$NIX_CONFIG" >&2; exit 3');
    const runner = new SpawnNixRunner({ binDir: bin, timeoutMs: 10_000 });
    const out = await runner.run(
      { program: 'nix-store', args: ['--check-validity', 'a b', '$(id)'] },
      new AbortController().signal,
    );
    expect(out.exitCode).toBe(3);
    expect(out.stdout).toBe('--check-validity\na b\n$(id)\n');
    expect(out.stderr.split('\n')).toContain('substituters =');
  });

  it('a hanging process is killed on timeout, with the children it started', async () => {
    const pids = join(bin, 'hang.pids');
    await script('nix', `sleep 300 & echo $$ > ${pids}; echo $! >> ${pids}; wait`);
    const runner = new SpawnNixRunner({ binDir: bin, timeoutMs: 300, killGraceMs: 200 });
    const err = await rejection(runner.run({ program: 'nix', args: ['copy'] }, new AbortController().signal));
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.message).toContain('limits.nixCommandTimeoutMs');
    const [shell, sleeper] = (await readWhenWritten(pids)).trim().split('\n').map(Number);
    expect(await alive(shell!)).toBe(false);
    // The grandchild was killed with the group; it may take a moment to be reaped by init.
    for (let i = 0; i < 200 && (await alive(sleeper!)); i++) await new Promise((r) => setTimeout(r, 10));
    expect(await alive(sleeper!)).toBe(false);
  });

  it('a process that ignores SIGTERM is killed with SIGKILL', async () => {
    const pids = join(bin, 'stubborn.pids');
    await script('nix-store', `trap '' TERM; echo $$ > ${pids}; echo $$ >> ${pids}; while :; do sleep 1; done`);
    const runner = new SpawnNixRunner({ binDir: bin, timeoutMs: 200, killGraceMs: 100 });
    const err = await rejection(runner.run({ program: 'nix-store', args: [] }, new AbortController().signal));
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    const [shell] = (await readWhenWritten(pids)).trim().split('\n').map(Number);
    expect(await alive(shell!)).toBe(false);
  });

  it('abort stops the process and rejects CANCELLED', async () => {
    const pids = join(bin, 'abort.pids');
    await script('nix', `echo $$ > ${pids}; echo $$ >> ${pids}; exec sleep 300`);
    const runner = new SpawnNixRunner({ binDir: bin, timeoutMs: 60_000, killGraceMs: 200 });
    const ac = new AbortController();
    const call = rejection(runner.run({ program: 'nix', args: [] }, ac.signal));
    const [pid] = (await readWhenWritten(pids)).trim().split('\n').map(Number);
    ac.abort();
    expect((await call).code).toBe(Code.CANCELLED);
    expect(await alive(pid!)).toBe(false);
  });

  it('an already aborted signal spawns nothing', async () => {
    const marker = join(bin, 'spawned');
    await script('nix', `touch ${marker}`);
    const ac = new AbortController();
    ac.abort();
    const err = await rejection(
      new SpawnNixRunner({ binDir: bin, timeoutMs: 1000 }).run({ program: 'nix', args: [] }, ac.signal),
    );
    expect(err.code).toBe(Code.CANCELLED);
    expect(
      await readFile(marker).then(
        () => true,
        () => false,
      ),
    ).toBe(false);
  });

  it('a missing binary is UNAVAILABLE saying how to fix it', async () => {
    const runner = new SpawnNixRunner({ binDir: join(bin, 'nowhere'), timeoutMs: 1000 });
    const err = await rejection(runner.run({ program: 'nix', args: [] }, new AbortController().signal));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toContain('nixBinDir');
  });

  it('stops a process whose output exceeds the bound', async () => {
    await script('nix-store', 'exec yes /nix/store/00000000000000000000000000000000-x');
    const runner = new SpawnNixRunner({ binDir: bin, timeoutMs: 20_000, maxStdoutBytes: 64 * 1024, killGraceMs: 200 });
    const err = await rejection(runner.run({ program: 'nix-store', args: [] }, new AbortController().signal));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
  });

  it('splits long path lists over several processes', async () => {
    await script('nix-store', 'echo $#');
    const runner = new SpawnNixRunner({ binDir: bin, timeoutMs: 10_000 });
    const paths = Array.from({ length: 10_000 }, (_, i) => `/nix/store/${String(i).padStart(32, '0')}-p`);
    const outcomes = await runOverPaths(
      runner,
      { program: 'nix-store', fixedArgs: ['--check-validity'] },
      paths,
      new AbortController().signal,
    );
    expect(outcomes.length).toBeGreaterThan(1);
    const counts = outcomes.map((o) => Number(o.stdout.trim()) - 1);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(paths.length);
  });

  it('through the ensurer: a hanging validity check ends DEADLINE_EXCEEDED and leaves no process', async () => {
    const pids = join(bin, 'ensurer.pids');
    await script('nix-store', `echo $$ > ${pids}; echo $$ >> ${pids}; exec sleep 300`);
    const ensurer = createClosureEnsurer(
      {
        ...DEFAULTS,
        ...typed({ sharedStore: 'daemon', substituters: ['local'] }),
        nixBinDir: bin,
        limits: { ...DEFAULTS.limits, nixCommandTimeoutMs: 300 },
      },
      { logger: testLogger() },
    );
    const err = await rejection(ensurer.ensure([`/nix/store/${'0'.repeat(32)}-x`], new AbortController().signal));
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.reason).toBe('NIX_COMMAND_TIMEOUT');
    const [pid] = (await readWhenWritten(pids)).trim().split('\n').map(Number);
    expect(await alive(pid!)).toBe(false);
    ensurer.close();
  });
});
