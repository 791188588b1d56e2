import { LRUCache } from 'lru-cache';
import type { Config } from '../config/config';
import { ProxyError } from '../errors';
import { isStorePath } from '../nix/store-path';
import { Code } from '../reapi/grpc-status';
import { T } from '../reapi/protos';
import { decodeStrict } from '../reapi/strict-wire';
import type { Metadata } from '../rpc/server-call';
import type { ClosureEnsurer, EnsureReport } from '../store/closure-ensurer';
import {
  collectActionReferences,
  tooManyPaths,
  type ActionFields,
  type CommandFields,
  type References,
} from './action-references';
import type { CasReadContext, CasReader } from './cas-reader';
import { digestKey, toBlobDigest, type BlobDigest, type DigestLike } from './digests';
import { byteBound, capWhere, referencesBytes } from './memo-size';
import type { TreeWalkResult, TreeWalker } from './tree-walker';

export interface PrepareInput {
  instanceName: string;
  requestedDigestFunction: number;
  digestFunction: number;
  actionDigest: BlobDigest;
  metadata: Metadata;
  signal: AbortSignal;
  deadline: number;
}

export interface PrepareDeps {
  casReader: CasReader;
  walker: TreeWalker;
  ensurer: ClosureEnsurer;
  limits: Config['limits'];
  maxMessageBytes: number;
  /** Store paths of actions seen before (optional: without it every Execute reads its Action and Command). */
  actions?: ActionMemo;
}

/**
 * The store paths an Action was found to reference, by instance name, digest
 * function and action digest (a client of one instance never learns what
 * another instance's action references without reading it under its own
 * credentials). An Action names its Command and input root by digest, so what
 * it references never changes: an Execute of an action seen before skips
 * reading the Action, the Command and the tree (on the warm path, two CAS round
 * trips and most of the proxy's work). Only complete answers are kept: not
 * when the scan budget cut the walk short, and never a failure. Bounded in
 * entries and in heap bytes (where-found texts are capped, see memo-size.ts).
 */
export type ActionMemo = LRUCache<string, References>;

export function createActionMemo(maxEntries: number, maxBytes = 32 * 1024 * 1024): ActionMemo {
  return new LRUCache<string, References>({
    max: Math.max(1, maxEntries),
    ...byteBound(maxBytes),
    sizeCalculation: (refs, key) => referencesBytes(key, refs),
  });
}

/** The action memo's key: instance name, digest function and action digest. */
export function actionMemoKey(instanceName: string, digestFunction: number, actionDigest: BlobDigest): string {
  return `${digestFunction}:${digestKey(actionDigest)}:${instanceName}`;
}

/** Filled in as preparation goes, so a failure still reports what was done (for the log line). */
export interface PrepareReport {
  /** The step under way, for progress lines. */
  step?: 'read' | 'walk' | 'ensure';
  references: References;
  walk?: TreeWalkResult;
  ensure?: EnsureReport;
  readMs?: number;
  walkMs?: number;
  ensureMs?: number;
  /** Set when the ensurer (not the CAS or the walk) threw. */
  failedStep?: 'ensure';
  /** The references came from the action memo: nothing was read from the CAS. */
  actionMemoHit?: boolean;
  error?: ProxyError;
}

/**
 * Everything the proxy does before it forwards an Execute: read the Action and
 * Command, walk the input tree, collect the store paths they reference and
 * have the ensurer make them (and their closures) valid on the shared store.
 * Throws ProxyError; the ensurer's FAILED_PRECONDITION (paths no source has)
 * comes out unchanged for the caller to turn into a finished Operation.
 */
export async function prepareAction(input: PrepareInput, deps: PrepareDeps, report: PrepareReport): Promise<void> {
  const memoKey = actionMemoKey(input.instanceName, input.digestFunction, input.actionDigest);
  const known = deps.actions?.get(memoKey);
  if (known !== undefined) {
    report.actionMemoHit = true;
    for (const [path, where] of known) report.references.set(path, where);
  } else {
    await collectReferences(input, deps, report);
    if (report.walk?.stats.filesSkippedBudget === 0) deps.actions?.set(memoKey, new Map(report.references));
  }

  const paths = [...report.references.keys()].filter(isStorePath);
  if (paths.length === 0) return;
  const started = Date.now();
  report.step = 'ensure';
  try {
    report.ensure = await deps.ensurer.ensure(paths, input.signal);
  } catch (err) {
    report.failedStep = 'ensure';
    throw err;
  } finally {
    report.ensureMs = Date.now() - started;
  }
}

/** Reads the Action and Command, walks the input tree, and fills `report.references`. */
async function collectReferences(input: PrepareInput, deps: PrepareDeps, report: PrepareReport): Promise<void> {
  // A failed read stops the reads running beside it.
  const local = new AbortController();
  const signal = AbortSignal.any([input.signal, local.signal]);
  const ctx: CasReadContext = {
    instanceName: input.instanceName,
    requestedDigestFunction: input.requestedDigestFunction,
    digestFunction: input.digestFunction,
    metadata: input.metadata,
    signal,
    deadline: input.deadline,
  };
  const fetch = (digests: readonly BlobDigest[]): Promise<Map<string, Buffer>> =>
    deps.casReader.readBlobs(ctx, digests);
  const limits = deps.limits;

  const started = Date.now();
  report.step = 'read';
  const action = decodeBounded<ActionFields & { commandDigest?: DigestLike; inputRootDigest?: DigestLike }>(
    'Action',
    input.actionDigest,
    await fetchOne(fetch, input.actionDigest, 'Action', deps.maxMessageBytes),
  );
  const commandDigest = toBlobDigest(action.commandDigest, input.digestFunction, 'Action.command_digest');
  const inputRoot = toBlobDigest(action.inputRootDigest, input.digestFunction, 'Action.input_root_digest');

  const walkStarted = Date.now();
  report.step = 'walk';
  // The Command and the first level of the tree are independent: read them together.
  const stopOthers = (err: unknown): never => {
    local.abort(err);
    throw err;
  };
  const commandRead = fetchOne(fetch, commandDigest, 'Command', deps.maxMessageBytes).then((blob) => {
    report.readMs = Date.now() - started;
    return blob;
  }, stopOthers);
  const walkDone = deps.walker
    .walk(inputRoot, {
      fetch,
      instanceName: input.instanceName,
      digestFunction: input.digestFunction,
      signal,
      limits: {
        treeNodes: limits.treeNodes,
        treeDepth: limits.treeDepth,
        storePathsPerAction: limits.storePathsPerAction,
        scanFileBytes: limits.scanFileBytes,
        scanTotalBytes: limits.scanTotalBytes,
        maxDirectoryBytes: deps.maxMessageBytes,
      },
    })
    .then((walk) => {
      report.walkMs = Date.now() - walkStarted;
      return walk;
    }, stopOthers);
  // Both settle before anything is reported, so neither rejection goes unobserved.
  const [commandOutcome, walkOutcome] = await Promise.allSettled([commandRead, walkDone]);
  if (commandOutcome.status === 'rejected') throw commandOutcome.reason;
  if (walkOutcome.status === 'rejected') throw walkOutcome.reason;
  const command = decodeBounded<CommandFields>('Command', commandDigest, commandOutcome.value);
  report.walk = walkOutcome.value;

  const references = report.references;
  collectActionReferences(action, command, references, limits.storePathsPerAction);
  for (const [path, where] of report.walk.references) {
    if (references.has(path)) continue;
    if (references.size >= limits.storePathsPerAction) throw tooManyPaths(limits.storePathsPerAction);
    references.set(path, capWhere(where));
  }
}

async function fetchOne(
  fetch: (digests: readonly BlobDigest[]) => Promise<Map<string, Buffer>>,
  digest: BlobDigest,
  what: string,
  maxBytes: number,
): Promise<Buffer> {
  if (digest.sizeBytes > maxBytes) {
    throw new ProxyError(
      Code.RESOURCE_EXHAUSTED,
      'MESSAGE_TOO_LARGE',
      `the ${what} blob ${digestKey(digest)} is ${digest.sizeBytes} bytes, more than the proxy's limit of ${maxBytes} (max_message_bytes)`,
    );
  }
  const blobs = await fetch([digest]);
  const blob = blobs.get(digestKey(digest));
  if (blob === undefined)
    throw new ProxyError(Code.INTERNAL, 'CAS_READER_CONTRACT', `no data for ${what} ${digestKey(digest)}`);
  return blob;
}

function decodeBounded<M>(what: 'Action' | 'Command', digest: BlobDigest, blob: Buffer): M {
  try {
    return decodeStrict(T[what], blob) as unknown as M;
  } catch (err) {
    throw new ProxyError(
      Code.INVALID_ARGUMENT,
      'BAD_MESSAGE',
      `the ${what} blob ${digestKey(digest)} is not a valid ${what} message (${(err as Error).message}); the client uploaded a corrupt ${what}`,
      { cause: err },
    );
  }
}
