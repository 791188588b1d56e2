import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { DEFAULTS, type Config } from './config';
import { parseCommandLine, type ParsedArgs } from './cli-args';
import { HEALTH_DEFAULT_TIMEOUT_MS } from './command-flags';
import { CONFIG_FILE_ENV, CONFIG_KEYS, KEY_BY_PATH, getPath, setPath } from './config-keys';
import { readEnv } from './config-env';
import { parseConfigText } from './config-file';
import { ConfigError } from './config-error';
import { crossCheckConfig } from './check-config';
import { coerceValue } from './coerce-value';
import { parseDuration } from './duration';
import { allNamesOf, describeOrigin, type Origin, type RawEntry, type Sources } from './sources';
import { usageText } from './usage';
import { formatHostPort, parseHostPort, type HostPort } from './value-checks';
import type { StoreUrl } from '../store/store-url';
import { packageVersion } from './version';

export type { Origin, Sources } from './sources';
export { ConfigError } from './config-error';
export { describeConfig } from './describe-config';

export interface LoadConfigInput {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Relative paths in flags and variables are resolved against this; those in a config file against its directory. */
  cwd: string;
}

export interface HealthArgs {
  /** host:port to dial. */
  address: string;
  timeoutMs: number;
  /** Present when the check must use TLS; file paths are absolute and were readable. */
  tls?: { ca?: string; cert?: string; key?: string; serverName?: string };
}

export interface PruneArgs {
  /** The shared store whose roots are pruned (the same setting the proxy uses). */
  sharedStore: StoreUrl;
  unusedForMs: number;
  dryRun: boolean;
  gc: boolean;
}

interface LoadedBase {
  /** Fully validated; file paths are absolute. For help/version: the defaults, unvalidated input ignored. */
  config: Config;
  /** Where each key's value came from, by dotted path. */
  sources: Sources;
  /** Absolute path of the config file read, if any. */
  configFile?: string;
}

/** What the command line asked for. `commandArgs` holds the subcommand's own arguments. */
export type LoadedConfig =
  | (LoadedBase & { command: 'serve'; commandArgs: Record<string, never> })
  | (LoadedBase & { command: 'health'; commandArgs: HealthArgs })
  | (LoadedBase & { command: 'prune'; commandArgs: PruneArgs })
  | (LoadedBase & { command: 'help' | 'version'; commandArgs: { text: string } });

function defaultSources(): Sources {
  return Object.fromEntries(CONFIG_KEYS.map((key) => [key.path, { kind: 'default' } as Origin]));
}

/**
 * Builds the Config from defaults < config file < environment < flags.
 * Reads the config file and checks that every file it names is readable;
 * nothing else touches the system. Throws one ConfigError listing every
 * problem found; `--help` and `--version` win over any problem.
 */
export function loadConfig(input: LoadConfigInput): LoadedConfig {
  const args = parseCommandLine(input.argv);
  if (args.help) {
    return {
      command: 'help',
      config: structuredClone(DEFAULTS),
      sources: defaultSources(),
      commandArgs: { text: usageText(packageVersion()) },
    };
  }
  if (args.version) {
    return {
      command: 'version',
      config: structuredClone(DEFAULTS),
      sources: defaultSources(),
      commandArgs: { text: `nix-reapi-proxy ${packageVersion()}\n` },
    };
  }

  const problems = [...args.problems];
  const layers: RawEntry[] = [];

  const configFileText = args.configFile ?? input.env[CONFIG_FILE_ENV];
  let configFile: string | undefined;
  if (configFileText) {
    configFile = path.resolve(input.cwd, configFileText);
    const named = args.configFile !== undefined ? '--config' : CONFIG_FILE_ENV;
    try {
      const parsed = parseConfigText(readFileSync(configFile, 'utf8'), configFile);
      layers.push(...parsed.entries);
      problems.push(...parsed.problems);
    } catch (err) {
      problems.push(
        `${named}: cannot read config file ${configFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
    }
  }
  const env = readEnv(input.env);
  layers.push(...env.entries);
  problems.push(...env.problems);
  for (const flag of args.configFlags)
    layers.push({ key: flag.key, raw: flag.raw, origin: { kind: 'flag', name: flag.flag } });

  const config = structuredClone(DEFAULTS) as unknown as Record<string, unknown>;
  const sources = defaultSources();
  const refused = new Set<string>();
  for (const { key, raw, origin } of layers) {
    const coerced = coerceValue(key, raw);
    const where = describeOrigin(key.path, origin);
    if (!coerced.ok) {
      refused.add(key.path);
      const shown = key.kind === 'list' || typeof raw === 'object' ? '' : `${JSON.stringify(raw)} `;
      for (const error of coerced.errors) problems.push(`${where}: ${shown}${error}`);
      continue;
    }
    let value = coerced.value;
    if (key.kind === 'file' && typeof value === 'string') {
      const base = origin.kind === 'file' ? path.dirname(origin.file) : input.cwd;
      value = path.resolve(base, value);
    }
    setPath(config, key.path, value);
    sources[key.path] = origin;
  }
  const typed = config as unknown as Config;
  problems.push(...crossCheckConfig(typed, sources));
  problems.push(...checkNamedFiles(typed, sources));

  const loaded = finishCommand(args, typed, refused, input.cwd, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...loaded, config: typed, sources, ...(configFile ? { configFile } : {}) } as LoadedConfig;
}

/** Why `file` cannot be used as an input file, or undefined when it can be read. */
function unreadable(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return 'is not a regular file';
    closeSync(openSync(file, 'r'));
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(err)})`;
  }
}

function checkNamedFiles(config: Config, sources: Sources): string[] {
  const problems: string[] = [];
  for (const key of CONFIG_KEYS) {
    const value = getPath(config, key.path);
    if (typeof value !== 'string') continue;
    const where = describeOrigin(key.path, sources[key.path] ?? { kind: 'default' });
    if (key.kind === 'file') {
      const why = unreadable(value);
      if (why) problems.push(`${where}: file ${value} ${why}`);
    }
  }
  if (config.nixBinDir !== undefined) {
    const where = describeOrigin('nixBinDir', sources.nixBinDir ?? { kind: 'default' });
    try {
      if (!statSync(config.nixBinDir).isDirectory()) problems.push(`${where}: ${config.nixBinDir} is not a directory`);
    } catch {
      problems.push(`${where}: directory ${config.nixBinDir} does not exist`);
    }
  }
  return problems;
}

type CommandPart = Pick<LoadedConfig, 'command' | 'commandArgs'>;

function finishCommand(
  args: ParsedArgs,
  config: Config,
  refused: ReadonlySet<string>,
  cwd: string,
  problems: string[],
): CommandPart {
  if (args.command === 'health') return { command: 'health', commandArgs: healthArgs(args, config, cwd, problems) };
  if (args.command === 'prune') return { command: 'prune', commandArgs: pruneArgs(args, config, refused, problems) };
  return { command: 'serve', commandArgs: {} };
}

/** The listen address as a dialable one: wildcard hosts become loopback. */
function dialableListen(listen: HostPort): string {
  const host = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host === '[::]' ? '[::1]' : listen.host;
  return formatHostPort({ host, port: listen.port });
}

function healthArgs(args: ParsedArgs, config: Config, cwd: string, problems: string[]): HealthArgs {
  const flags = args.commandFlags;
  const address = typeof flags.address === 'string' ? flags.address : dialableListen(config.listen);
  const parsed = parseHostPort(address, { allowPortZero: false });
  if ('error' in parsed) {
    const where = typeof flags.address === 'string' ? '--address' : 'health address (from the listen setting)';
    problems.push(
      `${where}: ${JSON.stringify(address)} ${parsed.error}${flags.address ? '' : '; pass --address HOST:PORT'}`,
    );
  }

  let timeoutMs = HEALTH_DEFAULT_TIMEOUT_MS;
  if (typeof flags.timeout === 'string') {
    const duration = parseDuration(flags.timeout);
    if ('error' in duration) problems.push(`--timeout: ${JSON.stringify(flags.timeout)} ${duration.error}`);
    else if (duration.ms < 1 || duration.ms > 2 ** 31 - 1)
      problems.push(`--timeout: ${JSON.stringify(flags.timeout)} must be between 1ms and 24d`);
    else timeoutMs = duration.ms;
  }

  const result: HealthArgs = { address, timeoutMs };
  const tlsFiles: Record<string, string> = {};
  for (const name of ['ca', 'cert', 'key'] as const) {
    const value = flags[name];
    if (typeof value !== 'string') continue;
    const file = path.resolve(cwd, value);
    const why = unreadable(file);
    if (why) problems.push(`--${name}: file ${file} ${why}`);
    tlsFiles[name] = file;
  }
  if (tlsFiles.cert && !tlsFiles.key)
    problems.push('--cert is set but --key is not: a client certificate needs its private key');
  if (tlsFiles.key && !tlsFiles.cert)
    problems.push('--key is set but --cert is not: a private key needs its certificate');
  const serverName = typeof flags['server-name'] === 'string' ? flags['server-name'] : undefined;
  if (flags.tls === true || Object.keys(tlsFiles).length > 0 || serverName !== undefined) {
    result.tls = { ...tlsFiles, ...(serverName !== undefined ? { serverName } : {}) };
  }
  return result;
}

function pruneArgs(args: ParsedArgs, config: Config, refused: ReadonlySet<string>, problems: string[]): PruneArgs {
  const flags = args.commandFlags;
  // A refused value was already reported; saying it is missing too would be noise.
  if (config.sharedStore === undefined && !refused.has('sharedStore')) {
    problems.push(`prune needs the shared store to prune: set ${allNamesOf(KEY_BY_PATH.get('sharedStore')!)}`);
  }
  let unusedForMs = 0;
  if (typeof flags['unused-for'] !== 'string') {
    problems.push(
      'prune needs --unused-for DURATION (e.g. --unused-for 14d): GC roots of paths unused for longer are dropped',
    );
  } else {
    const duration = parseDuration(flags['unused-for']);
    if ('error' in duration) problems.push(`--unused-for: ${JSON.stringify(flags['unused-for'])} ${duration.error}`);
    // 0s is meaningful: drop every root no running action holds.
    else unusedForMs = duration.ms;
  }
  return {
    // Only read when no problem was found, and then the shared store is set.
    sharedStore: config.sharedStore!,
    unusedForMs,
    dryRun: flags['dry-run'] === true,
    gc: flags.gc === true,
  };
}
