import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../src/reapi/grpc-status';
import {
  actionBlob,
  commandBlob,
  directoryBlob,
  emptyDirectory,
  fakeStorePath,
  type Digest,
} from '../../corpus/hostile/generate';
import { FakeUpstream, PATHS } from '../../support/fake-upstream';
import { execute, executeRequest, rawClient } from '../../support/hardening/grpc-raw';
import { rssBytes } from '../../support/hardening/process-probe';
import { StubNix } from '../../support/hardening/stub-nix';
import { startProxy, type ProxyProcess } from '../../support/proxy-process';

/**
 * The proxy's memos (actions seen, trees seen, paths known valid) are bounded
 * in bytes and keyed by instance name, through the real proxy process with a
 * 160 MB heap, in front of a fake upstream whose instances have separate CAS
 * stores and a stand-in Nix that reports every store path missing.
 */

const HEAP_MB = 160;
/** Resident memory the proxy may reach after the flood: its heap limit plus buffers, far below what the flood would hold unbounded (~800 MB). */
const RSS_LIMIT = 400 * 1024 * 1024;

let fake: FakeUpstream;
let proxy: ProxyProcess;
let client: grpc.Client;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'memo-bounds-'));
  mkdirSync(join(work, 'store'));
  const nix = new StubNix(join(work, 'nix-bin'));
  nix.set('nix-store', 'invalid');
  nix.set('nix', 'invalid');
  fake = new FakeUpstream({ separateInstances: true });
  const started = await fake.start();
  proxy = await startProxy(
    ['--upstream', started.url, '--shared-store', join(work, 'store'), '--nix-bin-dir', nix.dir],
    {
      env: { NIX_REAPI_PROXY_LOG_LEVEL: 'info', NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}` },
    },
  );
  client = rawClient(proxy.endpoint, undefined, { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
});

afterAll(async () => {
  client?.close();
  await proxy?.stop();
  await fake?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A directory holding one empty subdirectory named `name` (distinct roots make distinct actions). */
function rootNamed(name: string, instance = ''): Digest {
  return fake.putBlob(
    directoryBlob({ dirs: [{ name, digest: emptyDirectory({ putBlob: (b) => fake.putBlob(b, instance) }) }] }),
    instance,
  );
}

describe('memos bounded in bytes', () => {
  it('200 Executes whose Command has 10 environment variables with 380 kB names naming made-up paths: the proxy lives, RSS stays bounded, answers stay small', async () => {
    const env: Array<[string, string]> = Array.from({ length: 10 }, (_, i) => [
      `${String.fromCharCode(65 + i)}`.repeat(380_000),
      fakeStorePath(i, 'made-up', 151),
    ]);
    const command = fake.putBlob(commandBlob(['/bin/true'], env));
    for (let i = 0; i < 200; i++) {
      const action = fake.putBlob(actionBlob(command, rootNamed(`salt-${i}`)));
      const outcome = await execute(client, executeRequest(action));
      expect(outcome.code).toBe(Code.OK);
      expect(outcome.response?.code).toBe(Code.FAILED_PRECONDITION);
      expect(outcome.response?.subjects).toHaveLength(10);
      // Where each path was found is named, cut short.
      expect(outcome.response?.message).toMatch(/\(referenced by environment variable A+\.\.\.\)/);
      expect(outcome.response!.message.length).toBeLessThan(10_000);
    }
    expect(proxy.child.exitCode).toBeNull();
    expect(rssBytes(proxy.pid)).toBeLessThan(RSS_LIMIT);
    // And it still serves a plain action.
    const before = fake.calls(PATHS.Execute).length;
    const plain = fake.putBlob(
      actionBlob(fake.putBlob(commandBlob(['/bin/true', 'after-flood'])), emptyDirectory(fake)),
    );
    expect((await execute(client, executeRequest(plain))).code).toBe(Code.OK);
    expect(fake.calls(PATHS.Execute).length).toBe(before + 1);
  }, 300_000);
});

describe('memos keyed by instance name', () => {
  const path = fakeStorePath(7, 'secret-tool', 152);

  it("an action seen on one instance is read again under another instance's name: a client there learns nothing from the memo", async () => {
    const action = fake.putBlob(
      actionBlob(
        fake.putBlob(commandBlob([`${path}/bin/tool`]), 'team-a'),
        emptyDirectory({ putBlob: (b) => fake.putBlob(b, 'team-a') }),
      ),
      'team-a',
    );
    const onA = await execute(client, executeRequest(action, 'team-a'));
    expect(onA.response?.code).toBe(Code.FAILED_PRECONDITION);
    expect(onA.response?.subjects).toEqual([path]);

    // team-b's CAS does not hold that action: its client gets the missing Action, not team-a's paths.
    const onB = await execute(client, executeRequest(action, 'team-b'));
    expect(onB.code).toBe(Code.FAILED_PRECONDITION);
    expect(onB.details).toContain(action.hash);
    expect(JSON.stringify(onB)).not.toContain('secret-tool');
  });

  it("a tree seen on one instance is walked again under another instance's name", async () => {
    const inA = { putBlob: (b: Uint8Array) => fake.putBlob(b, 'team-a') };
    const inB = { putBlob: (b: Uint8Array) => fake.putBlob(b, 'team-b') };
    const file = inA.putBlob(Buffer.from(`#!${path}/bin/sh\n`));
    const rootBlob = directoryBlob({ files: [{ name: 'run.sh', digest: file }] });
    const root = inA.putBlob(rootBlob);
    const onA = await execute(
      client,
      executeRequest(inA.putBlob(actionBlob(inA.putBlob(commandBlob(['/bin/true', 'a'])), root)), 'team-a'),
    );
    expect(onA.response?.subjects).toEqual([path]);

    // team-b has the same root directory but not the file it names: the walk reads under team-b and finds it missing.
    inB.putBlob(rootBlob);
    const onB = await execute(
      client,
      executeRequest(inB.putBlob(actionBlob(inB.putBlob(commandBlob(['/bin/true', 'b'])), root)), 'team-b'),
    );
    expect(onB.code).toBe(Code.FAILED_PRECONDITION);
    expect(onB.details).toContain(file.hash);
    expect(JSON.stringify(onB)).not.toContain('secret-tool');
  });
});
