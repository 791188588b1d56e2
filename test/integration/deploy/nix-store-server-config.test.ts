import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { find, renderKustomization } from '../../unit/deploy/kustomize-lite';

/**
 * The store server's and the proxy's SSH, NFS and Nix configuration files,
 * taken from the rendered manifests and handed to the real programs that
 * will read them (sshd, ssh, NFS-Ganesha, Nix), with the key setup commands
 * of docs/deployment.md run as written.
 */

const ROOT = path.resolve(__dirname, '..', '..', '..');
const base = renderKustomization(path.join(ROOT, 'deploy', 'kubernetes', 'base'));
const storeConfig = find(base.resources, 'ConfigMap', 'nix-store-config').data as Record<string, string>;
const proxyConfig = find(base.resources, 'ConfigMap', 'nix-reapi-proxy-config').data as Record<string, string>;
const dir = mkdtempSync(path.join(os.tmpdir(), 'store-server-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const have = (program: string) => spawnSync('sh', ['-c', `command -v ${program}`]).status === 0 || existsSync(program);

/** The shell block of docs/deployment.md that creates the keys, up to the kubectl commands. */
function keySetupScript(): string {
  const doc = readFileSync(path.join(ROOT, 'docs', 'deployment.md'), 'utf8');
  const block = /## 2\. Create the SSH keys and Secrets[\s\S]*?```sh\n([\s\S]*?)```/.exec(doc)![1]!;
  return block
    .split('\n')
    .filter((l) => !/^(NS=|kubectl|\s+--from-file)/.test(l))
    .join('\n');
}

describe('store server and proxy SSH configuration', () => {
  const keys = path.join(dir, 'keys');

  it('the documented key setup produces the files both sides name', () => {
    mkdirSync(keys);
    execFileSync('bash', ['-euo', 'pipefail', '-c', keySetupScript()], { cwd: keys, stdio: 'pipe' });
    for (const f of ['ssh_host_ed25519_key', 'id_ed25519', 'known_hosts', 'authorized_keys'])
      expect(existsSync(path.join(keys, f)), f).toBe(true);
    // ssh-keygen reads the restricted authorized_keys line and finds the host in known_hosts.
    expect(execFileSync('ssh-keygen', ['-l', '-f', path.join(keys, 'authorized_keys')]).toString()).toMatch(/ED25519/);
    expect(spawnSync('ssh-keygen', ['-F', 'nix-store', '-f', path.join(keys, 'known_hosts')]).status).toBe(0);
    expect(readFileSync(path.join(keys, 'authorized_keys'), 'utf8')).toMatch(
      /^restrict,command="\/usr\/bin\/nix-daemon --stdio" ssh-ed25519 /,
    );
  });

  it.skipIf(!have('/usr/sbin/sshd'))(
    'sshd accepts sshd_config: key login for nix-proxy only, no forwarding, no TTY',
    () => {
      // sshd refuses to start without its privilege-separation directory, which
      // the store server image creates and systemd creates on a host; a bare
      // machine may lack it.
      if (!existsSync('/run/sshd') && process.getuid?.() === 0) mkdirSync('/run/sshd', { mode: 0o755 });
      const conf = path.join(dir, 'sshd_config');
      writeFileSync(conf, storeConfig.sshd_config!.replaceAll('/etc/nix-store-ssh/', `${keys}/`));
      const check = spawnSync('/usr/sbin/sshd', ['-t', '-f', conf], { encoding: 'utf8' });
      expect(check.stderr).toBe('');
      expect(check.status).toBe(0);
      const effective = execFileSync(
        '/usr/sbin/sshd',
        ['-T', '-f', conf, '-C', 'user=nix-proxy,host=proxy,addr=10.0.0.1'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
      for (const line of [
        'port 22',
        'permitrootlogin no',
        'passwordauthentication no',
        'pubkeyauthentication yes',
        'allowusers nix-proxy',
        'allowtcpforwarding no',
        'allowagentforwarding no',
        'x11forwarding no',
        'permittty no',
        'usepam no',
        `authorizedkeysfile ${keys}/authorized_keys`,
        `hostkey ${keys}/ssh_host_ed25519_key`,
      ]) {
        expect(effective.split('\n'), line).toContain(line);
      }
    },
  );

  it.skipIf(!have('ssh'))(
    "the proxy's ssh_config sends the right user, port, key and known hosts, and never prompts",
    () => {
      const conf = path.join(dir, 'ssh_config');
      writeFileSync(conf, proxyConfig.ssh_config!.replaceAll('/etc/nix-reapi-proxy-ssh/', `${keys}/`));
      const host = /^ssh-ng:\/\/[^@]+@(.+)$/.exec(/sharedStore: (\S+)/.exec(proxyConfig['config.yaml']!)![1]!)![1]!;
      const effective = execFileSync('ssh', ['-G', '-F', conf, host], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }).split('\n');
      for (const line of [
        'user nix-proxy',
        'port 22',
        'batchmode yes',
        'stricthostkeychecking true',
        'identitiesonly yes',
        `identityfile ${keys}/id_ed25519`,
        `userknownhostsfile ${keys}/known_hosts`,
      ]) {
        expect(effective, line).toContain(line);
      }
    },
  );
});

describe('NFS-Ganesha configuration', () => {
  it.skipIf(!have('ganesha.nfsd') || process.getuid?.() !== 0)(
    'exports the store read-only as /nix/store over NFSv4',
    async () => {
      const exportDir = path.join(dir, 'store');
      mkdirSync(exportDir);
      const rootsDir = path.join(dir, 'gcroots');
      mkdirSync(rootsDir);
      mkdirSync(path.join(dir, 'recovery'));
      const free = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      const conf = path.join(dir, 'ganesha.conf');
      const text = storeConfig['ganesha.conf']!;
      expect(text).toContain('Path = /nix/store;');
      writeFileSync(
        conf,
        text
          .replace('Path = /nix/store;', `Path = ${exportDir};`)
          .replace('Path = /nix/var/nix/gcroots/nix-reapi-proxy;', `Path = ${rootsDir};`)
          .replace('NFS_Port = 2049;', `NFS_Port = ${free};`)
          .replace('RecoveryRoot = /var/lib/nfs/ganesha;', `RecoveryRoot = ${path.join(dir, 'recovery')};`),
      );
      const child = spawn(
        'ganesha.nfsd',
        ['-F', '-L', '/dev/stderr', '-f', conf, '-p', path.join(dir, 'ganesha.pid')],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let log = '';
      try {
        await new Promise<void>((resolve, reject) => {
          const onData = (c: Buffer) => {
            log += c.toString();
            if (log.includes('NFS SERVER INITIALIZED')) resolve();
          };
          child.stdout!.on('data', onData);
          child.stderr!.on('data', onData);
          child.once('exit', (code) => reject(new Error(`ganesha.nfsd exited with ${code}:\n${log}`)));
        });
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      }
      expect(log).toContain('Configuration file successfully parsed');
      const exportLine = log.split('\n').find((l) => l.includes('Export     1 pseudo (/nix/store)'));
      expect(exportLine, log).toBeDefined();
      expect(exportLine).toContain(`with path (${exportDir})`);
      // R-r-: read access, no write; -4-: NFSv4 only; all_squash.
      expect(exportLine).toMatch(/all_squash\s*, R-r-, -4-/);
      // The proxy's GC roots: read-write, every client squashed (to the proxy's uid).
      const rootsLine = log.split('\n').find((l) => l.includes('Export     2 pseudo (/gcroots)'));
      expect(rootsLine, log).toBeDefined();
      expect(rootsLine).toContain(`with path (${rootsDir})`);
      expect(rootsLine).toMatch(/all_squash\s*, RWrw, -4-/);
      expect(log).not.toMatch(/CONFIG :CRIT|validation errors/);
    },
  );
});

describe("the store server's nix.conf", () => {
  it('is read by Nix without unknown settings, with the values the deployment relies on', () => {
    const confDir = path.join(dir, 'nix-conf');
    mkdirSync(confDir);
    writeFileSync(path.join(confDir, 'nix.conf'), storeConfig['nix.conf']!);
    const r = spawnSync('nix', ['--extra-experimental-features', 'nix-command', 'show-config'], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        NIX_CONF_DIR: confDir,
        NIX_USER_CONF_FILES: path.join(dir, 'none.conf'),
      },
    });
    expect(r.stderr).not.toMatch(/unknown setting/);
    expect(r.status).toBe(0);
    const settings = new Map(r.stdout.split('\n').map((l) => l.split(' = ') as [string, string]));
    expect(settings.get('trusted-users')).toBe('root nix-proxy');
    expect(settings.get('min-free')).toBe('0');
    expect(settings.get('sandbox')).toBe('false');
    expect(settings.get('build-users-group')).toBe('nixbld');
    expect(settings.get('substituters')).toBe('https://cache.nixos.org');
  });
});
