import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../../src/config/config';
import { DigestFunction, type BlobDigest } from '../../../src/execute/digests';
import {
  createActionMemo,
  prepareAction,
  type PrepareDeps,
  type PrepareReport,
} from '../../../src/execute/prepare-action';
import { createWalkMemo, TreeWalker } from '../../../src/execute/tree-walker';
import { T } from '../../../src/reapi/protos';
import type { ClosureEnsurer, EnsureReport } from '../../../src/store/closure-ensurer';
import { FakeCas, P } from './fixtures';

/** Records the paths each ensure asked for; every path is fine. */
class RecordingEnsurer implements ClosureEnsurer {
  readonly asked: string[][] = [];
  async ensure(paths: readonly string[]): Promise<EnsureReport> {
    this.asked.push([...paths].sort());
    return {
      requested: paths.length,
      cachedValid: 0,
      missing: [],
      realised: [],
      joined: 0,
      checkMs: 0,
      realiseMs: 0,
      visibleWaitMs: 0,
    };
  }
}

function setup(limits: Partial<typeof DEFAULTS.limits> = {}) {
  const cas = new FakeCas();
  const ensurer = new RecordingEnsurer();
  const deps: PrepareDeps = {
    casReader: cas.reader(),
    walker: new TreeWalker(createWalkMemo(1000)),
    ensurer,
    limits: { ...DEFAULTS.limits, ...limits },
    maxMessageBytes: 4 * 1024 * 1024,
    actions: createActionMemo(1000),
  };
  /** An action whose Command runs clang and whose one input file mentions bash. */
  const action = (salt: string, opts: { uploadCommand?: boolean } = {}): BlobDigest => {
    const script = cas.file(`#!${P.bash}/bin/sh\n# ${salt}\n`);
    const root = cas.dir({ files: [{ name: 'run.sh', digest: script, executable: true }] });
    const commandBytes = Buffer.from(T.Command.encode({ arguments: [`${P.clang}/bin/cc`, salt] }).finish());
    const command = cas.put(commandBytes);
    if (opts.uploadCommand === false) cas.blobs.delete(`${command.hash}/${command.sizeBytes}`);
    return cas.put(T.Action.encode({ commandDigest: command, inputRootDigest: root }).finish());
  };
  const prepare = async (actionDigest: BlobDigest): Promise<PrepareReport> => {
    const report: PrepareReport = { references: new Map() };
    await prepareAction(
      {
        instanceName: 'ci',
        requestedDigestFunction: 0,
        digestFunction: DigestFunction.SHA256,
        actionDigest,
        metadata: {},
        signal: new AbortController().signal,
        deadline: Date.now() + 60_000,
      },
      deps,
      report,
    );
    return report;
  };
  return { cas, ensurer, action, prepare, deps };
}

describe('prepareAction: actions seen before', () => {
  it('a second Execute of the same action reads nothing from the CAS and ensures the same paths', async () => {
    const { cas, ensurer, action, prepare } = setup();
    const digest = action('warm');
    const first = await prepare(digest);
    expect(first.actionMemoHit).toBeUndefined();
    const reads = cas.reads.length;
    const second = await prepare(digest);
    expect(second.actionMemoHit).toBe(true);
    expect(cas.reads.length).toBe(reads);
    expect(ensurer.asked).toEqual([[P.bash, P.clang].sort(), [P.bash, P.clang].sort()]);
    expect([...second.references]).toEqual([...first.references]);
  });

  it('a different action is read in full', async () => {
    const { cas, action, prepare } = setup();
    await prepare(action('one'));
    const reads = cas.reads.length;
    const other = await prepare(action('two'));
    expect(other.actionMemoHit).toBeUndefined();
    expect(cas.reads.length).toBeGreaterThan(reads);
  });

  it('a walk the scan budget cut short is not remembered: the next Execute scans again', async () => {
    const { cas, action, prepare } = setup({ scanTotalBytes: 1 });
    const digest = action('budget');
    const first = await prepare(digest);
    expect(first.walk?.stats.filesSkippedBudget).toBe(1);
    const reads = cas.reads.length;
    const second = await prepare(digest);
    expect(second.actionMemoHit).toBeUndefined();
    expect(cas.reads.length).toBeGreaterThan(reads);
  });

  it('a failed read is not remembered: once the blob is there, the action is prepared', async () => {
    const { cas, action, prepare } = setup();
    const digest = action('late', { uploadCommand: false });
    await expect(prepare(digest)).rejects.toMatchObject({ reason: 'MISSING_BLOBS' });
    cas.put(T.Command.encode({ arguments: [`${P.clang}/bin/cc`, 'late'] }).finish());
    const report = await prepare(digest);
    expect(report.actionMemoHit).toBeUndefined();
    expect(report.references.has(P.clang)).toBe(true);
  });
});
