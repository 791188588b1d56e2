/**
 * A developer's Nix, for binary-cache tests: its own HOME and cache
 * directory (Nix remembers narinfo answers there), a netrc file with the
 * client's token, and `nix copy --to <the proxy's cache>` run as stock Nix
 * runs it. Nothing is shared between clients, so each push really asks the
 * proxy.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, type RunResult } from './e2e-process';

export interface NixClient {
  dir: string;
  env: NodeJS.ProcessEnv;
}

export interface NixClientOptions {
  token?: string;
  host?: string;
  extraConfig?: string[];
  /**
   * Keep Nix's default narinfo TTLs (a developer's setting) instead of asking
   * the cache every time. Needed where pushes race: with a negative TTL of 0,
   * Nix before 2.35 asks again just before each upload and, when another push
   * made the path valid meanwhile, drains its whole multi-path stream and
   * fails with "coroutine has finished" (fixed upstream by NixOS/nix 7363dcd).
   */
  defaultNarinfoTtls?: boolean;
}

export function makeNixClient(dir: string, options: NixClientOptions = {}): NixClient {
  mkdirSync(join(dir, 'cache'), { recursive: true });
  const config = [
    'substituters =',
    'experimental-features = nix-command',
    'sandbox = false',
    // Ask the cache every time: a client that remembers "present" would hide what the proxy answers.
    ...(options.defaultNarinfoTtls ? [] : ['narinfo-cache-positive-ttl = 0', 'narinfo-cache-negative-ttl = 0']),
    ...(options.extraConfig ?? []),
  ];
  if (options.token !== undefined) {
    const netrc = join(dir, 'netrc');
    writeFileSync(netrc, `machine ${options.host ?? '127.0.0.1'} login nix password ${options.token}\n`, {
      mode: 0o600,
    });
    config.push(`netrc-file = ${netrc}`);
  }
  return { dir, env: { ...process.env, HOME: dir, XDG_CACHE_HOME: join(dir, 'cache'), NIX_CONFIG: config.join('\n') } };
}

/** `nix copy --to URL PATHS` as the client; never rejects on a non-zero exit. */
export function nixCopyTo(
  client: NixClient,
  url: string,
  paths: readonly string[],
  extraArgs: readonly string[] = [],
): Promise<RunResult> {
  return run('nix', ['copy', ...extraArgs, '--to', url, ...paths], { env: client.env, timeoutMs: 240_000 });
}
