import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/** The built CLI refuses a bad configuration before opening anything: exit 2, every problem listed. */
const CLI = path.resolve(__dirname, '../../../dist/src/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'cli-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]) {
  return spawnSync(process.execPath, [CLI, '--listen', '127.0.0.1:0', ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
    timeout: 30_000,
  });
}

describe('nix-reapi-proxy: configuration problems', () => {
  it('a substituter setting Nix does not know exits 2 naming it, not later with a stack trace', () => {
    const result = run(['--shared-store', dir, '--substituter', 'file:///x?foo=bar']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('invalid configuration (1 problem)');
    expect(result.stderr).toContain(
      '--substituter: item "file:///x?foo=bar" has setting foo, which file stores do not take',
    );
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.stdout).not.toContain('listening');
  });

  it('lists every problem at once: store URLs, upstream, keys and addresses', () => {
    const result = run([
      '--shared-store',
      'file:///cache',
      '--substituter',
      'ftp://x',
      '--trusted-public-key',
      'no-key',
      '--upstream',
      'grpc://host',
      '--metrics-listen',
      'nowhere',
    ]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('invalid configuration (5 problems)');
    for (const flag of ['--shared-store', '--substituter', '--trusted-public-key', '--upstream', '--metrics-listen']) {
      expect(result.stderr).toContain(`  - ${flag}: `);
    }
  });
});
