/**
 * Scenarios 3, 4 and 5: the Nix-aware Execute, through a proxy with a real
 * chroot shared store, the host store as its substituter, and logging
 * nix/nix-store wrappers that count the Nix processes it starts.
 */
import type { Blob } from '../common/bench-data';
import { benchAction, type BenchAction } from '../common/execute-trees';
import { connect } from '../load/http2-client';
import type { ExecuteBatchJob } from '../load/execute-batch';
import { uploadBlobs } from '../load/seed-upstream';
import type { UnaryJob } from '../load/unary-load';
import { compare, measure, type Endpoints, type LoadResult } from './compare-runs';
import type { ExecuteLog, ExecuteLine } from './execute-log';
import { median } from '../common/stats';
import { summarizeRuns, type RunMeasure } from './measurement';
import { isRealisation, isValidityQuery, type NixRig } from './nix-rig';
import type { Profile } from './profiles';
import { addedMedianOf, ratioOf, type ScenarioReport } from './scenario-report';

export interface NixScenarioContext {
  ends: Endpoints;
  rig: NixRig;
  log: ExecuteLog;
  profile: Profile;
  fixtures: NixFixtures;
  progress: (msg: string) => void;
  judge: boolean;
}

export interface NixFixtures {
  /** A tool every warm action runs (scenario 3). */
  tool: string;
  /** Per cold round: the store paths its input files mention (already valid on the shared store). */
  treeRefs: string[][];
  /** Tops of two fresh closures of `closurePaths` paths each: one realised alone, one by 100 actions at once. */
  closureAlone: string;
  closureShared: string;
}

const calls = (r: LoadResult): number => Number(r.calls ?? 0);
const LOG_WAIT_MS = 120_000;

/** Builds every store path the scenarios need in one go (one derivation, many outputs: seconds, not minutes). */
export async function buildNixFixtures(rig: NixRig, profile: Profile, rounds: number): Promise<NixFixtures> {
  const { treeRefs, closurePaths } = profile.execute;
  const spec: Array<{ name: string; deps?: string[] }> = [{ name: 'tool' }];
  for (let r = 0; r < rounds; r++) for (let i = 0; i < treeRefs; i++) spec.push({ name: `ref-${r}-${i}` });
  for (const c of ['alone', 'shared']) {
    const deps = Array.from({ length: closurePaths - 1 }, (_, i) => `${c}-dep-${i}`);
    for (const d of deps) spec.push({ name: d });
    spec.push({ name: `${c}-top`, deps });
  }
  const built = await rig.build(spec);
  const fixtures: NixFixtures = {
    tool: built.tool!,
    treeRefs: Array.from({ length: rounds }, (_, r) =>
      Array.from({ length: treeRefs }, (_, i) => built[`ref-${r}-${i}`]!),
    ),
    closureAlone: built['alone-top']!,
    closureShared: built['shared-top']!,
  };
  // Cold rounds measure the tree walk and the one validity query, not copying: their paths are there already.
  await rig.preload(fixtures.treeRefs.flat());
  return fixtures;
}

async function upload(target: string, blobs: readonly Blob[]): Promise<void> {
  const session = await connect(target);
  try {
    await uploadBlobs(session, blobs);
  } finally {
    session.close();
  }
}

function executeJob(target: string, action: BenchAction, n: number, warmup: number, concurrency = 1): UnaryJob {
  return {
    kind: 'unary',
    target,
    method: 'execute',
    concurrency,
    calls: n,
    warmupCalls: warmup,
    maxMs: 600_000,
    action: { hash: action.action.hash, size: action.action.size },
  };
}

/** Scenario 3: Execute of an action whose tree the proxy has seen and whose paths it knows valid. */
export async function warmExecute(ctx: NixScenarioContext): Promise<ScenarioReport[]> {
  const title = 'Execute, warm (tree seen before, paths known valid), concurrency 1';
  ctx.progress(`scenario 3: ${title}`);
  const action = benchAction({ files: 10, directories: 3 }, [], [ctx.fixtures.tool], `warm-${Date.now()}`);
  await upload(ctx.ends.upstream.listen, action.blobs);
  // The first Execute is the cold one: it reads the tree and makes the tool valid on the shared store.
  await measure(ctx.ends, 'proxy', -1, executeJob(ctx.ends.proxy.listen, action, 1, 0), calls, LOG_WAIT_MS);
  const first = await ctx.log.first(action.action.hash, LOG_WAIT_MS);
  const before = ctx.rig.invocations().length;
  const n = ctx.profile.execute.warmCalls;
  const runs = await compare(
    ctx.ends,
    ctx.profile.rounds,
    (t) => executeJob(t, action, n, Math.min(200, n)),
    calls,
    600_000,
    ctx.progress,
  );
  const nixProcesses = ctx.rig.invocations().length - before;
  const rows = [summarizeRuns(runs, 'direct', 'calls/s'), summarizeRuns(runs, 'proxy', 'calls/s')];
  const added = addedMedianOf(rows);
  const errorsFree = rows.every((r) => r.errors === 0);
  return [
    {
      id: '3-execute-warm',
      scenario: 3,
      title,
      rows,
      ratio: ratioOf(rows),
      addedMedianMs: added,
      target: 'added median latency <= 1 ms, zero Nix processes started',
      met: ctx.judge ? errorsFree && nixProcesses === 0 && added !== null && added <= 1 : null,
      detail: {
        nixProcessesDuringWarmRuns: nixProcesses,
        firstExecuteRealised: first.realised ?? null,
        firstExecuteOutcome: first.outcome ?? null,
      },
      runs,
    },
  ];
}

/** Scenario 4: the first Execute of a big input tree: walk speed and store queries. */
export async function coldExecute(ctx: NixScenarioContext): Promise<ScenarioReport[]> {
  const { treeFiles, treeDirs, treeRefs } = ctx.profile.execute;
  const title = `Execute, cold: ${treeFiles} files in ${treeDirs} directories, ${treeRefs} store references`;
  ctx.progress(`scenario 4: ${title}`);
  const runs: RunMeasure[] = [];
  const perRound: Array<{
    nodes: number;
    walkMs: number;
    prepareMs: number;
    nodesPerSecond: number;
    storeQueries: number;
    realisations: number;
    outcome: string;
  }> = [];
  for (const [round, refs] of ctx.fixtures.treeRefs.entries()) {
    const action = benchAction({ files: treeFiles, directories: treeDirs }, refs, [], `cold-${round}-${Date.now()}`);
    await upload(ctx.ends.upstream.listen, action.blobs);
    runs.push(
      await measure(ctx.ends, 'direct', round, executeJob(ctx.ends.upstream.listen, action, 1, 0), calls, LOG_WAIT_MS),
    );
    const before = ctx.rig.invocations().length;
    const m = await measure(
      ctx.ends,
      'proxy',
      round,
      executeJob(ctx.ends.proxy.listen, action, 1, 0),
      calls,
      LOG_WAIT_MS,
    );
    runs.push(m);
    const line: ExecuteLine = await ctx.log.first(action.action.hash, LOG_WAIT_MS);
    const during = ctx.rig.invocations().slice(before);
    const walkMs = line.ms?.walk ?? NaN;
    const nodes = line.tree?.nodes ?? NaN;
    const r = {
      nodes,
      walkMs,
      prepareMs: (line.ms?.total ?? NaN) - (line.ms?.forward ?? 0),
      nodesPerSecond: Math.round(nodes / (Math.max(1, walkMs) / 1000)),
      storeQueries: during.filter(isValidityQuery).length,
      realisations: during.filter(isRealisation).length,
      outcome: line.outcome ?? 'unknown',
    };
    perRound.push(r);
    ctx.progress(
      `  round ${round + 1}: ${r.nodes} nodes walked in ${r.walkMs} ms (${r.nodesPerSecond}/s), preparation ${r.prepareMs} ms, ${r.storeQueries} store queries, ${r.realisations} realisations, outcome ${r.outcome}`,
    );
  }
  const rows = [summarizeRuns(runs, 'direct', 'calls/s'), summarizeRuns(runs, 'proxy', 'calls/s')];
  const worstRate = Math.min(...perRound.map((r) => r.nodesPerSecond));
  const queriesOk = perRound.every((r) => r.storeQueries === 1 && r.outcome === 'ready');
  return [
    {
      id: '4-execute-cold',
      scenario: 4,
      title,
      rows,
      ratio: null,
      addedMedianMs: addedMedianOf(rows),
      target: 'tree walk >= 50,000 nodes/s, one store query per Execute',
      met: ctx.judge ? rows.every((r) => r.errors === 0) && queriesOk && worstRate >= 50_000 : null,
      detail: { rounds: perRound },
      runs,
    },
  ];
}

/** Scenario 5: 100 concurrent Executes that all need one missing closure: one realisation, shared. */
export async function singleFlight(ctx: NixScenarioContext): Promise<ScenarioReport[]> {
  const { concurrent, closurePaths } = ctx.profile.execute;
  const title = `${concurrent} concurrent Executes needing one missing closure of ${closurePaths} paths`;
  ctx.progress(`scenario 5: ${title}`);
  const stamp = Date.now();
  // One realisation alone: the yardstick.
  const alone = benchAction({ files: 2, directories: 1 }, [], [ctx.fixtures.closureAlone], `alone-${stamp}`);
  await upload(ctx.ends.upstream.listen, alone.blobs);
  const beforeAlone = ctx.rig.invocations().length;
  const single = await measure(
    ctx.ends,
    'proxy',
    0,
    executeJob(ctx.ends.proxy.listen, alone, 1, 0),
    calls,
    LOG_WAIT_MS,
  );
  const aloneRealisations = ctx.rig.invocations().slice(beforeAlone).filter(isRealisation).length;
  const aloneMs = single.latency?.medianMs ?? NaN;
  ctx.progress(
    `  one Execute realising the closure alone: ${aloneMs.toFixed(0)} ms, ${aloneRealisations} realisation(s)`,
  );

  const actions = Array.from({ length: concurrent }, (_, i) =>
    benchAction({ files: 2, directories: 1 }, [], [ctx.fixtures.closureShared], `shared-${stamp}-${i}`),
  );
  await upload(
    ctx.ends.upstream.listen,
    actions.flatMap((a) => a.blobs),
  );
  const batch = (target: string): ExecuteBatchJob => ({
    kind: 'execute-batch',
    target,
    actions: actions.map((a) => ({ hash: a.action.hash, size: a.action.size })),
    maxMs: 600_000,
  });
  const runs: RunMeasure[] = [];
  runs.push(await measure(ctx.ends, 'direct', 0, batch(ctx.ends.upstream.listen), calls, LOG_WAIT_MS + 600_000));
  const before = ctx.rig.invocations().length;
  const proxied = await measure(ctx.ends, 'proxy', 0, batch(ctx.ends.proxy.listen), calls, LOG_WAIT_MS + 600_000);
  runs.push(proxied);
  const during = ctx.rig.invocations().slice(before);
  const realisations = during.filter(isRealisation).length;
  const totalMs = proxied.durationMs;
  // Where the time went, per action, from the proxy's own "execute" lines.
  const lines = await Promise.all(actions.map((a) => ctx.log.first(a.action.hash, LOG_WAIT_MS)));
  const steps = stepSummary(lines);
  ctx.progress(
    `  per action (median / max ms): ${Object.entries(steps)
      .map(([k, v]) => `${k} ${v.median}/${v.max}`)
      .join(', ')}; ${during.filter(isValidityQuery).length} validity queries`,
  );
  ctx.progress(`  ${concurrent} at once: all done in ${totalMs.toFixed(0)} ms, ${realisations} realisation(s)`);
  const rows = [summarizeRuns(runs, 'direct', 'calls/s'), summarizeRuns(runs, 'proxy', 'calls/s')];
  const factor = totalMs / aloneMs;
  return [
    {
      id: '5-single-flight',
      scenario: 5,
      title,
      rows,
      ratio: null,
      addedMedianMs: addedMedianOf(rows),
      target: 'exactly one realisation; all done within 1.5x one realisation alone',
      met: ctx.judge
        ? rows.every((r) => r.errors === 0) && single.errors === 0 && realisations === 1 && factor <= 1.5
        : null,
      detail: {
        realisations,
        aloneMs: Math.round(aloneMs),
        aloneRealisations,
        allDoneMs: Math.round(totalMs),
        timesOneRealisation: Math.round(factor * 100) / 100,
        validityQueries: during.filter(isValidityQuery).length,
        nixProcesses: during.length,
        perActionMs: steps,
      },
      runs: [single, ...runs],
    },
  ];
}

/** Median and max of each step the proxy timed, over many Executes. */
function stepSummary(lines: readonly ExecuteLine[]): Record<string, { median: number; max: number }> {
  const out: Record<string, { median: number; max: number }> = {};
  for (const step of ['read', 'walk', 'check', 'realise', 'ensure', 'forward', 'total'] as const) {
    const values = lines.map((l) => l.ms?.[step]).filter((v): v is number => typeof v === 'number');
    if (values.length > 0) out[step] = { median: Math.round(median(values)), max: Math.max(...values) };
  }
  return out;
}
