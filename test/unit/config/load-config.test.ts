import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../../src/config/config';
import { CONFIG_KEYS, getPath, type ConfigPath } from '../../../src/config/config-keys';
import { ConfigError, describeConfig, loadConfig, type LoadedConfig } from '../../../src/config/load-config';
import { hostPort, sharedStoreUrl, substituterUrl, substituterUrls, upstreamTarget } from '../../support/config-values';

// Created at collection time: the it.each tables below name files in it.
const dir = mkdtempSync(path.join(os.tmpdir(), 'config-test-'));
const pem = path.join(dir, 'a.pem');
const otherPem = path.join(dir, 'b.pem');

beforeAll(() => {
  writeFileSync(pem, 'not checked\n');
  writeFileSync(otherPem, 'not checked\n');
  mkdirSync(path.join(dir, 'bin'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Env = Record<string, string | undefined>;

function load(argv: string[], env: Env = {}): LoadedConfig {
  return loadConfig({ argv, env, cwd: dir });
}

function problemsOf(argv: string[], env: Env = {}): string[] {
  try {
    load(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(argv)} ${JSON.stringify(env)}`);
}

function writeConfig(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** A valid value for every key, as text and as the parsed result; companions satisfy cross-key rules. */
interface Sample {
  text: string | string[] | boolean;
  value: unknown;
  with?: Partial<Record<ConfigPath, string>>;
}
function samples(): Record<ConfigPath, Sample> {
  const grpcs = { upstream: 'grpcs://up:443' };
  return {
    listen: { text: '0.0.0.0:9000', value: hostPort('0.0.0.0:9000') },
    upstream: { text: 'grpcs://up.example:443', value: upstreamTarget('grpcs://up.example:443') },
    'upstreamTls.ca': { text: pem, value: pem, with: grpcs },
    'upstreamTls.cert': { text: pem, value: pem, with: { ...grpcs, 'upstreamTls.key': otherPem } },
    'upstreamTls.key': { text: pem, value: pem, with: { ...grpcs, 'upstreamTls.cert': otherPem } },
    'upstreamTls.serverName': { text: 'up.internal', value: 'up.internal', with: grpcs },
    'tls.cert': { text: pem, value: pem, with: { 'tls.key': otherPem } },
    'tls.key': { text: pem, value: pem, with: { 'tls.cert': otherPem } },
    'tls.clientCa': { text: pem, value: pem, with: { 'tls.cert': otherPem, 'tls.key': otherPem } },
    maxMessageBytes: { text: '2MiB', value: 2 * 1024 * 1024 },
    upstreamConnections: { text: '4', value: 4 },
    connectTimeoutMs: { text: '7s', value: 7000 },
    'keepalive.timeMs': { text: '0', value: 0 },
    'keepalive.timeoutMs': { text: '2s', value: 2000 },
    shutdownGraceMs: { text: '1m', value: 60_000 },
    logLevel: { text: 'debug', value: 'debug' },
    metricsListen: { text: '127.0.0.1:9100', value: hostPort('127.0.0.1:9100') },
    authTokensFile: { text: pem, value: pem },
    cacheListen: {
      text: '127.0.0.1:8990',
      value: hostPort('127.0.0.1:8990'),
      with: { sharedStore: '/srv/nix-shared' },
    },
    cachePublicUrl: { text: 'https://nix-proxy.example.com:8990', value: 'https://nix-proxy.example.com:8990' },
    'cacheTls.cert': { text: pem, value: pem, with: { 'cacheTls.key': otherPem } },
    'cacheTls.key': { text: pem, value: pem, with: { 'cacheTls.cert': otherPem } },
    cacheStagingDir: { text: '/var/lib/nix-reapi-proxy/staging', value: '/var/lib/nix-reapi-proxy/staging' },
    cacheStagingBudgetBytes: { text: '2GiB', value: 2 * 1024 ** 3 },
    cacheMaxNarBytes: { text: '1GiB', value: 1024 ** 3 },
    cacheUploadIdleTimeoutMs: { text: '30s', value: 30_000 },
    cacheStagingTtlMs: { text: '5m', value: 300_000 },
    cachePriority: { text: '10', value: 10 },
    cachePushSubjects: { text: ['ci-runner', 'release=push-unsigned'], value: ['ci-runner', 'release=push-unsigned'] },
    sharedStore: { text: '/srv/nix-shared', value: sharedStoreUrl('/srv/nix-shared') },
    substituters: {
      text: ['daemon', 'https://cache.nixos.org'],
      value: substituterUrls(['daemon', 'https://cache.nixos.org']),
    },
    trustedPublicKeys: {
      text: ['cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY='],
      value: ['cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY='],
    },
    requireSigs: { text: false, value: false },
    visibleAt: { text: '/mnt/nix-shared', value: '/mnt/nix-shared' },
    visibleTimeoutMs: { text: '90s', value: 90_000 },
    progressIntervalMs: { text: '500ms', value: 500 },
    nixBinDir: { text: path.join(dir, 'bin'), value: path.join(dir, 'bin') },
    rootRetentionMs: { text: '30d', value: 30 * 86_400_000 },
    rootedSizeBudgetBytes: { text: '50GiB', value: 50 * 1024 ** 3 },
    rootTouchIntervalMs: { text: '15m', value: 900_000 },
    rootSweepIntervalMs: { text: '0', value: 0 },
    gcRootsDir: { text: '/mnt/store-host/gcroots/nix-reapi-proxy', value: '/mnt/store-host/gcroots/nix-reapi-proxy' },
    'limits.storePathsPerAction': { text: '100', value: 100 },
    'limits.treeNodes': { text: '5000', value: 5000 },
    'limits.treeDepth': { text: '64', value: 64 },
    'limits.scanFileBytes': { text: '512KiB', value: 512 * 1024 },
    'limits.scanTotalBytes': { text: '1GiB', value: 1024 ** 3 },
    'limits.prepareTimeoutMs': { text: '2h', value: 7_200_000 },
    'limits.requestReadTimeoutMs': { text: '90s', value: 90_000 },
    'limits.requestBufferBytes': { text: '64MiB', value: 64 * 1024 * 1024 },
    'limits.concurrentPreparations': { text: '50', value: 50 },
    'limits.clientConcurrentPreparations': { text: '5', value: 5 },
    'limits.connections': { text: '500', value: 500 },
    'limits.streamsPerConnection': { text: '2000', value: 2000 },
    'limits.nixCommandTimeoutMs': { text: '90s', value: 90_000 },
    'limits.concurrentRealisations': { text: '8', value: 8 },
    'limits.realiseRetries': { text: '0', value: 0 },
    'limits.clientConcurrentRealisations': { text: '2', value: 2 },
    'limits.clientRealisedBytesPerHour': { text: '10GiB', value: 10 * 1024 ** 3 },
    'limits.clientPushedBytesPerHour': { text: '1GiB', value: 1024 ** 3 },
    'cache.memoEntries': { text: '1000', value: 1000 },
    'cache.treeMemoBytes': { text: '8MiB', value: 8 * 1024 ** 2 },
    'cache.actionMemoBytes': { text: '4MiB', value: 4 * 1024 ** 2 },
    'cache.validityBytes': { text: '2MiB', value: 2 * 1024 ** 2 },
    'cache.validityTtlMs': { text: '10m', value: 600_000 },
  };
}

const keyOf = (p: string) => CONFIG_KEYS.find((k) => k.path === p)!;

function asFlags(p: string, text: Sample['text']): string[] {
  const key = keyOf(p);
  if (typeof text === 'boolean') return [text ? `--${key.flag}` : `--no-${key.flag}`];
  if (Array.isArray(text)) return text.flatMap((item) => [`--${key.flag}`, item]);
  return [`--${key.flag}`, text];
}
function asEnv(p: string, text: Sample['text']): Env {
  return { [keyOf(p).env]: Array.isArray(text) ? text.join(',') : String(text) };
}
function asFileObject(entries: Array<[string, unknown]>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [p, value] of entries) {
    const segments = p.split('.');
    let node = root;
    for (const s of segments.slice(0, -1)) node = (node[s] ??= {}) as Record<string, unknown>;
    node[segments[segments.length - 1]!] = value;
  }
  return root;
}

describe('loadConfig: defaults', () => {
  it('with no input is serve with DEFAULTS, every source default', () => {
    const loaded = load([]);
    expect(loaded.command).toBe('serve');
    expect(loaded.config).toEqual(DEFAULTS);
    expect(Object.values(loaded.sources).every((s) => s.kind === 'default')).toBe(true);
    expect(Object.keys(loaded.sources).sort()).toEqual(CONFIG_KEYS.map((k) => k.path).sort());
  });

  it('does not share objects with DEFAULTS', () => {
    const loaded = load(['--substituter', 'daemon']);
    expect(DEFAULTS.substituters).toEqual([]);
    loaded.config.limits.treeDepth = 1;
    expect(DEFAULTS.limits.treeDepth).toBe(256);
  });
});

describe('loadConfig: every key from every source', () => {
  const rows = Object.entries(samples()).flatMap(([p, sample]) =>
    (['flag', 'env', 'file'] as const).map((source) => ({ p, source, sample })),
  );

  it('has a sample for every key in the table', () => {
    expect(Object.keys(samples()).sort()).toEqual(CONFIG_KEYS.map((k) => k.path).sort());
  });

  it.each(rows)('$p via $source', ({ p, source, sample }) => {
    const companions = Object.entries(sample.with ?? {});
    let loaded: LoadedConfig;
    if (source === 'flag') {
      loaded = load([...asFlags(p, sample.text), ...companions.flatMap(([cp, t]) => asFlags(cp, t))]);
    } else if (source === 'env') {
      loaded = load([], Object.assign(asEnv(p, sample.text), ...companions.map(([cp, t]) => asEnv(cp, t))));
    } else {
      const file = writeConfig('every-key.json', JSON.stringify(asFileObject([[p, sample.text], ...companions])));
      loaded = load(['--config', file]);
    }
    expect(getPath(loaded.config, p)).toEqual(sample.value);
    expect(loaded.sources[p]!.kind).toBe(source);
  });
});

describe('loadConfig: precedence defaults < file < env < flags', () => {
  const rows: Array<{
    p: ConfigPath;
    file: unknown;
    env: string;
    flag: string[];
    fromFile: unknown;
    fromEnv: unknown;
    fromFlag: unknown;
  }> = [
    {
      p: 'listen',
      file: '127.0.0.1:1',
      env: '127.0.0.1:2',
      flag: ['--listen', '127.0.0.1:3'],
      fromFile: hostPort('127.0.0.1:1'),
      fromEnv: hostPort('127.0.0.1:2'),
      fromFlag: hostPort('127.0.0.1:3'),
    },
    {
      p: 'connectTimeoutMs',
      file: 1000,
      env: '2s',
      flag: ['--connect-timeout', '3s'],
      fromFile: 1000,
      fromEnv: 2000,
      fromFlag: 3000,
    },
    {
      p: 'maxMessageBytes',
      file: '1MiB',
      env: '2MiB',
      flag: ['--max-message-bytes', '3MiB'],
      fromFile: 2 ** 20,
      fromEnv: 2 * 2 ** 20,
      fromFlag: 3 * 2 ** 20,
    },
    {
      p: 'limits.treeDepth',
      file: 10,
      env: '20',
      flag: ['--limits-tree-depth', '30'],
      fromFile: 10,
      fromEnv: 20,
      fromFlag: 30,
    },
    {
      p: 'requireSigs',
      file: false,
      env: 'true',
      flag: ['--no-require-sigs'],
      fromFile: false,
      fromEnv: true,
      fromFlag: false,
    },
    {
      p: 'substituters',
      file: ['local'],
      env: 'daemon https://c.example',
      flag: ['--substituter', 'ssh://b', '--substituter', 'local'],
      fromFile: substituterUrls(['local']),
      fromEnv: substituterUrls(['daemon', 'https://c.example']),
      fromFlag: substituterUrls(['ssh://b', 'local']),
    },
    {
      p: 'logLevel',
      file: 'warn',
      env: 'error',
      flag: ['--log-level', 'trace'],
      fromFile: 'warn',
      fromEnv: 'error',
      fromFlag: 'trace',
    },
  ];

  it.each(rows)('$p', (row) => {
    const file = writeConfig(`precedence.yaml`, JSON.stringify(asFileObject([[row.p, row.file]])));
    const env = { [keyOf(row.p).env]: row.env };
    expect(getPath(load([]).config, row.p)).toEqual(getPath(DEFAULTS, row.p));
    expect(getPath(load(['--config', file]).config, row.p)).toEqual(row.fromFile);
    expect(getPath(load(['--config', file], env).config, row.p)).toEqual(row.fromEnv);
    const all = load(['--config', file, ...row.flag], env);
    expect(getPath(all.config, row.p)).toEqual(row.fromFlag);
    expect(all.sources[row.p]).toEqual({ kind: 'flag', name: row.flag[0] });
  });

  it('the last of --require-sigs / --no-require-sigs wins', () => {
    expect(load(['--no-require-sigs', '--require-sigs']).config.requireSigs).toBe(true);
    expect(load(['--require-sigs', '--no-require-sigs']).config.requireSigs).toBe(false);
  });

  it('an empty variable clears an optional key set by the file, and empties a list', () => {
    const file = writeConfig('clear.yaml', 'sharedStore: /srv/a\nsubstituters: [local]\n');
    const loaded = load(['--config', file], { NIX_REAPI_PROXY_SHARED_STORE: '', NIX_REAPI_PROXY_SUBSTITUTERS: '' });
    expect(loaded.config.sharedStore).toBeUndefined();
    expect(loaded.config.substituters).toEqual([]);
  });

  it('env lists split on commas and any whitespace', () => {
    const loaded = load([], { NIX_REAPI_PROXY_SUBSTITUTERS: ' local,daemon\n https://a.example ,, ssh://b\t' });
    expect(loaded.config.substituters).toEqual(substituterUrls(['local', 'daemon', 'https://a.example', 'ssh://b']));
  });
});

describe('loadConfig: config file', () => {
  it('reads nested YAML and records the file as the source', () => {
    const file = writeConfig(
      'nested.yaml',
      [
        'listen: 127.0.0.1:7000',
        'keepalive:',
        '  timeMs: 10s',
        'limits:',
        '  treeDepth: 12',
        'cache:',
        '  validityTtlMs: 2m',
        '',
      ].join('\n'),
    );
    const loaded = load(['--config', file]);
    expect(loaded.config.keepalive).toEqual({ timeMs: 10_000, timeoutMs: DEFAULTS.keepalive.timeoutMs });
    expect(loaded.config.limits.treeDepth).toBe(12);
    expect(loaded.config.cache.validityTtlMs).toBe(120_000);
    expect(loaded.sources['limits.treeDepth']).toEqual({ kind: 'file', file });
    expect(loaded.configFile).toBe(file);
  });

  it('is named by NIX_REAPI_PROXY_CONFIG when --config is absent, relative to cwd', () => {
    writeConfig('from-env.json', '{"listen": "127.0.0.1:7001"}');
    expect(load([], { NIX_REAPI_PROXY_CONFIG: 'from-env.json' }).config.listen).toEqual(hostPort('127.0.0.1:7001'));
  });

  it('--config wins over NIX_REAPI_PROXY_CONFIG', () => {
    const a = writeConfig('a.json', '{"listen": "127.0.0.1:7002"}');
    const b = writeConfig('b.json', '{"listen": "127.0.0.1:7003"}');
    expect(load(['--config', b], { NIX_REAPI_PROXY_CONFIG: a }).config.listen).toEqual(hostPort('127.0.0.1:7003'));
  });

  it('resolves relative TLS paths against the file directory, flag paths against cwd', () => {
    const sub = path.join(dir, 'sub');
    mkdirSync(sub, { recursive: true });
    writeFileSync(path.join(sub, 'cert.pem'), 'x');
    writeFileSync(path.join(sub, 'key.pem'), 'x');
    const file = path.join(sub, 'tls.yaml');
    writeFileSync(file, 'tls:\n  cert: cert.pem\n  key: key.pem\n');
    const loaded = load(['--config', file, '--tls-key', 'sub/key.pem']);
    expect(loaded.config.tls).toEqual({ cert: path.join(sub, 'cert.pem'), key: path.join(sub, 'key.pem') });
  });

  it('an empty file is no settings', () => {
    expect(load(['--config', writeConfig('empty.yaml', '')]).config).toEqual(DEFAULTS);
  });
});

describe('loadConfig: each rule names the setting, the value and why', () => {
  const rows: Array<{ name: string; argv?: string[]; env?: Env; file?: string; expected: RegExp[] }> = [
    { name: 'unknown flag', argv: ['--lisen', 'x'], expected: [/unknown flag --lisen/] },
    { name: 'flag without value', argv: ['--listen'], expected: [/--listen needs a value/] },
    {
      name: 'flag eating the next flag',
      argv: ['--listen', '--upstream=grpc://a:1'],
      expected: [/--listen needs a value but is followed by --upstream/],
    },
    { name: 'boolean flag with a value', argv: ['--require-sigs=no'], expected: [/--require-sigs takes no value/] },
    { name: 'unknown command', argv: ['serv'], expected: [/unknown command "serv"/] },
    { name: 'stray argument', argv: ['serve', 'extra'], expected: [/unexpected argument "extra"/] },
    {
      name: 'unknown variable',
      env: { NIX_REAPI_PROXY_LISTEN_ADDR: 'x' },
      expected: [/NIX_REAPI_PROXY_LISTEN_ADDR: unknown variable/],
    },
    {
      name: 'unknown file key with a hint',
      file: 'max_message_bytes: 1MiB\n',
      expected: [/max_message_bytes in .*: unknown key \(did you mean maxMessageBytes\?\)/],
    },
    {
      name: 'file key of wrong type',
      file: 'listen: 8980\n',
      expected: [/listen in .*: 8980 must be a string, not a number/],
    },
    { name: 'file group not a mapping', file: 'limits: 5\n', expected: [/limits in .*: must be a mapping/] },
    {
      name: 'file list of wrong type',
      file: 'substituters: {a: 1}\n',
      expected: [/substituters in .*: must be a list of strings, not a mapping/],
    },
    { name: 'file not a mapping', file: '- a\n- b\n', expected: [/must be a mapping of settings/] },
    { name: 'file syntax error', file: 'listen: [\n', expected: [/config file .*:/] },
    {
      name: 'file missing',
      argv: ['--config', '/nonexistent/p.yaml'],
      expected: [/--config: cannot read config file \/nonexistent\/p.yaml: ENOENT/],
    },
    {
      name: 'bad duration',
      argv: ['--connect-timeout', '5 sec'],
      expected: [/--connect-timeout: "5 sec" is not a duration/],
    },
    {
      name: 'duration beyond timers',
      argv: ['--limits-prepare-timeout', '30d'],
      expected: [/--limits-prepare-timeout: "30d" must be at most/],
    },
    {
      name: 'bad size',
      argv: ['--max-message-bytes', '4Mb8'],
      expected: [/--max-message-bytes: "4Mb8" is not a size/],
    },
    {
      name: 'size too small',
      env: { NIX_REAPI_PROXY_MAX_MESSAGE_BYTES: '10' },
      expected: [/NIX_REAPI_PROXY_MAX_MESSAGE_BYTES: "10" must be at least 1KiB/],
    },
    {
      name: 'limit zero',
      argv: ['--limits-tree-depth', '0'],
      expected: [/--limits-tree-depth: "0" must be at least 1/],
    },
    {
      name: 'limit negative',
      argv: ['--limits-concurrent-realisations=-2'],
      expected: [/--limits-concurrent-realisations: "-2" must be at least 1/],
    },
    {
      name: 'limit not a number',
      file: 'limits:\n  treeNodes: lots\n',
      expected: [/limits.treeNodes in .*: "lots" must be a whole number/],
    },
    { name: 'listen not host:port', argv: ['--listen', '8980'], expected: [/--listen: "8980" is not HOST:PORT/] },
    {
      name: 'upstream scheme',
      argv: ['--upstream', 'http://a:80'],
      expected: [/--upstream: "http:\/\/a:80" is not grpc:\/\/HOST:PORT/],
    },
    {
      name: 'upstream without port',
      env: { NIX_REAPI_PROXY_UPSTREAM: 'grpcs://a' },
      expected: [/NIX_REAPI_PROXY_UPSTREAM: "grpcs:\/\/a" is not grpc/],
    },
    {
      name: 'log level',
      argv: ['--log-level', 'verbose'],
      expected: [/--log-level: "verbose" must be one of trace, debug, info, warn, error, fatal, silent/],
    },
    {
      name: 'substituter scheme',
      argv: ['--substituter', 'local', '--substituter', 'ftp://m/c'],
      expected: [/--substituter: item "ftp:\/\/m\/c" has unsupported scheme ftp/],
    },
    {
      name: 'shared store form',
      argv: ['--shared-store', 'srv/store'],
      expected: [/--shared-store: "srv\/store" is not a store URL/],
    },
    {
      name: 'trusted key form',
      env: { NIX_REAPI_PROXY_TRUSTED_PUBLIC_KEYS: 'nokey' },
      expected: [/item "nokey" is not NAME:BASE64KEY/],
    },
    {
      name: 'boolean env',
      env: { NIX_REAPI_PROXY_REQUIRE_SIGS: 'maybe' },
      expected: [/NIX_REAPI_PROXY_REQUIRE_SIGS: "maybe" must be true or false/],
    },
    {
      name: 'empty required value',
      env: { NIX_REAPI_PROXY_LISTEN: '' },
      expected: [/NIX_REAPI_PROXY_LISTEN: "" must not be empty/],
    },
    {
      name: 'tls cert without key',
      argv: ['--tls-cert', 'a.pem'],
      expected: [/--tls-cert is set but tls.key is not.*--tls-key, NIX_REAPI_PROXY_TLS_KEY or file key tls.key/],
    },
    {
      name: 'tls key without cert',
      env: { NIX_REAPI_PROXY_TLS_KEY: 'a.pem' },
      expected: [/NIX_REAPI_PROXY_TLS_KEY is set but tls.cert is not/],
    },
    {
      name: 'client CA without TLS',
      argv: ['--tls-client-ca', 'a.pem'],
      expected: [/--tls-client-ca is set but tls.cert is not/],
    },
    {
      name: 'upstream cert without key',
      argv: ['--upstream', 'grpcs://a:1', '--upstream-tls-cert', 'a.pem'],
      expected: [/--upstream-tls-cert is set but upstreamTls.key is not/],
    },
    {
      name: 'upstream TLS on plaintext',
      argv: ['--upstream-tls-ca', 'a.pem'],
      expected: [/--upstream-tls-ca is set but upstream \(default\) is "grpc:\/\/127.0.0.1:8981", which is plaintext/],
    },
    {
      name: 'TLS file missing',
      argv: ['--tls-cert', 'missing.pem', '--tls-key', 'a.pem'],
      expected: [/--tls-cert: file .*missing.pem does not exist/],
    },
    {
      name: 'TLS file is a directory',
      argv: ['--upstream', 'grpcs://a:1', '--upstream-tls-ca', 'bin'],
      expected: [/--upstream-tls-ca: file .*bin is not a regular file/],
    },
    {
      name: 'nix bin dir missing',
      argv: ['--nix-bin-dir', '/nonexistent/bin'],
      expected: [/--nix-bin-dir: directory \/nonexistent\/bin does not exist/],
    },
    {
      name: 'visible-at relative',
      argv: ['--visible-at', 'mnt'],
      expected: [/--visible-at: "mnt" is not an absolute path/],
    },
    {
      name: 'health flag on serve',
      argv: ['--address', '127.0.0.1:1'],
      expected: [/--address is a flag of the health command, not of serve/],
    },
    {
      name: 'serve flag on health',
      argv: ['health', '--listen', '127.0.0.1:1'],
      expected: [/--listen is a flag of serve and prune, not of health/],
    },
  ];

  it.each(rows)('$name', ({ argv = [], env = {}, file, expected }) => {
    const args = file ? ['--config', writeConfig('rule.yaml', file), ...argv] : argv;
    const problems = problemsOf(args, env);
    for (const pattern of expected)
      expect(
        problems.some((p) => pattern.test(p)),
        `${pattern} in\n${problems.join('\n')}`,
      ).toBe(true);
    expect(problems).toHaveLength(expected.length);
  });
});

describe('loadConfig: every bad key at once', () => {
  it('reports each problem from flags, env and file in one ConfigError', () => {
    const file = writeConfig('many.yaml', 'listen: nope\nlimits:\n  treeDepth: 0\nbogus: 1\n');
    let error: ConfigError | undefined;
    try {
      load(
        [
          '--config',
          file,
          '--connect-timeout',
          'soon',
          '--substituter',
          'gopher://x',
          '--frobnicate',
          '--tls-cert',
          'a.pem',
        ],
        { NIX_REAPI_PROXY_MAX_MESSAGE_BYTES: 'big', NIX_REAPI_PROXY_TYPO: '1' },
      );
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const expected = [
      'unknown flag --frobnicate',
      `listen in ${file}: "nope"`,
      `limits.treeDepth in ${file}: 0 must be at least 1`,
      `bogus in ${file}: unknown key`,
      '--connect-timeout: "soon"',
      '--substituter: item "gopher://x"',
      'NIX_REAPI_PROXY_MAX_MESSAGE_BYTES: "big"',
      'NIX_REAPI_PROXY_TYPO: unknown variable',
      '--tls-cert is set but tls.key is not',
    ];
    for (const text of expected)
      expect(
        error!.problems.some((p) => p.includes(text)),
        text,
      ).toBe(true);
    expect(error!.problems).toHaveLength(expected.length);
    for (const text of expected) expect(error!.message).toContain(text);
    expect(error!.message).toMatch(/^invalid configuration \(9 problems\)/);
  });
});

describe('loadConfig: help and version', () => {
  it.each([[['--help']], [['-h']], [['help']], [['health', '--help']], [['--bogus', '--help']]])(
    '%j prints usage',
    (argv) => {
      const loaded = load(argv, { NIX_REAPI_PROXY_BOGUS: 'x' });
      expect(loaded.command).toBe('help');
      expect(loaded.commandArgs).toEqual({ text: expect.stringContaining('Usage:') });
    },
  );

  it.each([[['--version']], [['version']]])('%j prints the package version', (argv) => {
    const loaded = load(argv);
    expect(loaded.command).toBe('version');
    expect(loaded.commandArgs).toEqual({ text: expect.stringMatching(/^nix-reapi-proxy \d+\.\d+\.\d+\n$/) });
  });
});

describe('loadConfig: health', () => {
  it.each([
    ['0.0.0.0:8980', '127.0.0.1:8980'],
    ['[::]:8980', '[::1]:8980'],
    ['10.1.2.3:9', '10.1.2.3:9'],
  ])('defaults the address from listen %s to %s, timeout 5s, no TLS', (listen, address) => {
    const loaded = load(['health'], { NIX_REAPI_PROXY_LISTEN: listen });
    expect(loaded).toMatchObject({ command: 'health', commandArgs: { address, timeoutMs: 5000 } });
    expect(loaded.commandArgs).not.toHaveProperty('tls');
  });

  it('takes --address, --timeout and TLS flags', () => {
    const loaded = load([
      'health',
      '--address',
      'proxy:443',
      '--timeout',
      '2s',
      '--ca',
      'a.pem',
      '--cert',
      'a.pem',
      '--key',
      'b.pem',
      '--server-name',
      'proxy.internal',
    ]);
    expect(loaded.commandArgs).toEqual({
      address: 'proxy:443',
      timeoutMs: 2000,
      tls: { ca: pem, cert: pem, key: otherPem, serverName: 'proxy.internal' },
    });
  });

  it('--tls alone turns TLS on with system roots', () => {
    expect(load(['health', '--tls', '--address', 'p:1']).commandArgs).toEqual({
      address: 'p:1',
      timeoutMs: 5000,
      tls: {},
    });
  });

  it('reports every health problem', () => {
    const problems = problemsOf([
      'health',
      '--address',
      'nope',
      '--timeout',
      'later',
      '--cert',
      'a.pem',
      '--ca',
      'missing.pem',
    ]);
    expect(problems).toEqual([
      expect.stringContaining('--address: "nope" is not HOST:PORT'),
      expect.stringContaining('--timeout: "later" is not a duration'),
      expect.stringMatching(/--ca: file .*missing.pem does not exist/),
      expect.stringContaining('--cert is set but --key is not'),
    ]);
  });

  it('refuses a listen port 0 as the address to check', () => {
    expect(problemsOf(['health'], { NIX_REAPI_PROXY_LISTEN: '127.0.0.1:0' })).toEqual([
      expect.stringContaining('pass --address HOST:PORT'),
    ]);
  });
});

describe('loadConfig: store settings are refused here, not when the store side starts', () => {
  it.each([
    [['--shared-store', 'relative/dir'], '--shared-store: "relative/dir" is not a store URL'],
    [['--shared-store', 'file:///cache'], '--shared-store: "file:///cache" file stores are binary caches'],
    [
      ['--substituter', 'local', '--substituter', 'ftp://x'],
      '--substituter: item "ftp://x" has unsupported scheme ftp',
    ],
    [
      ['--substituter', 'file:///x?foo=bar'],
      '--substituter: item "file:///x?foo=bar" has setting foo, which file stores do not take',
    ],
    [['--trusted-public-key', 'no key'], '--trusted-public-key: item "no key" is not NAME:BASE64KEY'],
    [['--trusted-public-key', 'a:b:c='], '--trusted-public-key: item "a:b:c=" is not NAME:BASE64KEY'],
    [['--visible-at', 'mnt/store'], '--visible-at: "mnt/store" is not an absolute path'],
  ])('%j', (argv, problem) => {
    const problems = problemsOf(argv);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(problem);
  });

  it('hands the store side parsed store URLs', () => {
    const { config } = load([
      '--shared-store',
      '/srv/s',
      '--substituter',
      'file:///c?priority=10',
      '--substituter',
      'ssh-ng://u@b',
    ]);
    expect(config.sharedStore).toMatchObject({ kind: 'chroot', url: '/srv/s', localDir: '/srv/s' });
    expect(config.substituters).toMatchObject([
      { kind: 'file', localDir: '/c', params: { priority: '10' } },
      { kind: 'ssh-ng', host: 'u@b' },
    ]);
  });
});

describe('loadConfig: prune', () => {
  it('takes the shared store, --unused-for, --dry-run and --gc', () => {
    const loaded = load(['prune', '--shared-store', '/srv/s', '--unused-for', '14d', '--dry-run', '--gc']);
    expect(loaded).toMatchObject({
      command: 'prune',
      commandArgs: { sharedStore: sharedStoreUrl('/srv/s'), unusedForMs: 14 * 86_400_000, dryRun: true, gc: true },
    });
  });

  it('takes the shared store from the environment', () => {
    const loaded = load(['prune', '--unused-for', '1h'], { NIX_REAPI_PROXY_SHARED_STORE: 'daemon' });
    expect(loaded.commandArgs).toEqual({
      sharedStore: sharedStoreUrl('daemon'),
      unusedForMs: 3_600_000,
      dryRun: false,
      gc: false,
    });
  });

  it('needs both a shared store and --unused-for', () => {
    expect(problemsOf(['prune'])).toEqual([
      expect.stringContaining(
        'prune needs the shared store to prune: set --shared-store, NIX_REAPI_PROXY_SHARED_STORE',
      ),
      expect.stringContaining('prune needs --unused-for DURATION'),
    ]);
  });

  it('reports a bad shared store once, not also as missing', () => {
    expect(problemsOf(['prune', '--shared-store', 'nope', '--unused-for', 'soon'])).toEqual([
      expect.stringContaining('--shared-store: "nope"'),
      expect.stringContaining('--unused-for: "soon" is not a duration'),
    ]);
  });

  it('takes --unused-for 0s: every root no running action holds', () => {
    expect(load(['prune', '--shared-store', '/srv/s', '--unused-for', '0s']).commandArgs).toMatchObject({
      unusedForMs: 0,
    });
  });

  it('prune flags are refused on serve', () => {
    expect(problemsOf(['--dry-run'])).toEqual([
      expect.stringContaining('--dry-run is a flag of the prune command, not of serve'),
    ]);
  });
});

describe('describeConfig', () => {
  it('lists every set key with units, masks URL passwords and names non-default sources', () => {
    const loaded = load(['--substituter', 'https://cache.example', '--connect-timeout', '7s'], {
      NIX_REAPI_PROXY_SHARED_STORE: '/srv/s',
    });
    // The loader refuses credentials in store URLs; the log line masks a password however one got in.
    const withPassword = { ...substituterUrl('https://cache.example'), url: 'https://u:secret@cache.example' };
    const described = describeConfig({ ...loaded.config, substituters: [withPassword] }, loaded.sources);
    expect(described.settings).toMatchObject({
      listen: '127.0.0.1:8980',
      connectTimeoutMs: '7s',
      maxMessageBytes: '4MiB',
      'limits.treeDepth': 256,
      substituters: ['https://u:***@cache.example'],
      sharedStore: '/srv/s',
    });
    expect(JSON.stringify(described)).not.toContain('secret');
    expect(described.settings).not.toHaveProperty('tls.cert');
    expect(described.sources).toEqual({
      substituters: 'flag --substituter',
      connectTimeoutMs: 'flag --connect-timeout',
      sharedStore: 'env NIX_REAPI_PROXY_SHARED_STORE',
    });
  });
});
