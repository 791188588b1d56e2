import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load-config';
import { execForm, only, parseDockerfile } from './dockerfile-parse';

/**
 * What can be checked of the image without a Docker engine: its stages and
 * base images, that everything it copies exists and is not excluded from the
 * build context, who it runs as, what it exposes and how it starts.
 */

const ROOT = path.resolve(__dirname, '..', '..', '..');
const { stages } = parseDockerfile(path.join(ROOT, 'Dockerfile'));
const build = stages.find((s) => s.name === 'build')!;
const runtime = stages.at(-1)!;
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  bin: Record<string, string>;
  engines: { node: string };
};
const tmp = mkdtempSync(path.join(os.tmpdir(), 'dockerfile-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** .dockerignore in the form the Dockerfile uses: exclude everything, then re-include. */
function includedByDockerignore(rel: string): boolean {
  const rules = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  let included = true;
  for (const rule of rules) {
    const negate = rule.startsWith('!');
    const pattern = negate ? rule.slice(1) : rule;
    const re = new RegExp(
      `^${pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*/g, '\u0000')
        .replace(/\*/g, '[^/]*')
        .replace(/\u0000/g, '.*')}$`,
    );
    if (re.test(rel)) included = negate;
  }
  return included;
}

describe('Dockerfile', () => {
  it('builds on Node 20 Debian bookworm and runs on its slim variant', () => {
    const major = /^>=(\d+)/.exec(pkg.engines.node)![1];
    expect(stages).toHaveLength(2);
    expect(build.image).toBe(`node:${major}-bookworm`);
    expect(runtime.image).toBe(`node:${major}-bookworm-slim`);
    expect(runtime.name).toBe('runtime');
  });

  it('installs the Nix client and ssh for ssh-ng stores from Debian in the runtime stage', () => {
    const apt = runtime.instructions
      .filter((i) => i.keyword === 'RUN' && i.args.includes('apt-get install'))
      .map((i) => i.args)
      .join(' ');
    expect(apt).toMatch(/\bnix-bin\b/);
    expect(apt).toMatch(/\bopenssh-client\b/);
    expect(apt).toMatch(/--no-install-recommends/);
    expect(apt).toMatch(/rm -rf \/var\/lib\/apt\/lists/);
  });

  it('copies only files that exist and that .dockerignore lets into the context', () => {
    const sources = stages.flatMap((s) =>
      s.instructions
        .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from='))
        .flatMap((i) => i.args.split(/\s+/).slice(0, -1)),
    );
    expect(sources.length).toBeGreaterThan(0);
    for (const src of sources) {
      expect(existsSync(path.join(ROOT, src)), src).toBe(true);
      const probe = src === 'src' || src === 'protos' ? `${src}/x.ts` : src;
      expect(includedByDockerignore(probe), `${src} is excluded by .dockerignore`).toBe(true);
    }
    expect(includedByDockerignore('node_modules/x/index.js')).toBe(false);
    expect(includedByDockerignore('test/unit/x.test.ts')).toBe(false);
  });

  it('copies the build output from the build stage only', () => {
    const froms = runtime.instructions.filter((i) => i.keyword === 'COPY' && i.args.startsWith('--from='));
    expect(froms.length).toBeGreaterThan(0);
    for (const i of froms) expect(i.args).toMatch(/^--from=build /);
    expect(froms.map((i) => i.args)).toContainEqual(expect.stringMatching(/\/src\/dist\/src \.\/dist\/src$/));
  });

  it('runs as a numeric non-root user', () => {
    const [uid, gid] = only(runtime, 'USER').args.split(':');
    expect(Number(uid)).toBeGreaterThan(0);
    expect(Number(gid)).toBeGreaterThan(0);
    expect(runtime.instructions.find((i) => i.keyword === 'RUN' && i.args.includes('useradd'))!.args).toContain(
      `--uid ${uid}`,
    );
  });

  it('exposes exactly the ports of its default config', () => {
    const config = loadConfig({
      argv: ['--config', path.join(ROOT, 'deploy', 'docker', 'config.yaml')],
      env: {},
      cwd: tmp,
    }).config;
    const ports = only(runtime, 'EXPOSE').args.split(/\s+/).map(Number);
    expect(ports).toEqual([config.listen.port, config.metricsListen!.port]);
    expect(config.listen.host).toBe('0.0.0.0');
  });

  it('starts the CLI with the config file it ships, and checks health with the health subcommand', () => {
    const entrypoint = execForm(only(runtime, 'ENTRYPOINT'));
    const cmd = execForm(only(runtime, 'CMD'));
    expect(entrypoint).toEqual(['node', `/opt/nix-reapi-proxy/${pkg.bin['nix-reapi-proxy']}`]);
    expect(cmd).toEqual(['--config', '/etc/nix-reapi-proxy/config.yaml']);
    const shipped = runtime.instructions.filter((i) => i.keyword === 'COPY' && i.args.endsWith(` ${cmd[1]}`));
    expect(shipped.map((i) => i.args)).toEqual([`deploy/docker/config.yaml ${cmd[1]}`]);
    const health = only(runtime, 'HEALTHCHECK');
    const probe = execForm({ ...health, args: health.args.replace(/^(--\S+\s+)*CMD\s+/, '') });
    expect(probe.slice(0, 3)).toEqual([...entrypoint, 'health']);
    expect(probe).toContain(cmd[1]);
  });
});
