/**
 * The Nix-aware Execute end to end. Toolchains are fresh store paths in the
 * host store (/nix/store), each with a dependency in its closure. The worker
 * runs in a mount namespace where /nix/store is the shared chroot store $S, so
 * it sees only what is in $S (an executor with the shared store mounted).
 * Actions reach the toolchains three ways: a genrule command naming a store
 * path, an --action_env variable, and an input script file.
 *
 * Without the proxy the build fails (the paths are not in $S); through the
 * proxy the closures are copied into $S first and the build succeeds; a
 * toolchain no action named is not copied; a path that exists nowhere fails
 * that action with the path in Bazel's output, and the proxy keeps serving.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, type BazelResult } from '../support/bazel';
import {
  absentStorePath,
  buildPaths,
  closureOf,
  makeChrootStore,
  validIn,
  type PathSpec,
} from '../support/nix-fixtures';
import { frontAvailable, startFront } from '../support/front-process';
import { startProxy } from '../support/proxy-process';
import { startWorker, type Worker } from '../support/remote-worker';

const TIMEOUT = { timeout: 180_000 };

/** Each tool is a script that needs a second store path (its closure) to work. */
function toolchainSpec(): PathSpec[] {
  const exec = (helper: string, who: string) => `#!/bin/sh\nexec @dep:${helper}@/bin/helper ${who} "$@"\n`;
  const helper = (who: string) => `#!/bin/sh\necho "${who} says $*"\n`;
  return [
    { name: 'helper-a', files: { 'bin/helper': helper('helper-a') }, executable: ['bin/helper'] },
    { name: 'tool-a', files: { 'bin/tool': exec('helper-a', 'tool-a') }, executable: ['bin/tool'] },
    { name: 'lib-b', files: { 'lib/greet.sh': 'greet() { echo "lib-b greets $*"; }\n' } },
    {
      name: 'tool-b',
      files: { 'bin/tool': '#!/bin/sh\n. @dep:lib-b@/lib/greet.sh\ngreet tool-b "$@"\n' },
      executable: ['bin/tool'],
    },
    { name: 'helper-c', files: { 'bin/helper': helper('helper-c') }, executable: ['bin/helper'] },
    { name: 'tool-c', files: { 'bin/tool': exec('helper-c', 'tool-c') }, executable: ['bin/tool'] },
    { name: 'helper-d', files: { 'bin/helper': helper('helper-d') }, executable: ['bin/helper'] },
    { name: 'tool-d', files: { 'bin/tool': exec('helper-d', 'tool-d') }, executable: ['bin/tool'] },
  ];
}

function buildFile(p: Record<string, string>, absent: string): string {
  return `genrule(
    name = "via_cmd",
    outs = ["a.txt"],
    cmd = "${p['tool-a']}/bin/tool hello > $@",
)

genrule(
    name = "via_env",
    outs = ["b.txt"],
    cmd = "$$TOOL_B/bin/tool hello > $@",
)

genrule(
    name = "via_script",
    srcs = ["run-c.sh"],
    outs = ["c.txt"],
    cmd = "bash $(location run-c.sh) > $@",
)

genrule(
    name = "absent",
    outs = ["absent.txt"],
    cmd = "${absent}/bin/tool > $@",
)

genrule(
    name = "via_front",
    outs = ["d.txt"],
    cmd = "${p['tool-d']}/bin/tool through the front > $@",
)

genrule(
    name = "after_failure",
    outs = ["after.txt"],
    cmd = "${p['tool-a']}/bin/tool after the failure > $@",
)
`;
}

const TOOL_TARGETS = ['//pkg:via_cmd', '//pkg:via_env', '//pkg:via_script'];

describe('Bazel through the Nix-aware proxy', () => {
  let paths: Record<string, string> = {};
  let absent = '';
  let storeRoot = '';
  let worker: Worker | undefined;
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
  let ws: BazelWorkspace | undefined;

  beforeAll(async () => {
    paths = await buildPaths(toolchainSpec());
    absent = absentStorePath('tool-nowhere');
    storeRoot = await mkdtemp(path.join(os.tmpdir(), 'nix-reapi-proxy-shared-store-'));
    await makeChrootStore(storeRoot);
    worker = await startWorker({ storeRoot });
    proxy = await startProxy([
      '--upstream',
      worker.url,
      '--shared-store',
      storeRoot,
      '--substituter',
      'local',
      '--no-require-sigs',
    ]);
    ws = await BazelWorkspace.create({
      files: {
        'pkg/BUILD': buildFile(paths, absent),
        'pkg/run-c.sh': `${paths['tool-c']}/bin/tool hello\n`,
      },
      bazelrc: [`build --action_env=TOOL_B=${paths['tool-b']}`],
    });
  }, 180_000);

  afterAll(async () => {
    await ws?.dispose();
    await proxy?.stop();
    await worker?.stop();
    if (storeRoot) await rm(storeRoot, { recursive: true, force: true });
  }, 120_000);

  const toolPaths = (): string[] => ['tool-a', 'tool-b', 'tool-c'].map((n) => paths[n]!);

  function withProxyLog(r: BazelResult): string {
    return `${r.output.slice(-12000)}\n--- proxy log ---\n${proxy!.logs().slice(-8000)}`;
  }

  it('fails against the executor alone: the toolchains are not in the shared store', TIMEOUT, async () => {
    expect([...(await validIn(storeRoot, Object.values(paths)))]).toEqual([]);
    const r = await ws!.build([...TOOL_TARGETS, '--keep_going', `--remote_executor=${worker!.url}`]);
    expect(r.code, r.output).not.toBe(0);
    expect(r.output).toContain('No such file or directory');
    for (const p of toolPaths()) expect(r.output).toContain(p);
  });

  it('succeeds through the proxy, which copies each closure into the shared store', TIMEOUT, async () => {
    const r = await ws!.build([...TOOL_TARGETS, `--remote_executor=grpc://127.0.0.1:${proxy!.port}`]);
    expect(r.code, withProxyLog(r)).toBe(0);
    expect(r.summary?.remote).toBe(TOOL_TARGETS.length);
    expect((await ws!.readBin('pkg/a.txt')).trim()).toBe('helper-a says tool-a hello');
    expect((await ws!.readBin('pkg/b.txt')).trim()).toBe('lib-b greets tool-b hello');
    expect((await ws!.readBin('pkg/c.txt')).trim()).toBe('helper-c says tool-c hello');

    for (const tool of toolPaths()) {
      const closure = await closureOf('local', tool);
      expect(closure.length).toBeGreaterThanOrEqual(2);
      expect([...(await validIn(storeRoot, closure))].sort()).toEqual(closure);
    }
    // Nothing asked for tool-d: it stays out of the shared store.
    expect([...(await validIn(storeRoot, [paths['tool-d']!, paths['helper-d']!]))]).toEqual([]);
  });

  it('fails an action naming a path that exists nowhere, with the path in the output', TIMEOUT, async () => {
    const r = await ws!.build(['//pkg:absent', `--remote_executor=grpc://127.0.0.1:${proxy!.port}`]);
    expect(r.code, r.output).not.toBe(0);
    expect(r.output).toContain(absent);
    // The proxy refused it: the executor never ran the command (bash would have said so).
    expect(r.output).not.toMatch(/bash: line \d+: \/nix\/store\/\S+-tool-nowhere\/bin\/tool: No such file/);
  });

  it('keeps serving after a failed action', TIMEOUT, async () => {
    const r = await ws!.build(['//pkg:after_failure', `--remote_executor=grpc://127.0.0.1:${proxy!.port}`]);
    expect(r.code, withProxyLog(r)).toBe(0);
    expect(r.summary?.remote).toBe(1);
    expect((await ws!.readBin('pkg/after.txt')).trim()).toBe('helper-a says tool-a after the failure');
  });

  // The shipped HTTP/2 front (deploy/front/haproxy.cfg): Execute to the proxy,
  // CAS, ActionCache and ByteStream straight to the worker.
  it.skipIf(!frontAvailable())(
    'succeeds through the HTTP/2 front + proxy, which still copies the closure first',
    TIMEOUT,
    async () => {
      const front = await startFront({ proxy: `127.0.0.1:${proxy!.port}`, cluster: worker!.url });
      try {
        expect([...(await validIn(storeRoot, [paths['tool-d']!]))]).toEqual([]);
        const r = await ws!.build(['//pkg:via_front', `--remote_executor=grpc://${front.endpoint}`]);
        expect(r.code, `${withProxyLog(r)}\n--- front log ---\n${front.logs().slice(-4000)}`).toBe(0);
        expect(r.summary?.remote).toBe(1);
        expect((await ws!.readBin('pkg/d.txt')).trim()).toBe('helper-d says tool-d through the front');
        const closure = await closureOf('local', paths['tool-d']!);
        expect([...(await validIn(storeRoot, closure))].sort()).toEqual(closure);
        // The byte path went around the proxy: the front logged CAS calls routed to the cluster.
        expect(front.logs()).toMatch(
          /cluster\/cluster .*ContentAddressableStorage|ContentAddressableStorage.*cluster\/cluster|cluster\/cluster .*ByteStream|ByteStream.*cluster\/cluster/,
        );
        expect(front.logs()).toMatch(
          /nix_reapi_proxy\/proxy .*Execution\/Execute|Execution\/Execute.*nix_reapi_proxy\/proxy/,
        );
      } finally {
        await front.stop();
      }
    },
  );
});
