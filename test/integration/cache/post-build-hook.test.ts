import { importCounts, importsSettled } from '../../support/cache-imports';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run as runProcess, type RunResult } from '../../support/e2e-process';
import { makeNixClient } from '../../support/nix-client';
import {
  absentStorePath,
  buildPaths,
  closureOf,
  makeChrootStore,
  nixAvailable,
  run,
  validIn,
} from '../../support/nix-fixtures';
import { REPO_ROOT, startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * deploy/client/nix-push-hook.sh as Nix's post-build-hook: a local nix-build
 * pushes what it built, closure first and signed, to the proxy's binary cache
 * with a push-only token (so an unsigned narinfo would be refused 403); an
 * unreachable or stalled proxy costs the build a message, not the build,
 * unless NIX_REAPI_PROXY_PUSH_STRICT=1; inputs that are not store paths are
 * refused before anything runs.
 *
 * Nix here is 2.8.0, which runs the hook with an empty OUT_PATHS
 * (NixOS/nix#6446): the builds below go through the hook's DRV_PATH route,
 * the direct calls through OUT_PATHS.
 */

const HOOK = join(REPO_ROOT, 'deploy', 'client', 'nix-push-hook.sh');
const TOKEN = 'pusher-0123456789abcdef';

let work: string;
let store: string;
let proxy: ProxyProcess;
let cacheUrl: string;
let secretKeyFile: string;
/** An env file that sets nothing, so the machine's /etc/nix one cannot leak into a test. */
let emptyEnvFile: string;
const rootsDir = () => join(store, 'nix/var/nix/gcroots/nix-reapi-proxy');
const rooted = (path: string) => existsSync(join(rootsDir(), path.slice('/nix/store/'.length)));

/** The developer's environment: own HOME and Nix cache, netrc-file with the push token in NIX_CONFIG. */
function clientEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const client = makeNixClient(join(work, `client-${randomBytes(4).toString('hex')}`), { token: TOKEN });
  const env: NodeJS.ProcessEnv = { ...client.env, NIX_REAPI_PROXY_PUSH_ENV_FILE: emptyEnvFile, ...settings };
  for (const k of Object.keys(env)) if (k.startsWith('NIX_REAPI_PROXY_') && env[k] === '') delete env[k];
  return env;
}

/**
 * A fresh two-derivation closure no store has: `tool` references `lib`, both
 * built locally by /bin/sh (offline), so the hook runs once for each.
 */
function derivationFile(): string {
  const salt = randomBytes(6).toString('hex');
  const file = join(work, `hook-${salt}.nix`);
  writeFileSync(
    file,
    [
      'let',
      `  lib = derivation { name = "hook-${salt}-lib"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo lib-${salt} > $out" ]; };`,
      `in derivation { name = "hook-${salt}-tool"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo \${lib}/lib > $out" ]; }`,
    ].join('\n'),
  );
  return file;
}

/** `nix-build` with the hook as post-build-hook; never rejects on a non-zero exit. */
function nixBuildWithHook(file: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return runProcess('nix-build', ['--no-out-link', '--option', 'post-build-hook', HOOK, file], {
    env,
    timeoutMs: 240_000,
  });
}

/** The hook run directly, as Nix would run it but with the given OUT_PATHS / DRV_PATH. */
function runHook(env: NodeJS.ProcessEnv): Promise<RunResult> {
  return runProcess(HOOK, [], { env, timeoutMs: 60_000 });
}

function outputOf(build: RunResult): string {
  const out = build.stdout.trim().split('\n').pop() ?? '';
  expect(out, build.stderr).toMatch(/^\/nix\/store\/[a-z0-9]{32}-hook-[0-9a-f]{12}-tool$/);
  return out;
}

/** A port nothing listens on. */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A "proxy" that accepts connections and never answers. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe.skipIf(!nixAvailable())('nix-push-hook.sh as post-build-hook', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'cache-hook-'));
    store = await makeChrootStore(join(work, 'shared'));
    secretKeyFile = join(work, 'secret.key');
    const publicKeyFile = join(work, 'public.key');
    await run('nix-store', ['--generate-binary-cache-key', 'hook-test-1', secretKeyFile, publicKeyFile]);
    const publicKey = readFileSync(publicKeyFile, 'utf8').trim();
    emptyEnvFile = join(work, 'empty.env');
    writeFileSync(emptyEnvFile, '# nothing\n');
    const tokens = join(work, 'tokens');
    // push only: an unsigned narinfo is refused, so an accepted push proves the hook signed it.
    writeFileSync(tokens, `pusher:${TOKEN} push\n`);
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
  }, 120_000);

  afterAll(async () => {
    await proxy?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a local nix-build pushes its outputs, closure included and signed, with settings from the env file: valid and rooted in the shared store', async () => {
    const envFile = join(work, 'hook.env');
    writeFileSync(
      envFile,
      [
        '# as in /etc/nix/nix-reapi-proxy-push-hook.env',
        `NIX_REAPI_PROXY_CACHE_URL="${cacheUrl}"`,
        `NIX_REAPI_PROXY_SECRET_KEY_FILE=${secretKeyFile}  # signs the narinfos`,
        "NIX_REAPI_PROXY_COMPRESSION='zstd'",
        '',
      ].join('\n'),
    );
    const from = proxy.logLines().length;
    const build = await nixBuildWithHook(derivationFile(), {
      ...clientEnv({}),
      NIX_REAPI_PROXY_PUSH_ENV_FILE: envFile,
    });
    expect(build.code, build.stderr).toBe(0);
    const tool = outputOf(build);
    const closure = await closureOf('local', tool);
    expect(closure).toHaveLength(2);
    const lib = closure.find((p) => p.endsWith('-lib'))!;

    // Nix prefixes the hook's lines; it ran once per derivation, lib first.
    const pushed = build.stderr
      .split('\n')
      .filter((l) => l.startsWith('post-build-hook: nix-reapi-proxy-push-hook: pushed'));
    expect(pushed, build.stderr).toHaveLength(2);
    expect(pushed[0]).toContain(`pushed ${lib} to ${cacheUrl} in `);
    expect(pushed[1]).toContain(`pushed ${tool} to ${cacheUrl} in `);

    await importsSettled(proxy, closure, from);
    expect(await validIn(store, closure)).toEqual(new Set(closure));
    for (const p of closure) expect(rooted(p), p).toBe(true);
    const accepted = proxy
      .logLines()
      .slice(from)
      .filter((l) => l.msg === 'push accepted');
    expect(accepted.map((l) => l.path).sort()).toEqual(closure);
    expect(accepted.every((l) => l.client === 'pusher' && l.accepted === true)).toBe(true);
    for (const [p, n] of importCounts(proxy, closure, from)) expect(n, p).toBe(1);
    // The shared store keeps the hook's signature.
    const info = JSON.parse(await run('nix', ['path-info', '--json', '--sigs', '--store', store, tool])) as Array<{
      signatures?: string[];
    }>;
    expect(info[0]?.signatures?.some((s) => s.startsWith('hook-test-1:'))).toBe(true);
  }, 240_000);

  it('called with OUT_PATHS (as Nix after 2.8.0 calls it) it pushes those paths; without a secret key the push-only token is refused 403 and the message says what to do', async () => {
    const { p } = await buildPaths([{ name: 'p', files: { f: 'out paths' } }]);
    const unsigned = await runHook(clientEnv({ OUT_PATHS: p!, NIX_REAPI_PROXY_CACHE_URL: cacheUrl }));
    expect(unsigned.code, unsigned.stderr).toBe(0);
    expect(unsigned.stderr).toMatch(/403/);
    expect(unsigned.stderr).toContain(`could not push ${p} to ${cacheUrl}: nix copy exited with status 1`);
    expect(unsigned.stderr).toMatch(
      /signed by a key the proxy trusts \(NIX_REAPI_PROXY_SECRET_KEY_FILE\) unless the token has push-unsigned/,
    );
    expect(await validIn(store, [p!])).toEqual(new Set());

    const from = proxy.logLines().length;
    const signed = await runHook(
      clientEnv({ OUT_PATHS: p!, NIX_REAPI_PROXY_CACHE_URL: cacheUrl, NIX_REAPI_PROXY_SECRET_KEY_FILE: secretKeyFile }),
    );
    expect(signed.code, signed.stderr).toBe(0);
    expect(signed.stderr).toContain(`pushed ${p} to ${cacheUrl}`);
    await importsSettled(proxy, [p!], from);
    expect(await validIn(store, [p!])).toEqual(new Set([p]));
    expect(rooted(p!)).toBe(true);
  }, 120_000);

  it('with the proxy unreachable the build still succeeds and the message names the URL and the fix; with NIX_REAPI_PROXY_PUSH_STRICT=1 the build fails', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const settings = { NIX_REAPI_PROXY_CACHE_URL: url, NIX_REAPI_PROXY_SECRET_KEY_FILE: secretKeyFile };

    const lenient = await nixBuildWithHook(derivationFile(), clientEnv(settings));
    expect(lenient.code, lenient.stderr).toBe(0);
    const tool = outputOf(lenient);
    expect(await validIn('local', [tool])).toEqual(new Set([tool]));
    expect(lenient.stderr).toContain(`could not push ${tool} to ${url}: nix copy exited with status 1`);
    expect(lenient.stderr).toContain(`check that the proxy's binary cache answers at ${url}`);
    expect(lenient.stderr).toContain(
      `then push by hand (as root if the netrc file and key are root's): nix copy --to '${url}?compression=zstd&secret-key=${secretKeyFile}' ${tool}`,
    );
    expect(lenient.stderr).toContain(
      'The build itself is not failed (set NIX_REAPI_PROXY_PUSH_STRICT=1 to fail it instead).',
    );

    const strict = await nixBuildWithHook(
      derivationFile(),
      clientEnv({ ...settings, NIX_REAPI_PROXY_PUSH_STRICT: '1' }),
    );
    expect(strict.code).not.toBe(0);
    expect(strict.stderr).toMatch(/could not push \/nix\/store\/\S+-lib to http:\/\/127\.0\.0\.1:\d+: nix copy exited/);
    expect(strict.stderr).toContain('NIX_REAPI_PROXY_PUSH_STRICT=1: failing the build of /nix/store/');
    expect(strict.stderr).toMatch(/program '.*nix-push-hook\.sh' failed with exit code 1/);
  }, 240_000);

  it('a proxy that accepts connections and never answers holds the build only for NIX_REAPI_PROXY_PUSH_TIMEOUT', async () => {
    const silent = await silentServer();
    try {
      const url = `http://127.0.0.1:${silent.port}`;
      const started = Date.now();
      const build = await nixBuildWithHook(
        derivationFile(),
        clientEnv({
          NIX_REAPI_PROXY_CACHE_URL: url,
          NIX_REAPI_PROXY_SECRET_KEY_FILE: secretKeyFile,
          NIX_REAPI_PROXY_PUSH_TIMEOUT: '2',
        }),
      );
      const seconds = (Date.now() - started) / 1000;
      expect(build.code, build.stderr).toBe(0);
      outputOf(build);
      // Two hook runs (lib, tool), each stopped after 2 s (SIGKILL 10 s later at worst).
      expect(seconds).toBeLessThan(40);
      expect(build.stderr).toContain(
        `to ${url}: the push did not finish within NIX_REAPI_PROXY_PUSH_TIMEOUT=2s and was stopped.`,
      );
    } finally {
      await silent.close();
    }
  }, 120_000);

  it('a hostile OUT_PATHS or DRV_PATH runs nothing: refused with a message, nix never started, even under STRICT only the exit status changes', async () => {
    // A stand-in nix that records being run: the hook must not get that far.
    const ranFile = join(work, 'stub-nix-ran');
    const stubNix = join(work, 'stub-nix');
    writeFileSync(stubNix, `#!/bin/sh\necho "$@" >> '${ranFile}'\n`);
    chmodSync(stubNix, 0o755);
    const marker = join(work, 'pwned');
    const valid = absentStorePath('ok');
    const hostile: Array<{ OUT_PATHS?: string; DRV_PATH?: string; why: RegExp }> = [
      { OUT_PATHS: `/nix/store/x; touch ${marker}`, why: /refusing OUT_PATHS=.*holds characters no store path has/ },
      { OUT_PATHS: `$(touch ${marker})`, why: /refusing OUT_PATHS=/ },
      { OUT_PATHS: `\`touch ${marker}\``, why: /refusing OUT_PATHS=/ },
      { OUT_PATHS: `${valid}\ntouch ${marker}`, why: /refusing OUT_PATHS=/ },
      { OUT_PATHS: `${valid} && touch ${marker}`, why: /refusing OUT_PATHS=/ },
      { OUT_PATHS: `${valid} --to file://${work}/elsewhere`, why: /refusing OUT_PATHS=|refusing to push/ },
      { OUT_PATHS: `${valid} ../../etc/passwd`, why: /refusing to push \.\.\/\.\.\/etc\/passwd/ },
      { OUT_PATHS: '/nix/store/../../etc/shadow', why: /refusing to push \/nix\/store\/\.\.\/\.\.\/etc\/shadow/ },
      {
        OUT_PATHS: '',
        DRV_PATH: `/nix/store/x.drv; touch ${marker}`,
        why: /refusing DRV_PATH=.*not a \/nix\/store\/\.\.\.drv path/,
      },
    ];
    for (const strict of ['', '1']) {
      for (const h of hostile) {
        const env = clientEnv({
          NIX_REAPI_PROXY_CACHE_URL: cacheUrl,
          NIX_REAPI_PROXY_NIX: stubNix,
          NIX_REAPI_PROXY_PUSH_STRICT: strict,
          OUT_PATHS: h.OUT_PATHS ?? '',
          DRV_PATH: h.DRV_PATH ?? '',
        });
        const r = await runHook(env);
        const label = `${JSON.stringify(h)} strict=${strict}: ${r.stderr}`;
        expect(r.code, label).toBe(strict === '1' ? 1 : 0);
        expect(r.stderr, label).toMatch(h.why);
        expect(r.stderr, label).toMatch(/nothing was run or pushed/);
        expect(existsSync(marker), label).toBe(false);
        expect(existsSync(ranFile), label).toBe(false);
      }
    }
    // The same stub runs when the input is well-formed (the check above is not vacuous).
    const ok = await runHook(
      clientEnv({ NIX_REAPI_PROXY_CACHE_URL: cacheUrl, NIX_REAPI_PROXY_NIX: stubNix, OUT_PATHS: valid }),
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(ranFile, 'utf8')).toContain(`--to ${cacheUrl}?compression=zstd -- ${valid}`);
  }, 120_000);

  it('a missing or bad setting is reported and does not fail the build', async () => {
    const unset = await runHook(clientEnv({ OUT_PATHS: absentStorePath('x') }));
    expect(unset.code).toBe(0);
    expect(unset.stderr).toMatch(
      /NIX_REAPI_PROXY_CACHE_URL is not set: put NIX_REAPI_PROXY_CACHE_URL=https:\/\/PROXY:PORT/,
    );
    const query = await runHook(
      clientEnv({ OUT_PATHS: absentStorePath('x'), NIX_REAPI_PROXY_CACHE_URL: `${cacheUrl}?secret-key=/etc/shadow` }),
    );
    expect(query.code).toBe(0);
    expect(query.stderr).toMatch(/it must be http\(s\):\/\/HOST\[:PORT\]\[\/PATH\], without credentials .* or a query/);
    const envFile = join(work, 'bad.env');
    writeFileSync(envFile, `NIX_REAPI_PROXY_CACHE_URL=${cacheUrl}\nNIX_REAPI_PROXY_PUSH_STRICT=1\nPATH=/tmp/evil\n`);
    const badFile = await runHook({
      ...clientEnv({ OUT_PATHS: absentStorePath('x') }),
      NIX_REAPI_PROXY_PUSH_ENV_FILE: envFile,
    });
    // STRICT from the same file counts, wherever it is.
    expect(badFile.code).toBe(1);
    expect(badFile.stderr).toContain('line 3 sets PATH, which is not a setting of this hook');
  }, 60_000);
});
