#!/usr/bin/env node
import pino, { type Logger } from 'pino';
import type { Config } from './config/config';
import { ConfigError, describeConfig, loadConfig, type LoadedConfig, type PruneArgs } from './config/load-config';
import { formatPruneReport } from './gc/prune-report-format';
import { runPrune } from './gc/run-prune';
import { startProxy } from './main';
import { checkHealth } from './server/health-check-client';

/**
 * The `nix-reapi-proxy` command: reads flags, environment and config file,
 * then serves (default), checks a running proxy's health, or prunes GC roots.
 * Exit codes: 0 success, 1 failure at run time, 2 bad configuration.
 */
async function main(argv: string[]): Promise<number> {
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig({ argv, env: process.env, cwd: process.cwd() });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`nix-reapi-proxy: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  switch (loaded.command) {
    case 'help':
    case 'version':
      process.stdout.write(loaded.commandArgs.text);
      return 0;
    case 'health': {
      const result = await checkHealth(loaded.commandArgs);
      (result.exitCode === 0 ? process.stdout : process.stderr).write(`${result.message}\n`);
      return result.exitCode;
    }
    case 'prune':
      return prune(loaded.config, loaded.commandArgs);
    case 'serve':
      return serve(loaded);
  }
}

async function prune(config: Config, args: PruneArgs): Promise<number> {
  // The report goes to stdout; progress and warnings go to stderr so the report stays clean to read or parse.
  const logger = pino({ level: config.logLevel, base: { service: 'nix-reapi-proxy' } }, pino.destination(2));
  try {
    const report = await runPrune({ config, ...args }, logger);
    process.stdout.write(formatPruneReport(report, Date.now()));
    return 0;
  } catch (err) {
    process.stderr.write(`nix-reapi-proxy prune: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/**
 * JSON lines on stdout, written without blocking the event loop (lines queued
 * while a write is in flight go out together); whatever is queued is flushed
 * when the process exits.
 */
function makeLogger(level: string): Logger {
  const destination = pino.destination({ dest: 1, sync: false, minLength: 0 });
  process.once('exit', () => {
    try {
      destination.flushSync();
    } catch {
      // stdout already closed: nothing more can be written
    }
  });
  return pino({ level, base: { service: 'nix-reapi-proxy' } }, destination);
}

async function serve(loaded: LoadedConfig): Promise<number> {
  const logger = makeLogger(loaded.config.logLevel);
  logger.info(
    { config: describeConfig(loaded.config, loaded.sources), configFile: loaded.configFile ?? null },
    'effective configuration',
  );
  const proxy = await startProxy(loaded.config, logger);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without waiting for calls in flight');
        resolve(1);
        return;
      }
      stopping = true;
      logger.info(
        { signal, graceMs: loaded.config.shutdownGraceMs },
        'shutting down: no new connections, waiting for calls in flight',
      );
      proxy.close().then(
        () => {
          logger.info('stopped');
          resolve(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    // Re-read authTokensFile; without a handler SIGHUP would end the process.
    process.on('SIGHUP', () => proxy.reload());
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Let stdout drain, then leave even if a stray handle is left.
    setTimeout(() => process.exit(code), 50).unref();
  },
  (err: unknown) => {
    process.stderr.write(`nix-reapi-proxy: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
