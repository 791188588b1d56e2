import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { startProxy, type RunningProxy } from '../../../src/main';
import { FakeUpstream, MSG, PATHS, encode, type StartedFake } from '../../support/fake-upstream';
import { typed } from '../../support/config-values';
import { testLogger } from '../../support/test-logger';
import { httpGet, parseExposition, scrapeUntil, valueOf } from './prometheus-text';

/**
 * deploy/grafana's dashboard against a running proxy: every series a panel
 * queries is one the proxy exports (a renamed metric would leave an empty
 * panel nobody notices), and every label a panel groups by is on it.
 */

const DASHBOARD = path.resolve(__dirname, '..', '..', '..', 'deploy', 'grafana', 'nix-reapi-proxy-dashboard.json');
const P = 'nix_reapi_proxy_';

interface Panel {
  title: string;
  targets?: Array<{ expr: string }>;
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  panels: Panel[];
  templating: { list: Array<{ definition?: string }> };
};
const exprs = [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr }))),
  ...dashboard.templating.list.filter((v) => v.definition).map((v) => ({ panel: 'variable', expr: v.definition! })),
];

/** Metric names an expression reads: ours and Node's process metrics. */
function seriesOf(expr: string): string[] {
  return [...expr.matchAll(/\b((?:nix_reapi_proxy|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!);
}

/** The family a series belongs to: histograms export NAME_bucket, NAME_sum, NAME_count. */
function family(series: string, types: Map<string, string>): string | undefined {
  if (types.has(series)) return series;
  const base = series.replace(/_(bucket|sum|count)$/, '');
  return types.get(base) === 'histogram' ? base : undefined;
}

let dir: string;
let fake: FakeUpstream;
let started: StartedFake;
let proxy: RunningProxy;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nrp-dashboard-'));
  fake = new FakeUpstream();
  started = await fake.start();
  const config: Config = {
    ...structuredClone(DEFAULTS),
    ...typed({
      listen: '127.0.0.1:0',
      metricsListen: '127.0.0.1:0',
      upstream: started.url,
      // A chroot store in a temp dir: roots on, so the roots state reads 1.
      sharedStore: path.join(dir, 'shared'),
      substituters: ['local'],
    }),
    requireSigs: false,
    keepalive: { timeMs: 0, timeoutMs: 10_000 },
  };
  proxy = await startProxy(config, testLogger());
  // One call, so the call series carry samples with their labels.
  const client = new grpc.Client(proxy.endpoint, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) =>
    client.makeUnaryRequest(
      PATHS.FindMissingBlobs,
      (b: Buffer) => b,
      (b: Buffer) => b,
      encode(MSG.FindMissingBlobsRequest, { blobDigests: [] }),
      (err) => (err ? reject(err) : resolve()),
    ),
  );
  client.close();
}, 120_000);

afterAll(async () => {
  await proxy?.close(100);
  await started?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the Grafana dashboard', () => {
  it('queries the series operators need: calls, preparation, realisations, caches, roots, sweeps, roots state', () => {
    const all = exprs.flatMap((e) => seriesOf(e.expr));
    for (const needed of [
      'calls_total',
      'call_duration_seconds_bucket',
      'execute_prepare_duration_seconds_bucket',
      'realisations_started_total',
      'single_flight_joins_total',
      'cache_lookups_total',
      'gc_roots',
      'gc_rooted_bytes',
      'gc_sweeps_total',
      'gc_roots_enabled',
    ]) {
      expect(all, needed).toContain(`${P}${needed}`);
    }
  });

  it('reads only series a running proxy exports, grouped by labels they have', async () => {
    const samples = await scrapeUntil(proxy.metricsEndpoint!, (s) => s.some((x) => x.name === `${P}calls_total`));
    const text = (await httpGet(`http://${proxy.metricsEndpoint}/metrics`)).body;
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!] as const));
    const labelNames = new Map<string, Set<string>>();
    for (const s of samples) {
      const f = family(s.name, types) ?? s.name;
      const set = labelNames.get(f) ?? new Set<string>();
      for (const k of Object.keys(s.labels)) set.add(k);
      labelNames.set(f, set);
    }
    expect(exprs.length).toBeGreaterThan(15);
    for (const { panel, expr } of exprs) {
      const series = seriesOf(expr);
      expect(series.length, `${panel}: ${expr}`).toBeGreaterThan(0);
      for (const name of series) expect(family(name, types), `${panel}: ${name} is not exported`).toBeDefined();
      // Labels in `by (...)` must exist on the first series, when it has samples yet.
      const first = family(series[0]!, types)!;
      const have = labelNames.get(first);
      for (const by of expr.matchAll(/\bby \(([^)]*)\)/g)) {
        for (const label of by[1]!
          .split(',')
          .map((l) => l.trim())
          .filter((l) => l !== 'le' && l !== '')) {
          if (have && have.size > 0) expect(have, `${panel}: ${first} has no label ${label}`).toContain(label);
        }
      }
    }
  });

  it('shows the roots state of this proxy: on', async () => {
    const body = (await httpGet(`http://${proxy.metricsEndpoint}/metrics`)).body;
    expect(valueOf(parseExposition(body), `${P}gc_roots_enabled`)).toBe(1);
  });
});
