/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench --
 * --cpu-prof`): where the proxy's CPU time goes, by function (self time) and by
 * source file, so per-call work can be found without a GUI.
 *
 *   node dist/bench/bench/profile-summary.js .bench-out/profiles/CPU.*.cpuprofile [--top 40] [--callers NAME]
 *
 * Percentages are of busy time (idle excluded). --callers NAME lists the call
 * paths (3 frames up) that lead to functions whose name contains NAME.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const file = f.url ? path.basename(f.url.replace(/^file:\/\//, '')) : '';
  return `${f.functionName || '(anonymous)'} ${file}${file ? `:${f.lineNumber + 1}` : ''}`;
}

function main(): void {
  // Piped into head: stop quietly when the reader goes away.
  process.stdout.on('error', () => process.exit(0));
  const file = process.argv[2];
  if (!file) throw new Error('usage: profile-summary.js FILE.cpuprofile [--top N]');
  const topArg = process.argv.indexOf('--top');
  const top = topArg > 0 ? Number(process.argv[topArg + 1]) : 40;
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let total = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const selfBy = new Map<string, number>();
  const inclBy = new Map<string, number>();
  const fileBy = new Map<string, number>();
  for (const [id, t] of self) {
    const n = byId.get(id)!;
    selfBy.set(label(n), (selfBy.get(label(n)) ?? 0) + t);
    const url = n.callFrame.url || `(${n.callFrame.functionName || 'vm'})`;
    const key = url.includes('/node_modules/')
      ? url.slice(url.indexOf('/node_modules/') + 14).split('/')[0]!
      : url.replace(/^.*\/(dist|lib)\//, '$1/');
    fileBy.set(key, (fileBy.get(key) ?? 0) + t);
    // Inclusive: count once per distinct function on the stack.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!);
      if (seen.has(l)) continue;
      seen.add(l);
      inclBy.set(l, (inclBy.get(l) ?? 0) + t);
    }
  }
  const idle = selfBy.get('(idle) ') ?? 0;
  const busy = total - idle;
  const pct = (t: number): string => `${((t / busy) * 100).toFixed(1).padStart(5)}%`;
  selfBy.delete('(idle) ');
  inclBy.delete('(idle) ');
  inclBy.delete('(root) ');
  fileBy.delete('((idle))');
  const show = (title: string, m: Map<string, number>): void => {
    process.stdout.write(`\n${title}\n`);
    for (const [k, t] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(t)}  ${k}\n`);
  };
  process.stdout.write(`${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy\n`);
  const callersArg = process.argv.indexOf('--callers');
  if (callersArg > 0) {
    const name = process.argv[callersArg + 1] ?? '';
    const paths = new Map<string, number>();
    for (const [id, t] of self) {
      const chain: string[] = [];
      let hit = false;
      for (let cur: number | undefined = id; cur !== undefined && chain.length < 64; cur = parent.get(cur)) {
        const n = byId.get(cur)!;
        if (!hit && n.callFrame.functionName.includes(name)) hit = true;
        if (hit) chain.push(label(n));
        if (chain.length >= 4) break;
      }
      if (hit) paths.set(chain.join(' <- '), (paths.get(chain.join(' <- ')) ?? 0) + t);
    }
    show(`call paths through ${name}`, paths);
  }
  show('self time by function', selfBy);
  show('self time by file', fileBy);
  show('inclusive time by function', inclBy);
}

main();
