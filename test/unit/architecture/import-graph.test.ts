import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The folders of src/ import each other only the ways docs/architecture.md
 * allows, and those ways have no cycle. The table in the doc is the rule:
 * change it there, with a reason, to allow a new direction.
 */

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SRC = path.join(ROOT, 'src');

/** folder -> folders it may import, from the doc's import-rules table. */
function allowedImports(): Map<string, Set<string>> {
  const doc = readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8');
  const table = doc.slice(doc.indexOf('<!-- import-rules'));
  const rules = new Map<string, Set<string>>();
  for (const line of table.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const folder = /^`([a-z]+)`$/.exec(cells[1] ?? '')?.[1];
    if (!folder) {
      if (rules.size > 0 && !line.startsWith('|')) break;
      continue;
    }
    const allowed =
      cells[3] === 'everything below it' ? ['*'] : [...(cells[3] ?? '').matchAll(/`([a-z]+)`/g)].map((m) => m[1]!);
    rules.set(folder, new Set(allowed));
  }
  return rules;
}

/** The folder (or top-level file without .ts) a path under src/ belongs to. */
function unitOf(file: string): string {
  return path.relative(SRC, file).split(path.sep)[0]!.replace(/\.ts$/, '');
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every import between two different units: "from -> to" -> the files doing it. */
function actualImports(): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = path.resolve(path.dirname(file), m[1]!);
      const [from, to] = [unitOf(file), unitOf(target)];
      if (from === to) continue;
      const key = `${from} -> ${to}`;
      edges.set(key, [...(edges.get(key) ?? []), path.relative(ROOT, file)]);
    }
  }
  return edges;
}

describe('import graph of src/', () => {
  const rules = allowedImports();

  it('the doc has a rule for every folder and top-level file of src/', () => {
    const units = new Set(sourceFiles(SRC).map(unitOf));
    expect([...units].filter((u) => !rules.has(u)).sort()).toEqual([]);
    expect(rules.size).toBeGreaterThanOrEqual(15);
  });

  it('every import goes a way the doc allows', () => {
    const forbidden = [...actualImports()]
      .filter(([edge]) => {
        const [from, to] = edge.split(' -> ') as [string, string];
        const allowed = rules.get(from);
        return !allowed || !(allowed.has('*') || allowed.has(to));
      })
      .map(([edge, files]) => `${edge} (${files.slice(0, 3).join(', ')})`);
    expect(forbidden).toEqual([]);
  });

  it('the allowed directions have no cycle', () => {
    const order: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const cycles: string[] = [];
    const visit = (u: string, trail: string[]): void => {
      if (state.get(u) === 'done') return;
      if (state.get(u) === 'visiting') {
        cycles.push([...trail.slice(trail.indexOf(u)), u].join(' -> '));
        return;
      }
      state.set(u, 'visiting');
      const allowed = rules.get(u) ?? new Set<string>();
      const next = allowed.has('*') ? [] : [...allowed];
      for (const v of next) visit(v, [...trail, u]);
      state.set(u, 'done');
      order.push(u);
    };
    for (const u of rules.keys()) visit(u, []);
    expect(cycles).toEqual([]);
  });
});
