import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importCounts, importsSettled } from '../../support/cache-imports';
import { makeNixClient, nixCopyTo } from '../../support/nix-client';
import { buildPaths, closureOf, makeChrootStore, nixAvailable, run, validIn } from '../../support/nix-fixtures';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * Several developers push overlapping closures at the same moment, with
 * stock Nix: every push succeeds, every path is imported exactly once, and
 * nothing is left in staging. The clients keep Nix's default narinfo TTLs,
 * as developers do (see NixClientOptions.defaultNarinfoTtls for the Nix 2.8
 * bug a negative TTL of 0 meets when pushes race). A proxy killed in the middle of an import
 * leaves the path either valid and intact or not valid at all, and its
 * restart empties the staging directory.
 */

const TOKEN = 'pusher-0123456789abcdef';
const CLIENTS = 4;

let work: string;
let store: string;
let staging: string;
let tokens: string;
let proxy: ProxyProcess | undefined;

function proxyArgs(): string[] {
  return [
    '--upstream',
    'grpc://127.0.0.1:1',
    '--shared-store',
    store,
    '--cache-listen',
    '127.0.0.1:0',
    '--auth-tokens-file',
    tokens,
    '--cache-staging-dir',
    staging,
  ];
}

/** Pids of processes whose command line names `text` (the proxy's orphaned `nix copy`, if any). */
function processesNaming(text: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function stagedFiles(): string[] {
  return ['tmp', 'nar', 'imports'].flatMap((d) => (existsSync(join(staging, d)) ? readdirSync(join(staging, d)) : []));
}

describe.skipIf(!nixAvailable())('binary cache: concurrent pushes and a killed import', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'cache-conc-'));
    store = await makeChrootStore(join(work, 'shared'));
    staging = join(work, 'staging');
    tokens = join(work, 'tokens');
    writeFileSync(tokens, `dev:${TOKEN} push-unsigned\n`);
    proxy = await startProxy(proxyArgs());
  }, 120_000);

  afterAll(async () => {
    await proxy?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const round of [1, 2]) {
    it(`round ${round}: ${CLIENTS} clients push overlapping closures at once; all succeed, each path is imported once`, async () => {
      // A shared chain (base <- mid <- lib) every client's closure contains, pairwise-shared paths, and one top per client.
      const spec = [
        { name: 'base', files: { f: 'base' } },
        { name: 'mid', deps: ['base'], files: { f: 'mid @dep:base@' } },
        { name: 'lib', deps: ['mid'], files: { f: 'lib @dep:mid@' } },
        ...Array.from({ length: CLIENTS }, (_, i) => ({
          name: `pair${i}`,
          deps: ['lib'],
          files: { f: `pair ${i} @dep:lib@` },
        })),
        ...Array.from({ length: CLIENTS }, (_, i) => ({
          name: `top${i}`,
          deps: [`pair${i}`, `pair${(i + 1) % CLIENTS}`],
          files: { f: `top ${i} @dep:pair${i}@ @dep:pair${(i + 1) % CLIENTS}@`, big: String(i).repeat(20_000) },
        })),
      ];
      const paths = await buildPaths(spec);
      const tops = Array.from({ length: CLIENTS }, (_, i) => paths[`top${i}`]!);
      const everything = [...new Set((await Promise.all(tops.map((t) => closureOf('local', t)))).flat())].sort();
      expect(everything.length).toBeGreaterThanOrEqual(3 + 2 * CLIENTS);

      const from = proxy!.logLines().length;
      const results = await Promise.all(
        tops.map((top, i) =>
          nixCopyTo(
            makeNixClient(join(work, `client-${round}-${i}`), { token: TOKEN, defaultNarinfoTtls: true }),
            `${proxy!.cacheUrl}?compression=${i % 2 ? 'zstd' : 'none'}`,
            [top],
          ),
        ),
      );
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      await importsSettled(proxy!, everything, from);
      expect(
        proxy!
          .logLines()
          .slice(from)
          .filter((l) => l.msg === 'pushed path not imported'),
      ).toEqual([]);
      expect(await validIn(store, everything)).toEqual(new Set(everything));
      for (const [p, n] of importCounts(proxy!, everything, from)) expect(n, `${p} imported ${n} times`).toBe(1);
      // Every import's staged NAR is gone; a duplicate upload of an imported path left nothing either.
      expect(stagedFiles()).toEqual([]);
      // The store's own check: every pushed path's contents match the NarHash it was imported with.
      await run('nix-store', ['--store', store, '--verify-path', ...everything]);
    }, 300_000);
  }

  it('a proxy killed mid-import leaves the path valid and intact or not valid at all; the restart empties staging', async () => {
    const blobDir = join(work, 'blob');
    await run('/bin/sh', ['-c', `mkdir -p '${blobDir}' && head -c 83886080 /dev/urandom > '${blobDir}/data'`]);
    const big = (await run('nix-store', ['--add', blobDir])).trim();
    const { top } = await buildPaths([{ name: 'top', deps: [big], files: { f: `uses ${big}` } }]);

    const from = proxy!.logLines().length;
    const pushing = nixCopyTo(
      makeNixClient(join(work, 'client-kill'), { token: TOKEN }),
      `${proxy!.cacheUrl}?compression=none`,
      [top!],
    );
    const deadline = Date.now() + 120_000;
    while (
      !proxy!
        .logLines()
        .slice(from)
        .some((l) => l.msg === 'importing pushed paths into the shared store' && l.first === big)
    ) {
      if (Date.now() > deadline) throw new Error(`the import of ${big} never started:\n${proxy!.logs().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    process.kill(proxy!.pid, 'SIGKILL');
    await proxy!.stop();
    // The client may have had its answers already (imports run behind them) or been cut off: either way
    // the store must be consistent.
    await pushing;

    // Let any `nix copy` the proxy had started finish or die, then look.
    while (processesNaming(store).length > 0) await new Promise((r) => setTimeout(r, 100));
    const valid = await validIn(store, [big, top!]);
    // A valid path's closure is valid (the import it was in may have run to its end after the proxy died) ...
    if (valid.has(top!)) expect(valid.has(big)).toBe(true);
    // ... and valid means complete: the store's own check of the contents against the registered NarHash.
    if (valid.size > 0) await run('nix-store', ['--store', store, '--verify-path', ...valid]);

    proxy = await startProxy(proxyArgs());
    expect(stagedFiles()).toEqual([]);
    // And the push, run again, completes.
    const from2 = proxy.logLines().length;
    const again = await nixCopyTo(
      makeNixClient(join(work, 'client-again'), { token: TOKEN }),
      `${proxy.cacheUrl}?compression=none`,
      [top!],
    );
    expect(again.code, again.stderr).toBe(0);
    await importsSettled(
      proxy,
      [big, top!].filter((p) => !valid.has(p)),
      from2,
    );
    expect(await validIn(store, [big, top!])).toEqual(new Set([big, top!]));
  }, 300_000);
});
