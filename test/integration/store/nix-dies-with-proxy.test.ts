import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SpawnNixRunner } from '../../../src/store/nix-command';
import { REPO_ROOT } from '../../support/proxy-process';

/**
 * Nix processes the proxy starts die with it, even when it is killed with
 * SIGKILL and cannot stop them (setpriv --pdeathsig): a stand-in `nix` that
 * would run for a minute, started by a runner in a separate Node process,
 * is gone once that process is killed. A missing Nix binary is still an
 * UNAVAILABLE naming how to fix it.
 */

const dir = mkdtempSync(join(tmpdir(), 'nix-dies-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie has exited; it only waits to be reaped by init.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

describe.skipIf(!existsSync('/usr/bin/setpriv'))('Nix processes and the proxy process', () => {
  it('a Nix process started by the runner dies when the process running it is killed with SIGKILL', async () => {
    const pidFile = join(dir, 'nix.pid');
    const fake = join(dir, 'nix');
    writeFileSync(fake, `#!/bin/sh\necho $$ > '${pidFile}'\nexec sleep 60\n`);
    chmodSync(fake, 0o755);
    // The runner, built (dist/) as the proxy runs it, in its own Node process.
    const script = `
      const { SpawnNixRunner } = require(${JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'store', 'nix-command.js'))});
      new SpawnNixRunner({ binDir: ${JSON.stringify(dir)}, timeoutMs: 120000 }).run({ program: 'nix', args: ['copy'] }, new AbortController().signal);
      setInterval(() => {}, 1000);
    `;
    const holder = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    const deadline = Date.now() + 30_000;
    while (!existsSync(pidFile) || readFileSync(pidFile, 'utf8').trim() === '') {
      if (Date.now() > deadline) throw new Error('the stand-in nix never started');
      await new Promise((r) => setTimeout(r, 20));
    }
    const nixPid = Number(readFileSync(pidFile, 'utf8').trim());
    expect(alive(nixPid)).toBe(true);
    holder.kill('SIGKILL');
    while (alive(nixPid)) {
      if (Date.now() > deadline) throw new Error(`nix (pid ${nixPid}) outlived the process that started it`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(alive(nixPid)).toBe(false);
  }, 60_000);

  it('a Nix binary that is not there is UNAVAILABLE naming the fix, not an exit code', async () => {
    const runner = new SpawnNixRunner({ binDir: join(dir, 'missing'), timeoutMs: 10_000 });
    await expect(
      runner.run({ program: 'nix', args: ['--version'] }, new AbortController().signal),
    ).rejects.toMatchObject({
      code: 14,
      reason: 'NIX_NOT_RUNNABLE',
      message: expect.stringMatching(/cannot run .*missing\/nix: No such file or directory; install Nix .*nixBinDir/),
    });
  });
});
