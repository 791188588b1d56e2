import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth } from '../../../src/server/health-check-client';
import {
  narInfoText,
  partialPut,
  preparePush,
  putNar,
  putNarInfo,
  rawPutStatus,
  request,
  signed,
  type PreparedPush,
} from '../../support/cache-http';
import { importsSettled } from '../../support/cache-imports';
import { run as runProcess } from '../../support/e2e-process';
import { runBytesWithInput } from '../../support/nix-run-bytes';
import { encodeNixBase32 } from '../../../src/cache/nix-base32';
import { makeNixClient } from '../../support/nix-client';
import { buildPaths, makeChrootStore, nixAvailable, run, validIn } from '../../support/nix-fixtures';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * Every kind of bad push gets its own 4xx naming the path and the reason,
 * leaves nothing valid in the shared store and nothing in staging, and the
 * proxy goes on serving gRPC meanwhile. Uploads are written by hand here
 * (NARs from `nix-store --dump`, narinfos signed with a key the proxy
 * trusts), so each field can be wrong on its own.
 */

const TOKEN = 'pusher-0123456789abcdef';
const QUOTA_TOKEN = 'quota-0123456789abcdef0';
const UNSIGNED_TOKEN = 'unsigned-0123456789abcd';
const QUOTA = 256 * 1024;

let work: string;
let store: string;
let staging: string;
let proxy: ProxyProcess;
let base: string;
let secretKey: string;

async function fresh(name: string, refs: string[] = [], files: Record<string, string> = { f: name }): Promise<string> {
  return (await buildPaths([{ name, deps: refs, files }]))[name]!;
}

function stagedFiles(): string[] {
  return [...readdirSync(join(staging, 'tmp')), ...readdirSync(join(staging, 'nar'))];
}

async function nothingValid(path: string): Promise<void> {
  expect(await validIn(store, [path])).toEqual(new Set());
}

describe.skipIf(!nixAvailable())('binary cache: bad pushes', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'cache-bad-'));
    store = await makeChrootStore(join(work, 'shared'));
    staging = join(work, 'staging');
    const secretFile = join(work, 'secret.key');
    const publicFile = join(work, 'public.key');
    await run('nix-store', ['--generate-binary-cache-key', 'dev-1', secretFile, publicFile]);
    secretKey = readFileSync(secretFile, 'utf8').trim();
    const tokens = join(work, 'tokens');
    writeFileSync(
      tokens,
      `pusher:${TOKEN} push\nquota:${QUOTA_TOKEN} push\nunsigned:${UNSIGNED_TOKEN} push-unsigned\n`,
    );
    proxy = await startProxy([
      '--upstream',
      'grpc://127.0.0.1:1',
      '--shared-store',
      store,
      '--cache-listen',
      '127.0.0.1:0',
      '--auth-tokens-file',
      tokens,
      '--trusted-public-key',
      readFileSync(publicFile, 'utf8').trim(),
      '--cache-staging-dir',
      staging,
      '--cache-staging-budget',
      '2MiB',
      '--cache-upload-idle-timeout',
      '1500ms',
      '--limits-client-pushed-bytes-per-hour',
      String(QUOTA),
    ]);
    base = proxy.cacheUrl!;
  }, 120_000);

  afterAll(async () => {
    // Through all of this the gRPC side kept answering.
    expect((await checkHealth({ address: proxy.endpoint, timeoutMs: 5_000 })).exitCode).toBe(0);
    await proxy?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function staged(path: string, refs: string[] = []): Promise<PreparedPush> {
    const p = await preparePush(path, refs);
    const put = await putNar(base, p, TOKEN);
    expect(put.status, put.body).toBe(200);
    return p;
  }

  it('a narinfo whose StorePath does not match its URL: 400, nothing imported', async () => {
    const a = await fresh('mismatch-a');
    const b = await fresh('mismatch-b');
    const p = await staged(a);
    const answer = await putNarInfo(base, b.slice(11, 43), narInfoText(signed(p.info, secretKey)), TOKEN);
    expect(answer.status).toBe(400);
    expect(answer.body).toMatch(/StorePath .* has a different hash than the URL/);
    await nothingValid(a);
    await nothingValid(b);
  });

  it('a malformed narinfo and an oversized one: 400 and 413', async () => {
    const a = await fresh('malformed');
    const bad = await putNarInfo(base, a.slice(11, 43), 'this is not a narinfo\n', TOKEN);
    expect(bad.status).toBe(400);
    expect(bad.body).toMatch(/not "Key: value"/);
    const huge = await putNarInfo(base, a.slice(11, 43), `StorePath: ${a}\n${'X: y\n'.repeat(60_000)}`, TOKEN);
    expect(huge.status).toBe(413);
    expect(huge.body).toMatch(/more than the 262144 allowed/);
    await nothingValid(a);
  });

  it('references neither valid nor pushed: 400 naming them', async () => {
    const dep = await fresh('dep');
    const top = await fresh('top', [dep]);
    const p = await staged(top, [dep]);
    const answer = await putNarInfo(base, p.hash, narInfoText(signed(p.info, secretKey)), TOKEN);
    expect(answer.status).toBe(400);
    expect(answer.body).toContain(`its references ${dep} are neither valid on the shared store nor pushed`);
    await nothingValid(top);
  });

  it('NarHash and NarSize that do not match an uncompressed NAR: 400 naming them, before any import', async () => {
    const a = await fresh('narhash');
    const p = await staged(a);
    const from = proxy.logLines().length;
    const wrongHash = { ...p.info, narHash: `sha256:${'0'.repeat(52)}` };
    const h = await putNarInfo(base, p.hash, narInfoText(signed(wrongHash, secretKey)), TOKEN);
    expect(h.status).toBe(400);
    expect(h.body).toMatch(new RegExp(`${a} was not imported: NarHash sha256:0{52} does not match the uploaded NAR`));
    const wrongSize = { ...p.info, narSize: p.info.narSize + 8 };
    const s = await putNarInfo(base, p.hash, narInfoText(signed(wrongSize, secretKey)), TOKEN);
    expect(s.status).toBe(400);
    expect(s.body).toMatch(/NarSize \d+ does not match the uploaded NAR/);
    expect(
      proxy
        .logLines()
        .slice(from)
        .some((l) => l.msg === 'importing pushed paths into the shared store'),
    ).toBe(false);
    await nothingValid(a);
  });

  it("a compressed NAR whose NarHash is wrong: accepted, Nix refuses the import, the next push of it gets 400 with Nix's reason, and a dependent is refused", async () => {
    const a = await fresh('xz-narhash');
    const plain = await preparePush(a, []);
    const xz = await runBytesWithInput('xz', ['-c', '-1'], plain.nar);
    const b32 = encodeNixBase32(createHash('sha256').update(xz).digest());
    const p: PreparedPush = {
      ...plain,
      nar: xz,
      fileName: `${b32}.nar.xz`,
      info: {
        ...plain.info,
        url: `nar/${b32}.nar.xz`,
        compression: 'xz',
        fileHash: `sha256:${b32}`,
        fileSize: xz.length,
        narHash: `sha256:${'0'.repeat(52)}`,
      },
    };
    expect((await putNar(base, p, TOKEN)).status).toBe(200);
    const from = proxy.logLines().length;
    const first = await putNarInfo(base, p.hash, narInfoText(signed(p.info, secretKey)), TOKEN);
    // Answered before the import (a NarHash inside a compressed NAR is Nix's to check).
    expect(first.status, first.body).toBe(200);
    await importsSettled(proxy, [a], from);
    const failure = proxy
      .logLines()
      .slice(from)
      .find((l) => l.msg === 'pushed path not imported');
    expect(String(failure?.why)).toMatch(/hash mismatch importing path/);
    await nothingValid(a);

    const dependent = await fresh('xz-dependent', [a]);
    const d = await staged(dependent, [a]);
    const refused = await putNarInfo(base, d.hash, narInfoText(signed(d.info, secretKey)), TOKEN);
    expect(refused.status).toBe(400);
    expect(refused.body).toMatch(
      new RegExp(`its reference ${a} was pushed but could not be imported \\(.*hash mismatch importing path`),
    );

    const again = await putNarInfo(base, p.hash, narInfoText(signed(p.info, secretKey)), TOKEN);
    expect(again.status).toBe(400);
    expect(again.body).toMatch(/hash mismatch importing path/);
    await nothingValid(a);
    await nothingValid(dependent);
  });

  it('FileHash and FileSize that do not match the upload, and a NAR that does not hash to its name: 400', async () => {
    const a = await fresh('filehash');
    const p = await staged(a);
    const fh = await putNarInfo(
      base,
      p.hash,
      narInfoText(signed({ ...p.info, fileHash: `sha256:${'1'.repeat(52)}` }, secretKey)),
      TOKEN,
    );
    expect(fh.status).toBe(400);
    expect(fh.body).toMatch(/FileHash .* does not match the uploaded/);
    const fs = await putNarInfo(base, p.hash, narInfoText(signed({ ...p.info, fileSize: 1 }, secretKey)), TOKEN);
    expect(fs.status).toBe(400);
    expect(fs.body).toMatch(/FileSize 1 does not match the uploaded/);

    const b = await fresh('renamed');
    const q = await preparePush(b, []);
    const tampered = Buffer.from(q.nar);
    tampered[tampered.length - 20] ^= 1;
    const put = await putNar(base, q, TOKEN, tampered);
    expect(put.status).toBe(400);
    expect(put.body).toMatch(/does not hash to its name/);
    const after = await putNarInfo(base, q.hash, narInfoText(signed(q.info, secretKey)), TOKEN);
    expect(after.status).toBe(400);
    expect(after.body).toMatch(/was not uploaded before the narinfo/);
    await nothingValid(a);
    await nothingValid(b);
  });

  it('a truncated upload and an abandoned one leave nothing staged', async () => {
    const a = await fresh('truncated');
    const p = await preparePush(a, []);
    const before = stagedFiles().length;
    const cut = partialPut(base, `/${p.info.url}`, TOKEN, p.nar.length, p.nar.subarray(0, 100));
    cut.socket.end();
    await cut.answer;
    const stalled = partialPut(base, `/${p.info.url}`, TOKEN, p.nar.length, p.nar.subarray(0, 100));
    const answer = await stalled.answer;
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(answer).toMatch(/sent nothing for 1500 ms/);
    stalled.socket.destroy();
    expect(stagedFiles().length).toBe(before);
    expect((await request(`${base}/${p.info.url}`, 'HEAD', TOKEN)).status).toBe(404);
    await nothingValid(a);
  });

  it('URLs outside the cache layout are refused before touching the disk', async () => {
    for (const [url, status] of [
      ['/nar/../../etc/passwd', 400],
      ['/%2e%2e/secret', 400],
      ['/nar//x.nar', 400],
      ['/nix-cache-info?x=1', 400],
      ['/foo', 404],
      ['/log/abc', 404],
    ] as const) {
      expect(await rawPutStatus(base, url, TOKEN), url).toBe(status);
    }
    expect(existsSync(join(staging, 'etc'))).toBe(false);
  });

  it('a .drv whose builder would write a marker is stored as a file and never built', async () => {
    const marker = join(work, 'built-marker');
    const expr = join(work, 'marker.nix');
    await writeFile(
      expr,
      `derivation { name = "marker-${Date.now()}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo > ${marker}; echo > $out" ]; }`,
    );
    const drv = (await run('nix-instantiate', [expr])).trim();
    const client = makeNixClient(join(work, 'drv-client'), { token: UNSIGNED_TOKEN });
    const from = proxy.logLines().length;
    const pushed = await runProcess('nix', ['copy', '--derivation', '--to', base, drv], { env: client.env });
    expect(pushed.code, pushed.stderr).toBe(0);
    await importsSettled(proxy, [drv], from);
    expect(await validIn(store, [drv])).toEqual(new Set([drv]));
    const out = (await run('nix-store', ['--query', '--outputs', drv])).trim();
    expect(await validIn(store, [out])).toEqual(new Set());
    expect(existsSync(marker)).toBe(false);
  });

  it('uploads past the per-client bytes per hour are refused 429 naming client and limit', async () => {
    const big = await fresh('quota', [], { a: 'q'.repeat(100 * 1024), b: 'Q'.repeat(100 * 1024) });
    const p = await preparePush(big, []);
    const first = await putNar(base, p, QUOTA_TOKEN);
    expect(first.status, first.body).toBe(200);
    const c = await fresh('quota-2', [], { a: 'r'.repeat(100 * 1024), b: 'R'.repeat(100 * 1024) });
    const q = await preparePush(c, []);
    const second = await putNar(base, q, QUOTA_TOKEN);
    expect(second.status).toBe(429);
    expect(second.body).toMatch(new RegExp(`client 'quota' .*limits.clientPushedBytesPerHour = ${QUOTA}`));
    // Another client is not affected.
    expect((await putNar(base, q, TOKEN)).status).toBe(200);
  });

  it('an upload beyond the staging budget is refused 507, not a crash', async () => {
    const answer = await request(`${base}/nar/${'0'.repeat(52)}.nar`, 'PUT', TOKEN, Buffer.alloc(3 * 1024 * 1024));
    expect(answer.status).toBe(507);
    expect(answer.body).toMatch(/staging area is full .*cacheStagingBudgetBytes/);
  });
});
