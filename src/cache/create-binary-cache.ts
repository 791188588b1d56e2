/**
 * Turns configuration into the running binary cache (src/cache): staging
 * area, importer, reader, hash index, access rules and the listener. Called
 * by src/main.ts when cacheListen is set, with the shared store stack and GC
 * roots the Execute path uses, so pushes and Execute copies share one write
 * lock, one retry policy and one set of roots.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { PathLeases } from '../gc/path-leases';
import type { NixRunner } from '../store/nix-command';
import type { SharedStore } from '../store/shared-store';
import { CacheAccess, type TokenEntries } from './cache-access';
import { CacheServer } from './cache-server';
import { HashIndex } from './hash-index';
import { parsePublicKey, type TrustedKey } from './narinfo-signature';
import type { ImportsInFlight } from '../store/imports-in-flight';
import { PushImporter } from './push-importer';
import { PushQuota } from './push-quota';
import { SharedStoreReader } from './shared-store-reader';
import { StagingArea } from './staging-area';

export interface BinaryCacheDeps {
  logger: Logger;
  runner: NixRunner;
  /** The shared store stack the Execute path writes through (serialised, retried). */
  store: SharedStore;
  leases: PathLeases;
  /** The GC roots directory, when roots are on: its entries name every path the proxy manages. */
  rootsDir?: string;
  tokens?: TokenEntries;
  /** Shared with the Execute path, which waits for the paths being imported. */
  imports?: ImportsInFlight;
}

export interface RunningBinaryCache {
  /** host:port it listens on. */
  endpoint: string;
  /** The URL clients are told to push to. */
  publicUrl: string;
  close(): Promise<void>;
}

/** The store directory on this host whose entries are the shared store's paths, when there is one. */
function localStoreDir(config: Config): string | undefined {
  const store = config.sharedStore;
  if (!store) return undefined;
  if (store.kind === 'chroot' || (store.kind === 'local' && store.localDir))
    return join(store.localDir!, 'nix', 'store');
  if (store.kind === 'local' || store.kind === 'daemon') return '/nix/store';
  return undefined;
}

export async function startBinaryCache(config: Config, deps: BinaryCacheDeps): Promise<RunningBinaryCache> {
  const listen = config.cacheListen!;
  const logger = deps.logger.child({ component: 'binary-cache' });
  const stagingDir =
    config.cacheStagingDir ??
    (listen.port !== 0
      ? join(tmpdir(), `nix-reapi-proxy-staging-${listen.port}`)
      : mkdtempSync(join(tmpdir(), 'nix-reapi-proxy-staging-')));
  const staging = new StagingArea({
    dir: stagingDir,
    budgetBytes: config.cacheStagingBudgetBytes,
    ttlMs: config.cacheStagingTtlMs,
    logger,
  });
  await staging.open();
  const trustedKeys = config.trustedPublicKeys.map(parsePublicKey).filter((k): k is TrustedKey => k !== undefined);
  const index = new HashIndex({
    dirs: [deps.rootsDir, localStoreDir(config)].filter((d): d is string => d !== undefined),
    maxEntries: 500_000,
    listTtlMs: 2_000,
    logger,
  });
  const reader = new SharedStoreReader({
    storeUrl: config.sharedStore!.url,
    runner: deps.runner,
    ttlMs: 10_000,
    maxEntries: 50_000,
  });
  const importer = new PushImporter({
    store: deps.store,
    staging,
    trustedKeys,
    leases: deps.leases,
    logger,
    imports: deps.imports,
    onImported: (p) => {
      index.add(p);
      reader.forget(p);
    },
  });
  const tls =
    config.cacheTls.cert && config.cacheTls.key
      ? { cert: config.cacheTls.cert, key: config.cacheTls.key, clientCa: config.tls.clientCa }
      : config.tls.cert && config.tls.key
        ? { cert: config.tls.cert, key: config.tls.key, clientCa: config.tls.clientCa }
        : undefined;
  const host = listen.host.replace(/^\[(.*)\]$/, '$1');
  const server = new CacheServer(
    {
      host,
      port: listen.port,
      tls,
      priority: config.cachePriority,
      maxNarBytes: config.cacheMaxNarBytes,
      uploadIdleTimeoutMs: config.cacheUploadIdleTimeoutMs,
      maxConnections: 1024,
      tokensOn: deps.tokens !== undefined,
    },
    {
      access: new CacheAccess({ tokens: deps.tokens, pushSubjects: config.cachePushSubjects }),
      staging,
      importer,
      reader,
      index,
      quota: new PushQuota(config.limits.clientPushedBytesPerHour),
      logger,
    },
  );
  let address;
  try {
    address = await server.listen();
  } catch (err) {
    await staging.close();
    throw err;
  }
  const endpoint = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  const publicUrl = config.cachePublicUrl ?? `${tls ? 'https' : 'http'}://${endpoint}`;
  logger.info(
    { listen: endpoint, publicUrl, tls: Boolean(tls), stagingDir, trustedKeys: trustedKeys.map((k) => k.name) },
    'binary cache listening',
  );
  return {
    endpoint,
    publicUrl,
    async close() {
      await server.close();
      importer.close();
      reader.close();
      await staging.close();
    },
  };
}
