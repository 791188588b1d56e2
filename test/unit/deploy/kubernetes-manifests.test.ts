import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { spawnSync } from 'node:child_process';
import { loadConfig } from '../../../src/config/load-config';
import { rootLocation } from '../../../src/gc/root-location';
import { parseSharedStoreUrl } from '../../../src/store/store-url';
import type { Config } from '../../../src/config/config';
import { execForm, only, parseDockerfile } from './dockerfile-parse';
import {
  allContainers,
  find,
  matchesTarget,
  parseYamlDocuments,
  podSpecs,
  renderKustomization,
  strategicMerge,
  yamlFilesUnder,
  type Manifest,
  type Rendered,
} from './kustomize-lite';
import { formatHostPort } from '../../../src/config/value-checks';

/**
 * What a cluster would run from deploy/kubernetes, checked against itself,
 * the proxy's own config validation and the Dockerfile: the things that, when
 * they drift apart, leave a deployment that applies cleanly and then fails.
 */

const ROOT = path.resolve(__dirname, '..', '..', '..');
const K8S = path.join(ROOT, 'deploy', 'kubernetes');
const PACKAGE_VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;
const DEPLOYMENT_DOC = readFileSync(path.join(ROOT, 'docs', 'deployment.md'), 'utf8');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'k8s-manifests-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const proxyImage = parseDockerfile(path.join(ROOT, 'Dockerfile')).stages.at(-1)!;

const OVERLAYS = {
  buildbarn: {
    upstream: 'grpc://frontend:8980',
    namespace: 'buildbarn',
    fixture: 'buildbarn-worker.yaml',
    runner: 'runner',
    workers: ['worker-ubuntu24-04'],
    others: ['frontend'],
  },
  nativelink: {
    upstream: 'grpc://nativelink:50051',
    namespace: undefined,
    fixture: 'nativelink-worker.yaml',
    runner: 'nativelink-worker',
    workers: ['nativelink-worker-lre-cc'],
    others: ['nativelink'],
  },
} as const;
type OverlayName = keyof typeof OVERLAYS;

const rendered = new Map<string, Rendered>();
function render(name: 'base' | OverlayName): Rendered {
  if (!rendered.has(name)) rendered.set(name, renderKustomization(path.join(K8S, name)));
  return rendered.get(name)!;
}

/** The proxy's config file from the rendered ConfigMap, through the proxy's own loader. */
function proxyConfig(r: Rendered): Config {
  const cm = find(r.resources, 'ConfigMap', 'nix-reapi-proxy-config');
  const file = path.join(tmp, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, cm.data['config.yaml']);
  const loaded = loadConfig({ argv: ['--config', file], env: {}, cwd: tmp });
  expect(loaded.command).toBe('serve');
  return loaded.config;
}

const port = (hostPort: string) => Number(hostPort.split(':').pop());
const proxyDeployment = (r: Rendered) => find(r.resources, 'Deployment', 'nix-reapi-proxy');
const proxyContainer = (r: Rendered) =>
  proxyDeployment(r).spec.template.spec.containers.find((c: Manifest) => c.name === 'proxy');
const frontContainer = (r: Rendered) =>
  proxyDeployment(r).spec.template.spec.containers.find((c: Manifest) => c.name === 'front');
const envOf = (c: Manifest, name: string) => c.env.find((e: Manifest) => e.name === name);
const storeSet = (r: Rendered) => find(r.resources, 'StatefulSet', 'nix-store');
const storeContainer = (r: Rendered, name: string) =>
  storeSet(r).spec.template.spec.containers.find((c: Manifest) => c.name === name);
const mountOf = (container: Manifest, mountPath: string) =>
  (container.volumeMounts ?? []).find((m: Manifest) => m.mountPath === mountPath);
const volumeOf = (spec: Manifest, name: string) => (spec.volumes ?? []).find((v: Manifest) => v.name === name);
const containerPort = (c: Manifest, name: string) => c.ports.find((p: Manifest) => p.name === name)?.containerPort;

/** `Key value` lines of an sshd_config / ssh_config, first value wins as in OpenSSH. */
function sshOptions(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(\w+)\s+(.+?)\s*$/.exec(line);
    if (m && !line.trim().startsWith('#')) out[m[1]!.toLowerCase()] ??= m[2]!;
  }
  return out;
}

describe('deploy/kubernetes files', () => {
  const files = yamlFilesUnder(K8S);

  it('has the base and both overlays', () => {
    const rel = files.map((f) => path.relative(K8S, f));
    expect(rel).toEqual(
      expect.arrayContaining([
        'base/kustomization.yaml',
        'buildbarn/kustomization.yaml',
        'nativelink/kustomization.yaml',
      ]),
    );
  });

  it.each(files.map((f) => [path.relative(ROOT, f), f]))('%s parses as Kubernetes objects', (_rel, file) => {
    const docs = parseYamlDocuments(file);
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) {
      expect(typeof doc.apiVersion).toBe('string');
      expect(typeof doc.kind).toBe('string');
      if (doc.kind !== 'Kustomization') expect(typeof doc.metadata?.name).toBe('string');
    }
  });

  it.each(['base', 'buildbarn', 'nativelink'] as const)('%s renders; every object has a unique kind/name', (name) => {
    const ids = render(name).resources.map((r) => `${r.kind}/${r.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe.each(['buildbarn', 'nativelink'] as const)('the %s overlay', (overlay) => {
  const expected = OVERLAYS[overlay];
  const r = () => render(overlay);

  it('carries a config file the proxy accepts, pointed at the backend', () => {
    const config = proxyConfig(r());
    expect(config.upstream.url).toBe(expected.upstream);
    expect(config.sharedStore!.url).toMatch(/^ssh-ng:\/\//);
    expect(config.substituters.length).toBeGreaterThan(0);
    expect(config.trustedPublicKeys.length).toBeGreaterThan(0);
  });

  it('keeps every object in the backend namespace (cluster-scoped ones aside)', () => {
    for (const res of r().resources) {
      if (res.kind === 'PersistentVolume') expect(res.metadata.namespace).toBeUndefined();
      else expect(res.metadata.namespace).toBe(expected.namespace);
    }
  });

  it('runs the proxy image of this version with the Dockerfile entrypoint and its default arguments', () => {
    const c = proxyContainer(r());
    const base = parseYamlDocuments(path.join(K8S, 'base', 'kustomization.yaml'))[0]!;
    const image = base.images.find((i: Manifest) => i.name === 'nix-reapi-proxy');
    expect(c.image).toBe(`${image.newName}:${PACKAGE_VERSION}`);
    expect(c.command).toBeUndefined();
    expect(c.args).toEqual(execForm(only(proxyImage, 'CMD')));
  });

  it('exposes the ports the config listens on, in the pod, the Service and the image', () => {
    const config = proxyConfig(r());
    const c = proxyContainer(r());
    expect(formatHostPort(config.listen)).toMatch(/^0\.0\.0\.0:/);
    expect(formatHostPort(config.metricsListen!)).toMatch(/^0\.0\.0\.0:/);
    expect(containerPort(c, 'proxy-grpc')).toBe(port(formatHostPort(config.listen)));
    expect(containerPort(c, 'metrics')).toBe(port(formatHostPort(config.metricsListen!)));
    // Clients reach the front; the front reaches the proxy inside the pod.
    const front = frontContainer(r());
    expect(containerPort(front, 'grpc')).toBe(port(envOf(front, 'FRONT_LISTEN').value));
    expect(envOf(front, 'PROXY_ADDR').value).toBe(`127.0.0.1:${port(formatHostPort(config.listen))}`);
    const service = find(r().resources, 'Service', 'nix-reapi-proxy');
    expect(service.spec.ports.map((p: Manifest) => p.targetPort).sort()).toEqual(['grpc', 'metrics']);
    expect(service.spec.selector).toEqual(proxyDeployment(r()).spec.template.metadata.labels);
    const exposed = only(proxyImage, 'EXPOSE').args.split(/\s+/).map(Number);
    expect(exposed).toEqual(
      expect.arrayContaining([containerPort(front, 'grpc'), port(formatHostPort(config.metricsListen!))]),
    );
    const annotations = proxyDeployment(r()).spec.template.metadata.annotations;
    expect(Number(annotations['prometheus.io/port'])).toBe(port(formatHostPort(config.metricsListen!)));
  });

  it('probes the proxy with gRPC health checks on its listen port', () => {
    const config = proxyConfig(r());
    const c = proxyContainer(r());
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe'])
      expect(c[probe]?.grpc?.port).toBe(port(formatHostPort(config.listen)));
  });

  it('probes every store server container', () => {
    // gc is a timer, not a server: there is nothing to probe.
    for (const c of storeSet(r()).spec.template.spec.containers.filter((c: Manifest) => c.name !== 'gc')) {
      expect(c.readinessProbe, c.name).toBeDefined();
      expect(c.livenessProbe, c.name).toBeDefined();
    }
  });

  it('runs the proxy as the image user, unprivileged, on a read-only root', () => {
    const pod = proxyDeployment(r()).spec.template.spec;
    const [uid, gid] = only(proxyImage, 'USER').args.split(':').map(Number);
    expect(uid).toBeGreaterThan(0);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: uid, runAsGroup: gid });
    expect(proxyContainer(r()).securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it('gives every container CPU and memory requests and limits, and none is privileged', () => {
    for (const c of allContainers(r().resources)) {
      for (const kind of ['requests', 'limits']) {
        expect(c.resources?.[kind]?.cpu, `${c.name} ${kind}.cpu`).toBeDefined();
        expect(c.resources?.[kind]?.memory, `${c.name} ${kind}.memory`).toBeDefined();
      }
      expect(c.securityContext?.privileged, c.name).not.toBe(true);
    }
    expect(storeContainer(r(), 'nfs').securityContext.capabilities).toEqual({
      drop: ['ALL'],
      add: ['DAC_READ_SEARCH', 'SYS_RESOURCE', 'CHOWN', 'FOWNER', 'SETUID', 'SETGID'],
    });
  });

  it('runs the HTTP/2 front the image ships, sending to the cluster what the proxy sends upstream', () => {
    const front = frontContainer(r());
    const config = proxyConfig(r());
    expect(front.image).toBe(proxyContainer(r()).image);
    const [program, , , cfg] = front.command as string[];
    expect(program).toBe('haproxy');
    expect(
      proxyImage.instructions.some((i) => i.keyword === 'RUN' && /apt-get install[^&]*\bhaproxy\b/.test(i.args)),
    ).toBe(true);
    expect(
      proxyImage.instructions.some((i) => i.keyword === 'COPY' && i.args === `deploy/front/haproxy.cfg ${cfg}`),
    ).toBe(true);
    const cluster = envOf(front, 'CLUSTER_ADDR').valueFrom.configMapKeyRef;
    expect(cluster.name).toBe('nix-reapi-proxy-config');
    const address = find(r().resources, 'ConfigMap', cluster.name).data[cluster.key];
    expect(`grpc://${address}`).toBe(config.upstream.url);
    expect(front.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
  });

  it.skipIf(!spawnSync('sh', ['-c', 'command -v haproxy']).stdout.length)(
    'gives HAProxy a config it accepts with the pod environment',
    () => {
      const front = frontContainer(r());
      const env: Record<string, string> = { PATH: process.env.PATH! };
      for (const e of front.env)
        env[e.name] =
          e.value ??
          find(r().resources, 'ConfigMap', e.valueFrom.configMapKeyRef.name).data[e.valueFrom.configMapKeyRef.key];
      const check = spawnSync('haproxy', ['-c', '-f', path.join(ROOT, 'deploy', 'front', 'haproxy.cfg')], {
        env,
        encoding: 'utf8',
      });
      expect(check.stdout + check.stderr).toContain('Configuration file is valid');
      expect(check.status).toBe(0);
    },
  );

  it("keeps GC roots on: gcRootsDir is the store server's gcroots/nix-reapi-proxy, exported read-write to the proxy", () => {
    const config = proxyConfig(r());
    const parsed = parseSharedStoreUrl(config.sharedStore!.url);
    expect(parsed.ok).toBe(true);
    // Without gcRootsDir an ssh-ng store has roots off; the shipped config turns them on.
    expect(rootLocation((parsed as { store: Parameters<typeof rootLocation>[0] }).store).on).toBe(false);
    expect(rootLocation((parsed as { store: Parameters<typeof rootLocation>[0] }).store, config.gcRootsDir).on).toBe(
      true,
    );
    const pod = proxyDeployment(r()).spec.template.spec;
    const mount = mountOf(proxyContainer(r()), config.gcRootsDir!);
    expect(mount.readOnly).not.toBe(true);
    const claim = volumeOf(pod, mount.name).persistentVolumeClaim.claimName;
    const pvc = find(r().resources, 'PersistentVolumeClaim', claim);
    const pv = find(r().resources, 'PersistentVolume', pvc.spec.volumeName);
    expect(pv.spec.accessModes).toEqual(['ReadWriteMany']);
    expect(pv.spec.nfs.server).toBe(find(r().resources, 'Service', 'nix-store').spec.clusterIP);
    // The export behind that PV: the store's own roots directory, written as the proxy's uid.
    const ganesha = find(r().resources, 'ConfigMap', 'nix-store-config').data['ganesha.conf'] as string;
    const exports = [...ganesha.matchAll(/(?:^|\n)EXPORT \{([\s\S]*?)\n\}/g)].map((m) => m[1]!);
    const rw = exports.find((e) => e.includes(`Pseudo = ${pv.spec.nfs.path};`))!;
    expect(rw).toMatch(/Access_Type = RW;/);
    const storeSide = rootLocation({ kind: 'daemon', url: 'daemon', params: {} } as unknown as Parameters<
      typeof rootLocation
    >[0]);
    expect(storeSide.on && rw.includes(`Path = ${storeSide.dir};`)).toBe(true);
    expect(rw).toContain(`Anonymous_Uid = ${pod.securityContext.runAsUser};`);
    // The NFS server may write there (and only there); an init container makes it, owned by that uid.
    expect(mountOf(storeContainer(r(), 'nfs'), storeSide.on ? storeSide.dir : '')).toMatchObject({
      name: 'nix',
      subPath: 'var/nix/gcroots/nix-reapi-proxy',
    });
    const init = storeSet(r()).spec.template.spec.initContainers.find((c: Manifest) => c.name === 'init-gcroots');
    expect(init.command).toEqual(
      expect.arrayContaining(['-o', String(pod.securityContext.runAsUser), storeSide.on ? storeSide.dir : '']),
    );
  });

  it('collects garbage on the store server on a timer, pruning with the retention the proxies use', () => {
    const gc = storeContainer(r(), 'gc');
    const config = proxyConfig(r());
    expect(gc.image).toBe(proxyContainer(r()).image);
    expect(gc.command[2]).toContain('/opt/nix-reapi-proxy/dist/src/cli.js prune "$@"');
    expect(gc.command[2]).toContain('sleep "$GC_EVERY"');
    const loaded = loadConfig({ argv: ['prune', ...gc.args], env: {}, cwd: tmp });
    expect(loaded.command).toBe('prune');
    expect(gc.args).toContain('--gc');
    expect(loaded.config.sharedStore?.url).toBe('daemon');
    const unusedFor = gc.args[gc.args.indexOf('--unused-for') + 1];
    expect(
      loadConfig({ argv: ['--upstream', 'grpc://x:1', '--root-retention', unusedFor], env: {}, cwd: tmp }).config
        .rootRetentionMs,
    ).toBe(config.rootRetentionMs);
    expect(mountOf(gc, '/nix').readOnly).not.toBe(true);
    expect(envOf(gc, 'GC_EVERY').value).toMatch(/^\d+[smhd]$/);
  });

  it('lets in-flight calls drain before the pod is killed', () => {
    const grace = proxyDeployment(r()).spec.template.spec.terminationGracePeriodSeconds;
    expect(grace * 1000).toBeGreaterThan(proxyConfig(r()).shutdownGraceMs);
  });

  it('reaches the store server over ssh-ng with the SSH settings the pod mounts', () => {
    const config = proxyConfig(r());
    const m = /^ssh-ng:\/\/([^@]+)@([^?/]+)$/.exec(config.sharedStore!.url)!;
    expect(m).not.toBeNull();
    const [, user, host] = m;
    const storeService = find(r().resources, 'Service', host!);
    const c = proxyContainer(r());
    const pod = proxyDeployment(r()).spec.template.spec;

    const sshOpts = c.env.find((e: Manifest) => e.name === 'NIX_SSHOPTS').value as string;
    const configFile = /^-F (\S+)$/.exec(sshOpts)![1]!;
    const configMount = mountOf(c, path.dirname(configFile));
    expect(volumeOf(pod, configMount.name).configMap.name).toBe('nix-reapi-proxy-config');
    const cm = find(r().resources, 'ConfigMap', 'nix-reapi-proxy-config');
    const sshConfig = cm.data[path.basename(configFile)] as string;
    expect(sshConfig.split('\n')[0]).toBe(`Host ${host}`);
    const opts = sshOptions(sshConfig);
    expect(opts.user).toBe(user);
    expect(Number(opts.port)).toBe(storeService.spec.ports.find((p: Manifest) => p.name === 'ssh').port);
    expect(opts.stricthostkeychecking).toBe('yes');
    for (const key of ['identityfile', 'userknownhostsfile']) {
      const mount = mountOf(c, path.dirname(opts[key]!));
      const secret = volumeOf(pod, mount.name).secret;
      expect(secret, key).toBeDefined();
      expect(DEPLOYMENT_DOC).toContain(secret.secretName);
      expect(DEPLOYMENT_DOC).toContain(path.basename(opts[key]!));
    }

    const sshd = sshOptions(find(r().resources, 'ConfigMap', 'nix-store-config').data.sshd_config);
    expect(sshd.allowusers).toBe(user);
    expect(Number(sshd.port)).toBe(containerPort(storeContainer(r(), 'sshd'), 'ssh'));
    const storePod = storeSet(r()).spec.template.spec;
    for (const key of ['hostkey', 'authorizedkeysfile']) {
      const mount = mountOf(storeContainer(r(), 'sshd'), path.dirname(sshd[key]!));
      const secret = volumeOf(storePod, mount.name).secret;
      expect(DEPLOYMENT_DOC).toContain(secret.secretName);
      expect(DEPLOYMENT_DOC).toContain(path.basename(sshd[key]!));
    }
    const nixConf = find(r().resources, 'ConfigMap', 'nix-store-config').data['nix.conf'] as string;
    expect(nixConf).toMatch(new RegExp(`^trusted-users = .*\\b${user}\\b`, 'm'));
  });

  it('admits SSH to the store server from the proxy pods only', () => {
    const policy = find(r().resources, 'NetworkPolicy', 'nix-store');
    expect(policy.spec.podSelector.matchLabels).toEqual(storeSet(r()).spec.template.metadata.labels);
    const ssh = policy.spec.ingress.find((rule: Manifest) => rule.ports.some((p: Manifest) => p.port === 22));
    expect(ssh.from).toEqual([{ podSelector: { matchLabels: proxyDeployment(r()).spec.template.metadata.labels } }]);
  });

  it('exports /nix/store read-only over NFS at the address the volume names', () => {
    const pv = find(r().resources, 'PersistentVolume', 'nix-store-nfs');
    const pvc = find(r().resources, 'PersistentVolumeClaim', 'nix-store-nfs');
    const service = find(r().resources, 'Service', 'nix-store');
    expect(pv.spec.nfs).toEqual({ server: service.spec.clusterIP, path: '/nix/store', readOnly: true });
    expect(pv.spec.mountOptions).toEqual(expect.arrayContaining(['ro', 'lookupcache=positive']));
    expect(pv.spec.accessModes).toEqual(['ReadOnlyMany']);
    expect(pvc.spec).toMatchObject({
      volumeName: pv.metadata.name,
      accessModes: ['ReadOnlyMany'],
      storageClassName: '',
    });
    expect(service.spec.ports.find((p: Manifest) => p.port === 2049).targetPort).toBe('nfs');
    expect(containerPort(storeContainer(r(), 'nfs'), 'nfs')).toBe(2049);

    const ganesha = find(r().resources, 'ConfigMap', 'nix-store-config').data['ganesha.conf'] as string;
    expect(ganesha).toMatch(/NFS_Port = 2049;/);
    const exportBlock = /EXPORT \{([\s\S]*?)\n\}/.exec(ganesha)![1]!;
    expect(exportBlock).toMatch(/Path = \/nix\/store;/);
    expect(exportBlock).toMatch(/Pseudo = \/nix\/store;/);
    expect(exportBlock).toMatch(/Access_Type = RO;/);
    // The NFS server only reads the store volume; the daemon is its one writer.
    expect(mountOf(storeContainer(r(), 'nfs'), '/nix').readOnly).toBe(true);
  });

  it("waits for paths to show where executors see them: the same export, mounted in the proxy's pod", () => {
    const config = proxyConfig(r());
    const mount = mountOf(proxyContainer(r()), config.visibleAt!);
    expect(mount.readOnly).toBe(true);
    expect(volumeOf(proxyDeployment(r()).spec.template.spec, mount.name).persistentVolumeClaim).toEqual({
      claimName: 'nix-store-nfs',
      readOnly: true,
    });
  });

  it('mounts the export read-only at /nix/store in the container that runs actions, on every worker', () => {
    const k = parseYamlDocuments(path.join(K8S, overlay, 'kustomization.yaml'))[0]!;
    const patchEntry = k.patches.find((p: Manifest) => p.path === 'worker-nix-store.yaml');
    const patch = parseYamlDocuments(path.join(K8S, overlay, patchEntry.path))[0]!;
    const upstream = parseYamlDocuments(path.join(__dirname, 'fixtures', expected.fixture));
    const patched = upstream.map((d) =>
      matchesTarget(d, patchEntry.target) ? strategicMerge(d, { ...patch, metadata: d.metadata }) : d,
    );

    for (const name of expected.workers) {
      const spec = find(patched, 'Deployment', name).spec.template.spec;
      const original = find(upstream, 'Deployment', name).spec.template.spec;
      const runner = spec.containers.find((c: Manifest) => c.name === expected.runner);
      const mount = mountOf(runner, '/nix/store');
      expect(mount).toMatchObject({ readOnly: true });
      expect(volumeOf(spec, mount.name).persistentVolumeClaim).toEqual({
        claimName: find(render(overlay).resources, 'PersistentVolumeClaim', 'nix-store-nfs').metadata.name,
        readOnly: true,
      });
      // Nothing upstream had is lost or changed.
      expect(runner.volumeMounts.slice(0, -1)).toEqual(
        original.containers.find((c: Manifest) => c.name === expected.runner).volumeMounts,
      );
      expect(spec.volumes.slice(0, -1)).toEqual(original.volumes);
      expect(spec.containers.map((c: Manifest) => c.name)).toEqual(original.containers.map((c: Manifest) => c.name));
      for (const other of spec.containers.filter((c: Manifest) => c.name !== expected.runner))
        expect(mountOf(other, '/nix/store')).toBeUndefined();
    }
    for (const name of expected.others)
      expect(find(patched, 'Deployment', name)).toEqual(find(upstream, 'Deployment', name));
  });
});

describe('the buildbarn overlay', () => {
  it("brings in bb-deployments' manifests, whose frontend it fronts", () => {
    expect(render('buildbarn').remote).toEqual([
      expect.stringMatching(/^https:\/\/github\.com\/buildbarn\/bb-deployments\/\/kubernetes\?ref=/),
    ]);
    expect(proxyConfig(render('buildbarn')).maxMessageBytes).toBe(2 * 1024 * 1024);
  });
});

describe('the base', () => {
  it('names an image for every container, each built by a Dockerfile in this repository', () => {
    const base = parseYamlDocuments(path.join(K8S, 'base', 'kustomization.yaml'))[0]!;
    const names = base.images.map((i: Manifest) => i.name).sort();
    expect(names).toEqual(['nix-reapi-proxy', 'nix-store-server']);
    for (const i of base.images) expect(i.newTag).toBe(PACKAGE_VERSION);
    const used = new Set(allContainers(render('base').resources).map((c) => c.image.replace(/:[^:/]+$/, '')));
    expect([...used].sort()).toEqual(base.images.map((i: Manifest) => i.newName).sort());
  });

  it('runs the store server containers from programs its image installs', () => {
    const storeImage = parseDockerfile(path.join(ROOT, 'deploy', 'nix-store-server', 'Dockerfile')).stages.at(-1)!;
    expect(storeImage.image).toBe('debian:bookworm-slim');
    const apt = storeImage.instructions.find((i) => i.keyword === 'RUN' && i.args.includes('apt-get install'))!.args;
    const programs: Record<string, string> = {
      'nix-store': 'nix-bin',
      'nix-daemon': 'nix-bin',
      nix: 'nix-bin',
      '/usr/sbin/sshd': 'openssh-server',
      'ganesha.nfsd': 'nfs-ganesha',
    };
    expect(apt).toContain('nfs-ganesha-vfs');
    for (const { spec } of podSpecs(render('base').resources).filter(({ owner }) => owner.kind === 'StatefulSet')) {
      for (const c of [...spec.initContainers, ...spec.containers]) {
        // The gc container runs the proxy's own image (its prune command).
        if (c.image.includes('nix-reapi-proxy')) continue;
        if (c.command?.[0] === 'install') continue; // coreutils, essential in every Debian image
        const program = (c.command ?? execForm(only(storeImage, 'CMD')))[0];
        expect(programs[program], `${c.name}: ${program}`).toBeDefined();
        expect(apt).toContain(programs[program]);
      }
    }
    // The ssh user and the daemon's trusted user are the account the image creates.
    expect(storeImage.instructions.some((i) => i.keyword === 'RUN' && /useradd .*nix-proxy/.test(i.args))).toBe(true);
  });

  it('keeps the config files of the overlays in step with the base apart from the backend', () => {
    const strip = (text: string) => YAML.parse(text, { version: '1.1' }) as Record<string, unknown>;
    const base = strip(find(render('base').resources, 'ConfigMap', 'nix-reapi-proxy-config').data['config.yaml']);
    for (const overlay of ['buildbarn', 'nativelink'] as const) {
      const own = strip(find(render(overlay).resources, 'ConfigMap', 'nix-reapi-proxy-config').data['config.yaml']);
      const { upstream: _u1, maxMessageBytes: _m1, ...rest } = own;
      const { upstream: _u2, ...baseRest } = base;
      expect(rest, overlay).toEqual(baseRest);
    }
  });
});
