/**
 * The pass-through proxy end to end: Bazel 4.2.3 builds remotely THROUGH the
 * proxy against Bazel's own remote worker. A genrule and a cc_binary each take
 * a >10 MiB input (chunked ByteStream uploads), the binary comes back as a
 * >10 MiB output (chunked reads), a rebuild after `bazel clean` is served from
 * the remote cache, and a multi-segment instance name reaches the upstream.
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, readGrpcLog, type BazelResult } from '../support/bazel';
import { runOk } from '../support/e2e-process';
import { startProxy } from '../support/proxy-process';
import { startWorker, type Worker } from '../support/remote-worker';

const TIMEOUT = { timeout: 180_000 };
const EXECUTE = 'build.bazel.remote.execution.v2.Execution/Execute';
const WRITE = 'google.bytestream.ByteStream/Write';
/** 10 MiB and a bit: not a multiple of any chunk size. */
const BLOB_BYTES = 10 * 1024 * 1024 + 12_345;
/** genrule, compile, link. */
const ACTIONS = 3;

const MAIN_C = `#include <stdint.h>
#include <stdio.h>

/* The blob is assembled into the binary, so the compile action needs it as an input. */
extern const unsigned char blob_start[];
extern const unsigned char blob_end[];
__asm__(".section .rodata\\n"
        ".global blob_start\\n.hidden blob_start\\nblob_start:\\n"
        ".incbin \\"pkg/blob.inc\\"\\n"
        ".global blob_end\\n.hidden blob_end\\nblob_end:\\n"
        ".previous\\n");

int main(void) {
  uint32_t h = 2166136261u; /* FNV-1a */
  size_t n = (size_t)(blob_end - blob_start);
  for (size_t i = 0; i < n; i++) {
    h ^= blob_start[i];
    h *= 16777619u;
  }
  printf("%zu %08x\\n", n, h);
  return 0;
}
`;

const BUILD = `genrule(
    name = "blobhash",
    srcs = ["blob.inc"],
    outs = ["blobhash.txt"],
    cmd = "sha256sum $(location blob.inc) | cut -c1-64 > $@",
)

cc_binary(
    name = "blobsum",
    srcs = ["main.c", "blob.inc"],
)
`;

function fnv1a(buf: Buffer): string {
  let h = 2166136261;
  for (const b of buf) {
    h ^= b;
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

describe('Bazel through the pass-through proxy', () => {
  let worker: Worker | undefined;
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
  let ws: BazelWorkspace | undefined;
  const blob = randomBytes(BLOB_BYTES);
  const blobSha = createHash('sha256').update(blob).digest('hex');

  beforeAll(async () => {
    worker = await startWorker();
    proxy = await startProxy(['--upstream', worker.url]);
    ws = await BazelWorkspace.create({ files: { 'pkg/BUILD': BUILD, 'pkg/main.c': MAIN_C } });
    await ws.write('pkg/blob.inc', blob);
  }, 180_000);

  afterAll(async () => {
    await ws?.dispose();
    await proxy?.stop();
    await worker?.stop();
  }, 120_000);

  const remote = (...flags: string[]): string[] => [
    '//pkg:blobhash',
    '//pkg:blobsum',
    `--remote_executor=grpc://127.0.0.1:${proxy!.port}`,
    ...flags,
  ];

  async function build(flags: string[]): Promise<BazelResult> {
    try {
      return await ws!.buildOk(remote(...flags));
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- proxy log ---\n${proxy!.logs().slice(-8000)}`);
    }
  }

  async function expectOutputs(): Promise<void> {
    expect((await ws!.readBin('pkg/blobhash.txt')).trim()).toBe(blobSha);
    const ran = await runOk(ws!.bin('pkg/blobsum'), []);
    expect(ran.stdout.trim()).toBe(`${BLOB_BYTES} ${fnv1a(blob)}`);
  }

  it('runs a genrule and a cc_binary with a >10 MiB input remotely', TIMEOUT, async () => {
    const log = path.join(ws!.root, 'grpc-first.log');
    const r = await build([`--experimental_remote_grpc_log=${log}`]);
    expect(r.summary?.remote).toBe(ACTIONS);
    await expectOutputs();

    const calls = await readGrpcLog(log);
    const executes = calls.filter((c) => c.method === EXECUTE);
    expect(executes).toHaveLength(ACTIONS);
    expect(executes.every((c) => c.code === 0)).toBe(true);
    // The blob went up through the proxy's ByteStream.Write, once.
    const blobUploads = calls.filter(
      (c) => c.method === WRITE && c.target?.endsWith(`/blobs/${blobSha}/${BLOB_BYTES}`),
    );
    expect(blobUploads).toHaveLength(1);
    expect(blobUploads[0]!.code).toBe(0);
  });

  it('serves the rebuild after bazel clean from the remote cache', TIMEOUT, async () => {
    await ws!.clean();
    const r = await build([]);
    expect(r.summary?.remoteCacheHit).toBe(ACTIONS);
    expect(r.summary?.remote).toBe(0);
    await expectOutputs();
  });

  it('forwards a multi-segment instance name', TIMEOUT, async () => {
    await ws!.clean();
    const log = path.join(ws!.root, 'grpc-instance.log');
    const r = await build([
      '--remote_instance_name=a/b/c',
      '--noremote_accept_cached',
      `--experimental_remote_grpc_log=${log}`,
    ]);
    expect(r.summary?.remote).toBe(ACTIONS);
    await expectOutputs();

    const calls = await readGrpcLog(log);
    const executes = calls.filter((c) => c.method === EXECUTE);
    expect(executes).toHaveLength(ACTIONS);
    expect(executes.map((c) => c.target)).toEqual(Array(ACTIONS).fill('a/b/c'));
    expect(executes.every((c) => c.code === 0)).toBe(true);
  });
});
