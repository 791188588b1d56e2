import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

/**
 * Just enough of `kustomize build` to check our manifests without the
 * kustomize binary: local resources (files and directories), remote
 * resources (recorded, not fetched), `namespace`, `images`, and `patches`
 * as strategic-merge patches, by name or by a target with kind and label
 * selector. Anything else in a kustomization.yaml is an error, so a feature
 * this renderer does not implement cannot be silently ignored.
 *
 * Manifests are parsed as YAML 1.1, as Kubernetes does (0440 is octal).
 */

export type Manifest = Record<string, any>;

export interface Rendered {
  resources: Manifest[];
  /** Remote resources named by the kustomization (URLs), in order. */
  remote: string[];
}

const ALLOWED_KEYS = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'patches', 'images']);
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'PersistentVolume',
  'ClusterRole',
  'ClusterRoleBinding',
  'StorageClass',
  'CustomResourceDefinition',
]);

/** Merge keys of the strategic-merge lists our patches touch; other lists are replaced. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  env: 'name',
  ports: 'containerPort',
};

export function parseYamlDocuments(file: string): Manifest[] {
  const docs = YAML.parseAllDocuments(readFileSync(file, 'utf8'), { version: '1.1' });
  const out: Manifest[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as Manifest | null;
    if (value !== null) out.push(value);
  }
  return out;
}

export function isRemote(resource: string): boolean {
  return /^(https?:\/\/|git@|github\.com\/)/.test(resource);
}

export function renderKustomization(dir: string): Rendered {
  const file = path.join(dir, 'kustomization.yaml');
  const [k] = parseYamlDocuments(file);
  if (!k || k.kind !== 'Kustomization') throw new Error(`${file}: not a Kustomization`);
  for (const key of Object.keys(k))
    if (!ALLOWED_KEYS.has(key)) throw new Error(`${file}: '${key}' is not supported by this renderer`);

  const resources: Manifest[] = [];
  const remote: string[] = [];
  for (const entry of (k.resources ?? []) as string[]) {
    if (isRemote(entry)) {
      remote.push(entry);
      continue;
    }
    const target = path.resolve(dir, entry);
    if (statSync(target).isDirectory()) {
      const sub = renderKustomization(target);
      resources.push(...sub.resources);
      remote.push(...sub.remote);
    } else {
      resources.push(...parseYamlDocuments(target));
    }
  }

  for (const p of (k.patches ?? []) as Array<{ path?: string; target?: Record<string, string> }>) {
    if (!p.path) throw new Error(`${file}: only patches with a path are supported`);
    const docs = parseYamlDocuments(path.resolve(dir, p.path));
    if (docs.length !== 1) throw new Error(`${p.path}: a patch file must hold one document`);
    const patch = docs[0]!;
    const matches = p.target
      ? resources.filter((r) => matchesTarget(r, p.target!))
      : resources.filter((r) => sameId(r, patch));
    if (!p.target && matches.length !== 1)
      throw new Error(`${p.path}: patch matches ${matches.length} resources by name`);
    for (const r of matches) {
      const merged = strategicMerge(r, { ...patch, metadata: { ...patch.metadata, name: r.metadata.name } });
      resources[resources.indexOf(r)] = merged;
    }
  }

  if (k.namespace) {
    for (const r of resources) if (!CLUSTER_SCOPED.has(r.kind)) r.metadata = { ...r.metadata, namespace: k.namespace };
  }

  for (const image of (k.images ?? []) as Array<{ name: string; newName?: string; newTag?: string }>) {
    for (const container of allContainers(resources)) {
      const [name, tag] = splitImage(container.image);
      if (name !== image.name) continue;
      container.image = `${image.newName ?? name}${image.newTag ? `:${image.newTag}` : tag ? `:${tag}` : ''}`;
    }
  }
  return { resources, remote };
}

function splitImage(image: string): [string, string | undefined] {
  const at = image.lastIndexOf(':');
  return at > image.lastIndexOf('/') ? [image.slice(0, at), image.slice(at + 1)] : [image, undefined];
}

function sameId(a: Manifest, b: Manifest): boolean {
  return a.kind === b.kind && a.metadata?.name === b.metadata?.name && groupOf(a.apiVersion) === groupOf(b.apiVersion);
}

function groupOf(apiVersion: string): string {
  return apiVersion.includes('/') ? apiVersion.split('/')[0]! : '';
}

export function matchesTarget(r: Manifest, target: Record<string, string>): boolean {
  const [group, version] = r.apiVersion.includes('/') ? r.apiVersion.split('/') : ['', r.apiVersion];
  if (target.kind && target.kind !== r.kind) return false;
  if (target.group !== undefined && target.group !== group) return false;
  if (target.version && target.version !== version) return false;
  // kustomize reads a target's name as a regular expression over the whole name.
  if (target.name && !new RegExp(`^(?:${target.name})$`).test(String(r.metadata?.name))) return false;
  if (target.labelSelector) {
    const labels = (r.metadata?.labels ?? {}) as Record<string, string>;
    for (const term of target.labelSelector.split(',')) {
      const m = /^\s*([^=!\s]+)\s*=\s*(\S+)\s*$/.exec(term);
      if (!m) throw new Error(`label selector term '${term}' is not key=value (all this renderer supports)`);
      if (labels[m[1]!] !== m[2]) return false;
    }
  }
  return true;
}

export function strategicMerge(base: any, patch: any, key?: string): any {
  if (Array.isArray(patch)) {
    const mergeKey = key ? MERGE_KEYS[key] : undefined;
    if (!mergeKey || !Array.isArray(base)) return structuredClone(patch);
    const out = structuredClone(base) as any[];
    for (const item of patch) {
      const i = out.findIndex((x) => x?.[mergeKey] === item?.[mergeKey]);
      if (i >= 0) out[i] = strategicMerge(out[i], item);
      else out.push(structuredClone(item));
    }
    return out;
  }
  if (patch !== null && typeof patch === 'object') {
    const out = base !== null && typeof base === 'object' && !Array.isArray(base) ? { ...base } : {};
    for (const [k, v] of Object.entries(patch)) out[k] = strategicMerge(out[k], v, k);
    return out;
  }
  return patch;
}

/** Pod specs of Deployments and StatefulSets. */
export function podSpecs(resources: Manifest[]): Array<{ owner: Manifest; spec: Manifest }> {
  return resources
    .filter((r) => r.kind === 'Deployment' || r.kind === 'StatefulSet')
    .map((owner) => ({ owner, spec: owner.spec.template.spec }));
}

export function allContainers(resources: Manifest[]): Manifest[] {
  return podSpecs(resources).flatMap(({ spec }) => [...(spec.initContainers ?? []), ...(spec.containers ?? [])]);
}

export function find(resources: Manifest[], kind: string, name: string): Manifest {
  const r = resources.find((x) => x.kind === kind && x.metadata?.name === name);
  if (!r)
    throw new Error(`no ${kind} ${name} among ${resources.map((x) => `${x.kind}/${x.metadata?.name}`).join(', ')}`);
  return r;
}

/** Every .yaml/.yml file below `dir`. */
export function yamlFilesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return yamlFilesUnder(p);
    return /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}
