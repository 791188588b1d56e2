import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importsSettled } from '../../support/cache-imports';
import { run as runProcess } from '../../support/e2e-process';
import { makeNixClient, nixCopyTo, type NixClient } from '../../support/nix-client';
import { buildPaths, closureOf, makeChrootStore, nixAvailable, run, validIn } from '../../support/nix-fixtures';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * The binary-cache endpoint with stock Nix 2.8 as the client: `nix copy --to
 * http://<proxy>` of locally built closures makes every path valid and rooted
 * in the chroot shared store, pushes nothing twice, and trust is enforced:
 * signed by a trusted key or pushed with push-unsigned, never with a
 * read-only token or none.
 */

const TOKENS = {
  signer: 'signer-0123456789abcdef',
  unsigned: 'unsigned-0123456789abcd',
  reader: 'reader-0123456789abcdef',
};

let work: string;
let store: string;
let proxy: ProxyProcess;
let cacheUrl: string;
let publicKey: string;
let secretKeyFile: string;
const rootsDir = () => join(store, 'nix/var/nix/gcroots/nix-reapi-proxy');
const rooted = (path: string) => existsSync(join(rootsDir(), path.slice('/nix/store/'.length)));

function client(name: string, token?: string): NixClient {
  return makeNixClient(join(work, `client-${name}-${Math.random().toString(36).slice(2, 8)}`), { token });
}

/** narinfo and NAR uploads the proxy received since log line `from`. */
function uploadsSince(from: number): { narinfos: number; nars: number } {
  const lines = proxy.logLines().slice(from);
  return {
    narinfos: lines.filter((l) => l.msg === 'push accepted').length,
    nars: lines.filter((l) => l.msg === 'NAR staged').length,
  };
}

describe.skipIf(!nixAvailable())('binary cache push with real Nix', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'cache-push-'));
    store = await makeChrootStore(join(work, 'shared'));
    secretKeyFile = join(work, 'secret.key');
    const publicKeyFile = join(work, 'public.key');
    await run('nix-store', ['--generate-binary-cache-key', 'dev-1', secretKeyFile, publicKeyFile]);
    publicKey = readFileSync(publicKeyFile, 'utf8').trim();
    const tokens = join(work, 'tokens');
    writeFileSync(
      tokens,
      `signer:${TOKENS.signer} push\nunsigned:${TOKENS.unsigned} push-unsigned\nreader:${TOKENS.reader}\n`,
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
      publicKey,
      '--cache-staging-dir',
      join(work, 'staging'),
    ]);
    cacheUrl = proxy.cacheUrl!;
    expect(cacheUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // Tokens over plaintext: said once at start, naming both listeners.
    const warning = proxy.logLines().find((l) => String(l.msg).startsWith('tokens are checked on plaintext listeners'));
    expect(warning?.listeners).toEqual([
      expect.stringMatching(/^the gRPC listener 127\.0\.0\.1:0$/),
      expect.stringMatching(/^the binary cache 127\.0\.0\.1:0$/),
    ]);
  }, 120_000);

  afterAll(async () => {
    await proxy?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a signed push of a closure with a path over 50 MiB makes every path valid and rooted; a second push uploads nothing', async () => {
    const paths = await buildPaths([
      { name: 'lib', files: { 'lib.txt': 'a library' } },
      { name: 'big', files: { note: 'big' } },
      { name: 'tool', deps: ['lib'], files: { 'bin/tool': '#!/bin/sh\necho @dep:lib@\n' }, executable: ['bin/tool'] },
      { name: 'wrapper', deps: ['tool', 'big'], files: { 'bin/cc': 'exec @dep:tool@/bin/tool\n' } },
    ]);
    // 60 MiB of incompressible bytes inside `big`, added by a second derivation that references it.
    const bigDir = join(work, 'bigsrc');
    mkdirSync(bigDir, { recursive: true });
    const blob = join(bigDir, 'blob');
    await run('/bin/sh', ['-c', `head -c 62914560 /dev/urandom > '${blob}'`]);
    const big = (await run('nix-store', ['--add', blob])).trim();
    const top = (
      await buildPaths([{ name: 'top', deps: [paths.wrapper!, big], files: { use: `${paths.wrapper} ${big}` } }])
    ).top!;
    const closure = await closureOf('local', top);
    expect(closure).toContain(big);
    expect(closure.length).toBeGreaterThanOrEqual(6);
    await run('nix', ['store', 'sign', '-k', secretKeyFile, '-r', top]);

    const from = proxy.logLines().length;
    const pushed = await nixCopyTo(client('signer', TOKENS.signer), `${cacheUrl}?compression=zstd`, [top]);
    expect(pushed.code, pushed.stderr).toBe(0);
    await importsSettled(proxy, closure, from);
    expect(await validIn(store, closure)).toEqual(new Set(closure));
    for (const p of closure) expect(rooted(p), p).toBe(true);
    expect(uploadsSince(from)).toEqual({ narinfos: closure.length, nars: closure.length });

    const again = proxy.logLines().length;
    const second = await nixCopyTo(client('signer', TOKENS.signer), cacheUrl, [top]);
    expect(second.code, second.stderr).toBe(0);
    expect(uploadsSince(again)).toEqual({ narinfos: 0, nars: 0 });
    // Nothing is left in staging once imported.
    expect(readdirSync(join(work, 'staging', 'nar'))).toEqual([]);
  }, 300_000);

  it('an unsigned push with a push token is refused 403 naming why; with push-unsigned it is accepted (default xz)', async () => {
    const { p } = await buildPaths([{ name: 'p', files: { f: 'unsigned' } }]);
    const refused = await nixCopyTo(client('signer', TOKENS.signer), cacheUrl, [p!]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/403/);
    const log = proxy
      .logLines()
      .find((l) => l.msg === 'binary cache request refused' && l.status === 403 && String(l.why).includes(p!));
    expect(String(log?.why)).toMatch(/carries no signature.*push-unsigned/);
    expect(await validIn(store, [p!])).toEqual(new Set());

    const before = proxy.logLines().length;
    const accepted = await nixCopyTo(client('unsigned', TOKENS.unsigned), cacheUrl, [p!]);
    expect(accepted.code, accepted.stderr).toBe(0);
    await importsSettled(proxy, [p!], before);
    expect(await validIn(store, [p!])).toEqual(new Set([p]));
    expect(rooted(p!)).toBe(true);
  }, 120_000);

  it('no token gets 401 and a read-only token 403; neither imports anything', async () => {
    const { q } = await buildPaths([{ name: 'q', files: { f: 'nobody' } }]);
    const from = proxy.logLines().length;
    const none = await nixCopyTo(client('none'), cacheUrl, [q!]);
    expect(none.code).not.toBe(0);
    // Nix reports a refused /nix-cache-info as "does not appear to be a binary cache"; the proxy logs why.
    expect(none.stderr).toMatch(/does not appear to be a binary cache|401/);
    const refusal = proxy
      .logLines()
      .slice(from)
      .find((l) => l.msg === 'binary cache request refused');
    expect(refusal).toMatchObject({ status: 401, url: '/nix-cache-info' });
    expect(String(refusal?.why)).toMatch(/needs a token.*netrc/);
    const reader = await nixCopyTo(client('reader', TOKENS.reader), cacheUrl, [q!]);
    expect(reader.code).not.toBe(0);
    expect(reader.stderr).toMatch(/403/);
    expect(await validIn(store, [q!])).toEqual(new Set());
  }, 120_000);

  it('the shared store is a substituter for a token holder: nix copy --from gets a pushed path back', async () => {
    const { r } = await buildPaths([{ name: 'r', files: { f: 'round trip' } }]);
    const from = proxy.logLines().length;
    const push = await nixCopyTo(client('unsigned', TOKENS.unsigned), cacheUrl, [r!]);
    expect(push.code, push.stderr).toBe(0);
    await importsSettled(proxy, [r!], from);
    const dest = await makeChrootStore(join(work, 'reader-store'));
    const reader = client('reader', TOKENS.reader);
    const got = await runProcess('nix', ['copy', '--no-check-sigs', '--from', cacheUrl, '--to', dest, r!], {
      env: reader.env,
    });
    expect(got.code, got.stderr).toBe(0);
    expect(await validIn(dest, [r!])).toEqual(new Set([r]));
    expect(lstatSync(join(dest, r!)).isDirectory()).toBe(true);
  }, 120_000);
});
