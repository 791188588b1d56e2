import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { startProxy, type RunningProxy } from '../../../src/main';
import { T } from '../../../src/reapi/protos';
import { FakeUpstream, MSG, encode, type StartedFake } from '../../support/fake-upstream';
import { buildPaths, makeChrootStore, nixAvailable } from '../../support/nix-fixtures';
import { testLogger } from '../../support/test-logger';
import { scrape, valueOf, type Sample } from './prometheus-text';
import { typed } from '../../support/config-values';

/**
 * Executes through a proxy with a real shared Nix store and metrics on: the
 * preparation, validity, realisation and cache counters move by exactly what
 * the actions needed.
 */
const P = 'nix_reapi_proxy_';
const EXECUTE = '/build.bazel.remote.execution.v2.Execution/Execute';
const id = (b: Buffer): Buffer => b;

describe.skipIf(!nixAvailable())('Execute metrics with a real shared store', () => {
  let dir: string;
  let fake: FakeUpstream;
  let started: StartedFake;
  let proxy: RunningProxy;
  let client: grpc.Client;
  let paths: Record<string, string>;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'nrp-exec-metrics-'));
    const shared = await makeChrootStore(path.join(dir, 'shared'));
    paths = await buildPaths([
      { name: 'dep', files: { 'lib/x': 'dep' } },
      {
        name: 'tool',
        deps: ['dep'],
        files: { 'bin/tool': '#!/bin/sh\n. @dep:dep@/lib/x\n' },
        executable: ['bin/tool'],
      },
    ]);
    fake = new FakeUpstream();
    started = await fake.start();
    const config: Config = {
      ...structuredClone(DEFAULTS),
      ...typed({
        listen: '127.0.0.1:0',
        metricsListen: '127.0.0.1:0',
        upstream: started.url,
        sharedStore: shared,
        substituters: ['local'],
      }),
      requireSigs: false,
    };
    proxy = await startProxy(config, testLogger());
    client = new grpc.Client(proxy.endpoint, grpc.credentials.createInsecure());
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await proxy?.close(1000);
    await started?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function execute(argument: string): Promise<Buffer[]> {
    const root = fake.putMessage('Directory', {});
    const command = fake.putMessage('Command', { arguments: [argument, '-c', 'true'] });
    const action = fake.putMessage('Action', { commandDigest: command, inputRootDigest: root });
    const request = encode(MSG.ExecuteRequest, { actionDigest: action });
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const call = client.makeServerStreamRequest(EXECUTE, id, id, request, new grpc.Metadata(), {});
      call.on('data', (m: Buffer) => out.push(m));
      call.on('error', reject);
      call.on('end', () => resolve(out));
    });
  }

  const count = (s: Sample[], name: string, labels: Record<string, string> = {}): number =>
    valueOf(s, `${P}${name}`, labels);

  it('counts one realisation for the first action and cache hits for the second', async () => {
    const before = await scrape(proxy.metricsEndpoint!);
    const first = await execute(`${paths.tool}/bin/tool`);
    const last = T.Operation.decode(first[first.length - 1]!) as unknown as { done: boolean };
    expect(last.done).toBe(true);
    const afterFirst = await scrape(proxy.metricsEndpoint!);
    const delta = (name: string, labels?: Record<string, string>): number =>
      count(afterFirst, name, labels) - count(before, name, labels);
    expect(delta('execute_prepared_total')).toBe(1);
    expect(delta('execute_references_total')).toBe(1);
    expect(delta('execute_missing_paths_total')).toBe(1);
    expect(delta('execute_realised_paths_total')).toBe(1);
    expect(delta('realisations_started_total')).toBe(1);
    expect(delta('realisations_failed_total')).toBe(0);
    expect(delta('cache_lookups_total', { cache: 'validity', result: 'miss' })).toBe(1);

    await execute(`${paths.tool}/bin/tool`);
    const afterSecond = await scrape(proxy.metricsEndpoint!);
    const delta2 = (name: string, labels?: Record<string, string>): number =>
      count(afterSecond, name, labels) - count(afterFirst, name, labels);
    expect(delta2('execute_prepared_total')).toBe(1);
    expect(delta2('realisations_started_total')).toBe(0);
    expect(delta2('cache_lookups_total', { cache: 'validity', result: 'hit' })).toBe(1);
    // The same action again: answered from the action memo, so the tree is not even looked up.
    expect(delta2('cache_lookups_total', { cache: 'action', result: 'hit' })).toBe(1);
    expect(delta2('cache_lookups_total', { cache: 'tree', result: 'hit' })).toBe(0);
    expect(
      delta2('calls_total', { service: 'build.bazel.remote.execution.v2.Execution', method: 'Execute', code: 'OK' }),
    ).toBe(1);
  }, 60_000);

  it('counts a failed preparation by reason', async () => {
    const before = await scrape(proxy.metricsEndpoint!);
    const absent = '/nix/store/' + '0'.repeat(32) + '-nowhere';
    await execute(`${absent}/bin/x`);
    const after = await scrape(proxy.metricsEndpoint!);
    const reason = { reason: 'NIX_PATHS_UNAVAILABLE' };
    expect(
      count(after, 'execute_prepare_failures_total', reason) - count(before, 'execute_prepare_failures_total', reason),
    ).toBe(1);
    expect(count(after, 'execute_prepared_total') - count(before, 'execute_prepared_total')).toBe(0);
  }, 60_000);
});
