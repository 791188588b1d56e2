import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from './config/config';
import { formatHostPort, type HostPort } from './config/value-checks';
import { packageVersion } from './config/version';
import { createCasClient } from './execute/cas-client';
import { grpcCapabilitiesFetch, UpstreamDigestFunctions } from './execute/upstream-digest-functions';
import { createExecuteService } from './execute/execute-handler';
import { GrpcCasReader } from './execute/grpc-cas-reader';
import { NO_METRICS, type Metrics } from './metrics/metrics';
import { startMetricsServer, type RunningMetricsServer } from './metrics/metrics-server';
import { PrometheusMetrics } from './metrics/prometheus-metrics';
import { Http2UpstreamCaller } from './passthrough/http2-upstream-caller';
import { UpstreamPool } from './passthrough/upstream-pool';
import type { CallObserver } from './rpc/call-observer';
import { CallRouter, type ExecuteService } from './server/call-router';
import { Admission } from './server/auth/admission';
import { currentClient } from './server/auth/client-scope';
import { TokenStore } from './server/auth/token-store';
import { HealthService } from './server/health-service';
import { ProxyServer } from './server/proxy-server';
import { startBinaryCache, type RunningBinaryCache } from './cache/create-binary-cache';
import { createGcRoots } from './gc/create-gc-roots';
import { createClosureEnsurer } from './compose/create-closure-ensurer';
import { ImportsInFlight } from './store/imports-in-flight';
import { configuredNixRunner, type NixRunner } from './store/nix-command';

/** Services whose health the proxy reports; it serves every one of them (itself or by forwarding). */
const SERVED_SERVICES = new Set([
  'build.bazel.remote.execution.v2.Execution',
  'build.bazel.remote.execution.v2.ActionCache',
  'build.bazel.remote.execution.v2.ContentAddressableStorage',
  'build.bazel.remote.execution.v2.Capabilities',
  'google.bytestream.ByteStream',
  'google.longrunning.Operations',
  'build.bazel.remote.asset.v1.Fetch',
  'build.bazel.remote.asset.v1.Push',
]);

export interface RunningProxy {
  address: AddressInfo;
  /** host:port clients connect to. */
  endpoint: string;
  /** host:port of the binary cache listener, when cacheListen is set. */
  cacheEndpoint?: string;
  /** host:port of the Prometheus /metrics listener, when metricsListen is set. */
  metricsEndpoint?: string;
  /** Where components report counts (a no-op unless metricsListen is set). */
  metrics: Metrics;
  /** Graceful shutdown: NOT_SERVING, stop accepting, drain, then drop after `graceMs`. */
  close(graceMs?: number): Promise<void>;
  /** Re-reads what may change without a restart (authTokensFile); the CLI calls it on SIGHUP. */
  reload(): void;
}

/** Seams for tests and embedding; production passes nothing. */
export interface ProxyExtras {
  /** Replaces the Nix process runner (tests count and fault-inject Nix processes through it). */
  nixRunner?: NixRunner;
  /** Also told about every finished call (besides the metrics, when metricsListen is set). */
  observer?: CallObserver;
}

/**
 * The composition root: turns a validated Config into running objects, each
 * shared one (upstream pool, CAS client, Nix runner, GC roots, ensurer,
 * metrics) built once here. The store and GC factories it calls
 * (createClosureEnsurer, createGcRoots) assemble their own decorator stacks.
 */
export async function startProxy(config: Config, logger: Logger, extras: ProxyExtras = {}): Promise<RunningProxy> {
  const target = config.upstream;
  // First: a bad token file stops the start before anything else is opened.
  const tokens = config.authTokensFile ? new TokenStore(config.authTokensFile, logger) : undefined;
  if (tokens) {
    const plaintext = [
      ...(config.tls.cert && config.tls.key ? [] : [`the gRPC listener ${formatHostPort(config.listen)}`]),
      ...(config.cacheListen && !(config.cacheTls.cert && config.cacheTls.key) && !(config.tls.cert && config.tls.key)
        ? [`the binary cache ${formatHostPort(config.cacheListen)}`]
        : []),
    ];
    if (plaintext.length > 0) {
      logger.warn(
        { listeners: plaintext },
        `tokens are checked on plaintext listeners (${plaintext.join(', ')}): anyone on the network path can read them; set tls.cert and tls.key (and cacheTls), or terminate TLS in front of the proxy`,
      );
    }
  }
  const read = (file: string | undefined): Buffer | undefined => (file ? readFileSync(file) : undefined);
  const upstreamTls = {
    ca: read(config.upstreamTls.ca),
    cert: read(config.upstreamTls.cert),
    key: read(config.upstreamTls.key),
    serverName: config.upstreamTls.serverName,
  };
  const pool = new UpstreamPool(
    target,
    {
      connections: config.upstreamConnections,
      connectTimeoutMs: config.connectTimeoutMs,
      keepaliveTimeMs: config.keepalive.timeMs,
      keepaliveTimeoutMs: config.keepalive.timeoutMs,
      tls: upstreamTls,
    },
    logger,
  );
  const upstream = new Http2UpstreamCaller(pool, 64 * 1024 * 1024);
  const prometheus = config.metricsListen
    ? new PrometheusMetrics({ version: packageVersion(), processMetrics: true })
    : undefined;
  const metrics: Metrics = prometheus ?? NO_METRICS;
  const closers: Array<() => void | Promise<void>> = [];

  let execute: ExecuteService | undefined;
  let startCache: (() => Promise<RunningBinaryCache>) | undefined;
  let cache: RunningBinaryCache | undefined;
  if (config.sharedStore) {
    // The CAS reader asks for responses up to the proxy's own message limit (and at least gRPC's usual 4 MiB).
    const maxResponseBytes = Math.max(config.maxMessageBytes, 4 * 1024 * 1024);
    const casClient = createCasClient(target, { tls: upstreamTls, maxResponseBytes, keepalive: config.keepalive });
    closers.push(() => casClient.close());
    const casReader = new GrpcCasReader({
      client: casClient,
      upstreamLabel: target.url,
      maxResponseBytes,
      connectTimeoutMs: config.connectTimeoutMs,
      logger,
    });
    // One runner for every Nix process the proxy starts.
    const runner = extras.nixRunner ?? configuredNixRunner(config);
    const roots = createGcRoots(config, {
      logger,
      metrics,
      runner,
      onSweep: (outcome) => metrics.gcSweepFinished({ ok: outcome.ok, atMs: outcome.atMs }),
    });
    // The binary cache's imports in flight, which Executes needing those paths wait for.
    const imports = config.cacheListen ? new ImportsInFlight() : undefined;
    const ensurer = createClosureEnsurer(config, { logger, runner, metrics, leases: roots, currentClient, imports });
    // Closed in this order at shutdown: stop realisations, then drop this replica's leases.
    closers.push(
      () => ensurer.close(),
      () => roots.close(),
    );
    const digestFunctions = new UpstreamDigestFunctions({ fetch: grpcCapabilitiesFetch(casClient), logger });
    execute = createExecuteService({
      casReader,
      digestFunctions,
      ensurer,
      upstream,
      config,
      logger,
      metrics,
      leases: roots,
      pushUrl: () => cache?.publicUrl,
    });
    if (config.cacheListen) {
      const rootsDir = roots.location.on ? roots.location.dir : undefined;
      startCache = () =>
        startBinaryCache(config, { logger, runner, store: ensurer.store, leases: roots, rootsDir, tokens, imports });
    }
  }

  const health = new HealthService(SERVED_SERVICES);
  const observer = combineObservers(prometheus, extras.observer);
  // Clients are only told apart when something needs it: tokens, client certificates, per-client limits.
  tokens?.watch();
  if (tokens) closers.push(() => tokens.close());
  const clientCertificates = Boolean(config.tls.clientCa && config.tls.cert && config.tls.key);
  const perClient =
    config.limits.clientConcurrentRealisations !== undefined || config.limits.clientRealisedBytesPerHour !== undefined;
  const admission =
    tokens || clientCertificates || perClient ? new Admission({ tokens, clientCertificates, logger }) : undefined;
  const router = new CallRouter({
    pool,
    health,
    execute,
    maxMessageBytes: config.maxMessageBytes,
    requestReadTimeoutMs: config.limits.requestReadTimeoutMs,
    requestBufferBytes: config.limits.requestBufferBytes,
    logger,
    observer,
    admission,
  });
  const { host, port } = splitHostPort(config.listen);
  const server = new ProxyServer(
    {
      host,
      port,
      tls:
        config.tls.cert && config.tls.key
          ? { cert: config.tls.cert, key: config.tls.key, clientCa: config.tls.clientCa }
          : undefined,
      keepaliveTimeMs: config.keepalive.timeMs,
      keepaliveTimeoutMs: config.keepalive.timeoutMs,
      maxConnections: config.limits.connections,
      maxStreamsPerConnection: config.limits.streamsPerConnection,
    },
    router,
    logger,
  );
  // The metrics listener comes up first so its address is in the 'listening' line, which tools wait for.
  let metricsServer: RunningMetricsServer | undefined;
  let address: AddressInfo;
  try {
    if (prometheus && config.metricsListen) {
      metricsServer = await startMetricsServer(
        splitHostPort(config.metricsListen),
        () => prometheus.exposition(),
        logger,
      );
    }
    cache = await startCache?.();
    address = await server.listen();
  } catch (err) {
    await cache?.close();
    await metricsServer?.close();
    pool.close();
    for (const close of closers) await close();
    throw err;
  }
  const endpoint = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info(
    {
      listen: endpoint,
      upstream: target.url,
      sharedStore: config.sharedStore?.url ?? null,
      metrics: metricsServer?.endpoint,
      cache: cache?.endpoint,
    },
    'listening',
  );
  return {
    address,
    endpoint,
    metrics,
    ...(metricsServer ? { metricsEndpoint: metricsServer.endpoint } : {}),
    ...(cache ? { cacheEndpoint: cache.endpoint } : {}),
    reload() {
      tokens?.reload('reload requested (SIGHUP)');
    },
    async close(graceMs = config.shutdownGraceMs) {
      health.setNotServing();
      await server.close(graceMs);
      await cache?.close();
      pool.close();
      for (const close of closers) await close();
      // Last, so a scrape during the drain still sees the final counts.
      await metricsServer?.close();
    },
  };
}

function combineObservers(...observers: Array<CallObserver | undefined>): CallObserver | undefined {
  const present = observers.filter((o): o is CallObserver => o !== undefined);
  if (present.length <= 1) return present[0];
  return { callDone: (path, code, durationMs) => present.forEach((o) => o.callDone(path, code, durationMs)) };
}

/** A listen address as node's listen() wants it: IPv6 without brackets. */
export function splitHostPort(listen: HostPort): { host: string; port: number } {
  return { host: listen.host.replace(/^\[(.*)\]$/, '$1'), port: listen.port };
}
