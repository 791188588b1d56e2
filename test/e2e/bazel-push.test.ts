/**
 * A toolchain built only on the developer's machine, as rules_nixpkgs'
 * nixpkgs_cc_configure builds its compiler wrapper: no substituter of the
 * proxy has it. The first remote build fails, and Bazel's output carries the
 * exact `nix copy --to '<the proxy's cache>' ...` command; the developer runs
 * it as printed (stock Nix, the token in a netrc file), builds again, and the
 * build succeeds on the worker, which sees only the shared store.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace } from '../support/bazel';
import { run } from '../support/e2e-process';
import { makeNixClient } from '../support/nix-client';
import { buildPaths, closureOf, makeChrootStore, validIn } from '../support/nix-fixtures';
import { startProxy, type ProxyProcess } from '../support/proxy-process';
import { startWorker, type Worker } from '../support/remote-worker';

const TIMEOUT = { timeout: 240_000 };
const TOKEN = 'developer-0123456789abcdef';

describe('Bazel with a locally built toolchain, pushed to the proxy', () => {
  let paths: Record<string, string> = {};
  let work = '';
  let storeRoot = '';
  let worker: Worker | undefined;
  let proxy: ProxyProcess | undefined;
  let ws: BazelWorkspace | undefined;
  let printedCommand = '';

  beforeAll(async () => {
    paths = await buildPaths([
      { name: 'cc-compiler', files: { 'bin/cc': '#!/bin/sh\necho "compiled $*"\n' }, executable: ['bin/cc'] },
      {
        name: 'bazel-cc-wrapper',
        deps: ['cc-compiler'],
        files: { 'bin/cc': '#!/bin/sh\nexec @dep:cc-compiler@/bin/cc wrapped "$@"\n' },
        executable: ['bin/cc'],
      },
    ]);
    work = await mkdtemp(path.join(os.tmpdir(), 'nix-reapi-proxy-push-e2e-'));
    storeRoot = path.join(work, 'shared');
    await makeChrootStore(storeRoot);
    const tokens = path.join(work, 'tokens');
    writeFileSync(tokens, `developer:${TOKEN} push-unsigned\n`);
    worker = await startWorker({ storeRoot });
    // No substituter at all: nothing but a push can provide the toolchain.
    proxy = await startProxy([
      '--upstream',
      worker.url,
      '--shared-store',
      storeRoot,
      '--cache-listen',
      '127.0.0.1:0',
      '--auth-tokens-file',
      tokens,
      '--cache-staging-dir',
      path.join(work, 'staging'),
    ]);
    ws = await BazelWorkspace.create({
      files: {
        'pkg/BUILD': `genrule(\n    name = "compile",\n    outs = ["out.txt"],\n    cmd = "${paths['bazel-cc-wrapper']}/bin/cc main.c > $@",\n)\n`,
      },
      bazelrc: [`build --remote_header=authorization="Bearer ${TOKEN}"`],
    });
  }, 240_000);

  afterAll(async () => {
    await ws?.dispose();
    await proxy?.stop();
    await worker?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  const remote = (): string => `--remote_executor=grpc://127.0.0.1:${proxy!.port}`;

  it(
    'the first build fails, and Bazel prints the nix copy command that pushes the missing toolchain',
    TIMEOUT,
    async () => {
      const r = await ws!.build(['//pkg:compile', remote()]);
      expect(r.code, r.output.slice(-8000)).not.toBe(0);
      expect(r.output).toContain(paths['bazel-cc-wrapper']);
      const line = r.output
        .split('\n')
        .map((l) => l.trim())
        .find((l) => l.startsWith('nix copy --to '));
      expect(line, r.output.slice(-8000)).toBeDefined();
      // Exactly the proxy's cache URL, then store paths, nothing else.
      expect(line).toMatch(
        /^nix copy --to 'http:\/\/127\.0\.0\.1:\d+' (\/nix\/store\/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+ ?)+$/,
      );
      expect(line).toContain(`'${proxy!.cacheUrl}'`);
      expect(line).toContain(paths['bazel-cc-wrapper']);
      printedCommand = line!;
      expect(await validIn(storeRoot, [paths['bazel-cc-wrapper']!])).toEqual(new Set());
    },
  );

  it('running that command as printed, then building again, succeeds on the worker', TIMEOUT, async () => {
    expect(printedCommand).not.toBe('');
    const developer = makeNixClient(path.join(work, 'developer'), { token: TOKEN });
    const pushed = await run('bash', ['-c', printedCommand], { env: developer.env, timeoutMs: 120_000 });
    expect(pushed.code, pushed.stderr).toBe(0);
    // Built at once: the imports run behind the push's answers, and an Execute needing a path still being
    // imported waits for it.
    const r = await ws!.build(['//pkg:compile', remote()]);
    expect(r.code, `${r.output.slice(-8000)}\n--- proxy log ---\n${proxy!.logs().slice(-6000)}`).toBe(0);
    expect(r.summary?.remote).toBe(1);
    expect((await ws!.readBin('pkg/out.txt')).trim()).toBe('compiled wrapped main.c');
    // The command names the wrapper; nix copy sent its closure, the compiler too.
    const closure = await closureOf('local', paths['bazel-cc-wrapper']!);
    expect(closure).toContain(paths['cc-compiler']);
    expect([...(await validIn(storeRoot, closure))].sort()).toEqual(closure);
  });
});
