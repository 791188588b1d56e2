import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, type Config } from '../../../src/config/config';
import { startProxy, type RunningProxy } from '../../../src/main';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { SpawnNixRunner, type NixInvocation, type NixOutcome, type NixRunner } from '../../../src/store/nix-command';
import { FakeUpstream, MSG, PATHS, encode, type StartedFake } from '../../support/fake-upstream';
import {
  absentStorePath,
  buildPaths,
  closureOf,
  makeChrootStore,
  nixAvailable,
  validIn,
} from '../../support/nix-fixtures';
import { testLogger } from '../../support/test-logger';
import { typed } from '../../support/config-values';

/**
 * The whole Nix-aware Execute path with real parts: the proxy as composed by
 * main.ts, a real chroot shared store, the host store as substituter, and the
 * in-process upstream holding the actions. Nix processes are counted through
 * the runner seam, so "exactly one copy" is observed, not inferred.
 */
const id = (b: Buffer): Buffer => b;

class CountingRunner implements NixRunner {
  readonly copies: NixInvocation[] = [];
  private gate: Promise<void> = Promise.resolve();
  private open: () => void = () => {};
  constructor(private readonly inner: NixRunner) {}
  /** Holds every `nix copy` until `release()`. */
  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }
  release(): void {
    this.open();
  }
  async run(invocation: NixInvocation, signal: AbortSignal): Promise<NixOutcome> {
    if (invocation.args.includes('copy')) {
      this.copies.push(invocation);
      await this.gate;
    }
    return this.inner.run(invocation, signal);
  }
}

describe.skipIf(!nixAvailable())('Nix-aware Execute through the proxy, real Nix store', () => {
  let dir: string;
  let shared: string;
  let fake: FakeUpstream;
  let started: StartedFake;
  let proxy: RunningProxy;
  let client: grpc.Client;
  let runner: CountingRunner;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'nrp-nix-execute-'));
    shared = await makeChrootStore(path.join(dir, 'shared'));
    fake = new FakeUpstream();
    started = await fake.start();
    runner = new CountingRunner(new SpawnNixRunner({ timeoutMs: 60_000 }));
    const config: Config = {
      ...structuredClone(DEFAULTS),
      ...typed({ listen: '127.0.0.1:0', upstream: started.url, sharedStore: shared, substituters: ['local'] }),
      requireSigs: false,
      progressIntervalMs: 200,
    };
    proxy = await startProxy(config, testLogger(), { nixRunner: runner });
    client = new grpc.Client(proxy.endpoint, grpc.credentials.createInsecure());
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await proxy?.close(1000);
    await started?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function actionNaming(argument: string, salt: string): Buffer {
    const root = fake.putMessage('Directory', {});
    const command = fake.putMessage('Command', {
      arguments: [argument],
      environmentVariables: [{ name: 'SALT', value: salt }],
    });
    const action = fake.putMessage('Action', { commandDigest: command, inputRootDigest: root });
    return encode(MSG.ExecuteRequest, { actionDigest: action });
  }

  interface Outcome {
    operations: Array<{
      name: string;
      done: boolean;
      response?: { typeUrl?: string; type_url?: string; value: Uint8Array };
    }>;
    code: number;
    details: string;
  }

  function execute(request: Buffer, onFirst?: () => void): Promise<Outcome> {
    return new Promise((resolve) => {
      const operations: Outcome['operations'] = [];
      const call = client.makeServerStreamRequest(PATHS.Execute, id, id, request, new grpc.Metadata(), {});
      call.on('data', (m: Buffer) => {
        operations.push(T.Operation.decode(m) as never);
        if (operations.length === 1) onFirst?.();
      });
      call.on('error', (e: grpc.ServiceError) => resolve({ operations, code: e.code, details: e.details }));
      call.on('end', () => resolve({ operations, code: Code.OK, details: '' }));
    });
  }

  it('50 concurrent Executes needing one missing closure: one copy, all forwarded, closure complete', async () => {
    const built = await buildPaths([
      { name: 'lib', files: { 'lib/lib.sh': 'echo lib' } },
      { name: 'cc', deps: ['lib'], files: { 'bin/cc': '#!/bin/sh\n. @dep:lib@/lib/lib.sh\n' }, executable: ['bin/cc'] },
    ]);
    const cc = built.cc!;
    const copiesBefore = runner.copies.length;
    const executesBefore = fake.calls(PATHS.Execute).length;
    runner.hold();
    let firstOperations = 0;
    const all = Promise.all(
      Array.from({ length: 50 }, (_, i) => execute(actionNaming(`${cc}/bin/cc`, `a${i}`), () => firstOperations++)),
    );
    // Each client gets its QUEUED Operation while the copy is still held.
    await expect.poll(() => firstOperations, { timeout: 30_000 }).toBe(50);
    // The one copy starts and is held; every Execute waits on it (none is forwarded yet).
    await expect.poll(() => runner.copies.length - copiesBefore, { timeout: 30_000 }).toBe(1);
    expect(fake.calls(PATHS.Execute).length).toBe(executesBefore);
    runner.release();
    const outcomes = await all;
    for (const o of outcomes) {
      expect(o.code).toBe(Code.OK);
      expect(o.operations.at(-1)!.done).toBe(true);
    }
    expect(runner.copies.length - copiesBefore).toBe(1);
    expect(fake.calls(PATHS.Execute).length - executesBefore).toBe(50);
    const closure = await closureOf('local', cc);
    expect(closure.length).toBeGreaterThanOrEqual(2);
    expect((await validIn(shared, closure)).size).toBe(closure.length);
  }, 120_000);

  it('a path that exists nowhere: a finished Operation with FAILED_PRECONDITION naming it; nothing forwarded', async () => {
    const absent = absentStorePath('nowhere-tool');
    const executesBefore = fake.calls(PATHS.Execute).length;
    const outcome = await execute(actionNaming(`${absent}/bin/tool`, 'absent'));
    expect(outcome.code).toBe(Code.OK);
    const last = outcome.operations.at(-1)!;
    expect(last.done).toBe(true);
    const response = T.ExecuteResponse.decode(last.response!.value) as unknown as {
      status: { code: number; message: string };
    };
    expect(response.status.code).toBe(Code.FAILED_PRECONDITION);
    expect(response.status.message).toContain(absent);
    expect(fake.calls(PATHS.Execute).length).toBe(executesBefore);
  }, 60_000);
});
