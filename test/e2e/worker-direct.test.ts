/**
 * Proves the end-to-end infrastructure without the proxy: Bazel 4.2.3 runs a
 * genrule on Bazel's own remote worker, and the result comes back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { BazelWorkspace, readGrpcLog } from '../support/bazel';
import { startWorker, type Worker } from '../support/remote-worker';

const TIMEOUT = { timeout: 180_000 };

describe('Bazel against the remote worker directly', () => {
  let worker: Worker | undefined;
  let ws: BazelWorkspace | undefined;

  beforeAll(async () => {
    worker = await startWorker();
    ws = await BazelWorkspace.create({
      files: {
        'pkg/in.txt': 'input line\n',
        // $$PWD names the directory the action ran in: the worker's work path proves it ran remotely.
        'pkg/BUILD': [
          'genrule(',
          '    name = "hello",',
          '    srcs = ["in.txt"],',
          '    outs = ["hello.txt"],',
          '    cmd = "(cat $(location in.txt); echo ran-in=$$PWD) > $@",',
          ')',
          '',
        ].join('\n'),
      },
    });
  }, 180_000);

  afterAll(async () => {
    await ws?.dispose();
    await worker?.stop();
  }, 120_000);

  it('builds a genrule remotely and downloads its output', TIMEOUT, async () => {
    const log = path.join(ws!.root, 'grpc.log');
    const r = await ws!.buildOk([
      '//pkg:hello',
      `--remote_executor=${worker!.url}`,
      `--experimental_remote_grpc_log=${log}`,
    ]);
    expect(r.summary?.remote).toBe(1);
    const out = await ws!.readBin('pkg/hello.txt');
    expect(out).toMatch(/^input line\nran-in=.*nix-reapi-proxy-worker-run-[^/]+\/work\//);

    const calls = await readGrpcLog(log);
    const executes = calls.filter((c) => c.method === 'build.bazel.remote.execution.v2.Execution/Execute');
    expect(executes).toHaveLength(1);
    expect(executes[0]!.code).toBe(0);
  });

  it('serves the rebuild after bazel clean from the remote cache', TIMEOUT, async () => {
    await ws!.clean();
    const r = await ws!.buildOk(['//pkg:hello', `--remote_executor=${worker!.url}`]);
    expect(r.summary?.remoteCacheHit).toBe(1);
    expect(r.summary?.remote).toBe(0);
    expect(await ws!.readBin('pkg/hello.txt')).toMatch(/^input line\n/);
  });
});
