import type { Logger } from 'pino';
import type { ExecuteService } from '../server/call-router';
import { PreparationSlots } from './preparation-slots';
import type { Config } from '../config/config';
import { ProxyError, toProxyError } from '../errors';
import type { UpstreamCaller } from '../passthrough/upstream-caller';
import { Code } from '../reapi/grpc-status';
import { T } from '../reapi/protos';
import { decodeStrict } from '../reapi/strict-wire';
import type { ServerCall } from '../rpc/server-call';
import type { ClosureEnsurer } from '../store/closure-ensurer';
import { NO_METRICS, type Metrics } from '../metrics/metrics';
import { NO_LEASES, type PathLease, type PathLeases } from '../gc/path-leases';
import { callStatusFor } from './call-status';
import type { CasReader } from './cas-reader';
import {
  digestFunctionByLength,
  digestKey,
  resolveDigestFunction,
  toBlobDigest,
  type BlobDigest,
  type DigestLike,
} from './digests';
import { ExecutionEntry } from './execution-entry';
import { followExecution, notFound, WAIT_EXECUTION_PATH, type FollowOutcome } from './follow-execution';
import { missingPathsStatus } from './missing-paths-status';
import { finishedOperation } from './operation-messages';
import { isOurOperationName, newOperationName } from './operation-names';
import { OperationRegistry, type RegistryBounds } from './operation-registry';
import { createActionMemo, prepareAction, type PrepareReport } from './prepare-action';
import { createWalkMemo, TreeWalker } from './tree-walker';
import type { DigestFunctionSource } from './upstream-digest-functions';

export interface ExecuteServiceDeps {
  casReader: CasReader;
  ensurer: ClosureEnsurer;
  upstream: UpstreamCaller;
  config: Config;
  logger: Logger;
  /** Where preparation counts go; a no-op when absent. */
  metrics?: Metrics;
  /** GC-root leases: an action's store paths are held from preparation until its forwarded call ends. */
  leases?: PathLeases;
  /**
   * The upstream's announced digest functions per instance name, used to
   * resolve an ExecuteRequest without digest_function (Buck2 sends none for
   * BLAKE3); absent = the hash-length rule alone.
   */
  digestFunctions?: DigestFunctionSource;
  /** The binary cache URL clients push to (cachePublicUrl), named in the fix of a missing-path error; unset = no cache. */
  pushUrl?: () => string | undefined;
  tuning?: {
    registry?: RegistryBounds;
    /** How long a preparation goes on with no call following it (default: 30 s, at least 2 progress intervals). */
    detachGraceMs?: number;
  };
}

interface ParsedExecute {
  instanceName: string;
  requestedDigestFunction: number;
  digestFunction: number;
  actionDigest: BlobDigest;
}

type PrepareEnd = 'ready' | 'missing-paths' | 'failed';

/**
 * The Nix-aware Execution service. Execute: answer at once with a QUEUED
 * Operation of our own name, prepare the action (read it, find its store
 * paths, ensure them on the shared store) while repeating that Operation,
 * then relay the client's original request bytes upstream and the upstream's
 * stream back. Store paths no source has end the action with a finished
 * Operation whose ExecuteResponse.status says which and why (a gRPC status
 * would make Bazel retry, and Operation.error is not for that); anything else
 * that stops preparation ends the call with a gRPC status. WaitExecution
 * follows our names and relays everything else unchanged.
 */
export function createExecuteService(deps: ExecuteServiceDeps): ExecuteService {
  const { config, logger } = deps;
  const metrics = deps.metrics ?? NO_METRICS;
  const leases = deps.leases ?? NO_LEASES;
  const registry = new OperationRegistry(deps.tuning?.registry);
  const slots = new PreparationSlots(config.limits.concurrentPreparations, config.limits.clientConcurrentPreparations);
  const walker = new TreeWalker(createWalkMemo(config.cache.memoEntries, config.cache.treeMemoBytes));
  const actions = createActionMemo(config.cache.memoEntries, config.cache.actionMemoBytes);
  const graceMs = deps.tuning?.detachGraceMs ?? Math.max(30_000, 2 * config.progressIntervalMs);
  const followDeps = { upstream: deps.upstream, registry, progressIntervalMs: config.progressIntervalMs };
  const prepareDeps = {
    casReader: deps.casReader,
    walker,
    actions,
    ensurer: deps.ensurer,
    limits: config.limits,
    maxMessageBytes: config.maxMessageBytes,
  };

  async function execute(call: ServerCall): Promise<void> {
    const started = Date.now();
    let parsed: ParsedExecute;
    let frame: Buffer;
    try {
      const request = await call.readUnaryRequest();
      parsed = await parseExecuteRequest(request.message, (instanceName) =>
        deps.digestFunctions ? deps.digestFunctions.announced(instanceName, call.metadata) : Promise.resolve(undefined),
      );
      frame = request.frame;
    } catch (err) {
      endWithError(call, err, 'Execute');
      return;
    }

    let release: () => void;
    try {
      release = slots.take(call.client);
    } catch (err) {
      endWithError(call, err, 'Execute');
      return;
    }
    const controller = new AbortController();
    const entry = new ExecutionEntry(
      newOperationName(parsed.instanceName),
      parsed.actionDigest,
      frame,
      graceMs,
      (abandoned) => {
        logger.info(
          { operation: abandoned.name, action: digestKey(abandoned.actionDigest), state: abandoned.state },
          `no client followed the operation for ${graceMs} ms; dropping it`,
        );
        controller.abort(
          new ProxyError(Code.CANCELLED, 'ABANDONED', 'the client went away while the action was prepared'),
        );
        abandoned.setState('gone');
        registry.delete(abandoned);
      },
    );
    registry.add(entry);
    const report: PrepareReport = { references: new Map() };
    const held: { lease?: PathLease } = {};
    const preparation = prepare(entry, parsed, call, controller, report, held);
    void preparation.finally(release);
    let followed: FollowOutcome = {};
    try {
      followed = await followExecution(entry, call, 'execute', followDeps);
    } catch (err) {
      endWithError(call, err, 'Execute');
    }
    // The paths stay held until the action's Operation is done, whichever call follows it (a client whose
    // Execute stream broke comes back with WaitExecution), or nobody has followed it for the grace period.
    entry.onSettled(() => held.lease?.release());
    void preparation.then((end) => {
      // Preparation failed, or the action settled while its lease was being taken: let go of it now.
      if (end !== 'ready' || entry.settled) held.lease?.release();
      try {
        logExecute(entry, parsed, report, end, followed, Date.now() - started);
      } catch (err) {
        logger.error({ err }, 'cannot log an Execute');
      }
    });
  }

  /** Never rejects: moves the entry to ready, finished (missing paths) or gone (with the error). */
  async function prepare(
    entry: ExecutionEntry,
    parsed: ParsedExecute,
    call: ServerCall,
    controller: AbortController,
    report: PrepareReport,
    held: { lease?: PathLease },
  ): Promise<PrepareEnd> {
    const timeoutMs = config.limits.prepareTimeoutMs;
    const started = Date.now();
    let progress: NodeJS.Timeout | undefined;
    let settled = false;
    // A warm action (memoised references, paths known valid) prepares without any I/O, so it is
    // ready before the next turn of the event loop: no QUEUED Operation, no progress timer.
    // Anything still preparing then is waiting for I/O: tell the client and log progress.
    setImmediate(() => {
      if (settled || entry.state !== 'preparing') return;
      entry.markWaiting();
      progress = setInterval(
        () => {
          logger.info(
            {
              operation: entry.name,
              action: digestKey(entry.actionDigest),
              step: report.step,
              elapsedMs: Date.now() - started,
              following: entry.attachedCalls,
            },
            'still preparing an action',
          );
        },
        Math.max(1000, config.progressIntervalMs),
      );
      progress.unref();
    });
    const deadline = started + timeoutMs;
    const timedOut = (): ProxyError =>
      new ProxyError(
        Code.DEADLINE_EXCEEDED,
        'PREPARE_TIMEOUT',
        `preparing the action (reading its inputs, making its Nix store paths valid on the shared store) took longer than ${timeoutMs} ms (limits.prepareTimeoutMs); ` +
          "see the proxy's log for the slow step, then retry or raise the limit",
      );
    const timer = setTimeout(() => controller.abort(timedOut()), timeoutMs);
    timer.unref();
    try {
      await prepareAction(
        { ...parsed, metadata: call.metadata, signal: controller.signal, deadline },
        prepareDeps,
        report,
      );
      // Taken while the ensure's own hold still lingers, so the paths are never unheld before forwarding.
      held.lease = await leases.acquire([...report.references.keys()]);
      if (entry.state === 'preparing') entry.setState('ready');
      return 'ready';
    } catch (err) {
      const raised = toProxyError(err, 'preparing the action');
      // A CAS read given this deadline may give up a moment before the timer fires: past the deadline, any
      // DEADLINE_EXCEEDED is the preparation's own time running out.
      const error = raised.code === Code.DEADLINE_EXCEEDED && Date.now() >= deadline ? timedOut() : raised;
      if (error.code === Code.INTERNAL)
        logger.error({ err, operation: entry.name }, 'internal error while preparing an action');
      report.error = error;
      if (report.failedStep === 'ensure' && error.code === Code.FAILED_PRECONDITION) {
        const status = missingPathsStatus(error, report.references, deps.pushUrl?.());
        entry.setState('finished', { finalOperation: finishedOperation(entry.name, entry.actionDigest, status) });
        registry.touch(entry);
        return 'missing-paths';
      }
      entry.setState('gone', { error });
      registry.delete(entry);
      return 'failed';
    } finally {
      settled = true;
      clearTimeout(timer);
      if (progress !== undefined) clearInterval(progress);
    }
  }

  async function waitExecution(call: ServerCall): Promise<void> {
    try {
      const request = await call.readUnaryRequest();
      let name: string;
      try {
        name = (T.WaitExecutionRequest.decode(request.message) as unknown as { name?: string }).name ?? '';
      } catch (err) {
        throw new ProxyError(Code.INVALID_ARGUMENT, 'BAD_MESSAGE', 'the WaitExecutionRequest does not decode', {
          cause: err,
        });
      }
      if (!isOurOperationName(name)) {
        await deps.upstream.relay(call, WAIT_EXECUTION_PATH, request.frame);
        return;
      }
      const entry = registry.get(name);
      if (entry === undefined) {
        call.end(notFound(name));
        return;
      }
      await followExecution(entry, call, 'wait', followDeps);
    } catch (err) {
      endWithError(call, err, 'WaitExecution');
    }
  }

  function endWithError(call: ServerCall, err: unknown, method: string): void {
    const error = toProxyError(err, method);
    if (error.code === Code.INTERNAL) logger.error({ err, method }, `internal error in ${method}`);
    if (!call.ended) call.end(callStatusFor(error));
  }

  function logExecute(
    entry: ExecutionEntry,
    parsed: ParsedExecute,
    report: PrepareReport,
    end: PrepareEnd,
    followed: FollowOutcome,
    totalMs: number,
  ): void {
    const walk = report.walk;
    const ensure = report.ensure;
    recordMetrics(report, end, totalMs - (followed.forwardMs ?? 0));
    if (walk !== undefined && walk.stats.filesSkippedBudget > 0) {
      logger.warn(
        {
          action: digestKey(parsed.actionDigest),
          operation: entry.name,
          files: walk.stats.filesSkippedBudget,
          limit: config.limits.scanTotalBytes,
        },
        'some input files were not scanned for store paths (limits.scanTotalBytes reached); paths only they mention are not ensured, and a later Execute scans them',
      );
    }
    logger.info(
      {
        action: digestKey(parsed.actionDigest),
        instance: parsed.instanceName,
        operation: entry.name,
        outcome: end,
        ...(report.error ? { code: report.error.code, reason: report.error.reason, error: report.error.message } : {}),
        references: report.references.size,
        ...(report.actionMemoHit ? { actionMemo: true } : {}),
        sample: [...report.references.keys()].slice(0, 3),
        tree: walk
          ? {
              nodes: walk.nodes,
              fetchedDirectories: walk.stats.directoriesFetched,
              fetchedFiles: walk.stats.filesFetched,
              memoHits: walk.stats.memoHits,
              skippedLarge: walk.stats.filesSkippedLarge,
              skippedBudget: walk.stats.filesSkippedBudget,
            }
          : undefined,
        missing: ensure?.missing.length ?? (end === 'missing-paths' ? report.error?.violations.length : 0),
        realised: ensure?.realised.length ?? 0,
        joined: ensure?.joined ?? 0,
        ms: {
          read: report.readMs,
          walk: report.walkMs,
          check: ensure?.checkMs,
          realise: ensure?.realiseMs,
          visible: ensure?.visibleWaitMs,
          ensure: report.ensureMs,
          forward: followed.forwardMs,
          total: totalMs,
        },
        ...(followed.relayCode !== undefined ? { upstreamCode: followed.relayCode } : {}),
      },
      'execute',
    );
  }

  function recordMetrics(report: PrepareReport, end: PrepareEnd, prepareMs: number): void {
    const walk = report.walk;
    const ensure = report.ensure;
    if (report.actionMemoHit) metrics.cacheLookups('action', 1, 0);
    else if (walk) metrics.cacheLookups('action', 0, 1);
    if (walk)
      metrics.cacheLookups('tree', walk.stats.memoHits, walk.stats.directoriesFetched + walk.stats.filesFetched);
    // The Command read and the tree walk overlap; 'read' is the span until both are done.
    const read =
      report.readMs !== undefined || report.walkMs !== undefined
        ? Math.max(report.readMs ?? 0, report.walkMs ?? 0)
        : undefined;
    const steps = {
      read,
      check: ensure?.checkMs,
      realise: ensure?.realiseMs,
      visible: ensure?.visibleWaitMs,
      total: prepareMs,
    };
    if (end === 'ready' && ensure) {
      metrics.executePrepared({
        steps,
        references: report.references.size,
        missing: ensure.missing.length,
        realised: ensure.realised.length,
      });
    } else if (end !== 'ready') {
      metrics.executePrepareFailed({ reason: report.error?.reason ?? 'INTERNAL', steps });
    }
  }

  return { execute, waitExecution };
}

/** Longest instance name an Execute may carry (real ones are a few words). */
const MAX_INSTANCE_NAME = 1024;

async function parseExecuteRequest(
  message: Buffer,
  announced: (instanceName: string) => Promise<readonly number[] | undefined>,
): Promise<ParsedExecute> {
  let request: { instanceName?: string; actionDigest?: DigestLike; digestFunction?: number };
  try {
    request = decodeStrict(T.ExecuteRequest, message) as typeof request;
  } catch (err) {
    throw new ProxyError(
      Code.INVALID_ARGUMENT,
      'BAD_MESSAGE',
      `the ExecuteRequest does not decode (${(err as Error).message})`,
      { cause: err },
    );
  }
  const instanceName = request.instanceName ?? '';
  if (instanceName.length > MAX_INSTANCE_NAME) {
    // It goes into the operation name, every log line about the action and every CAS read.
    throw new ProxyError(
      Code.INVALID_ARGUMENT,
      'BAD_INSTANCE_NAME',
      `ExecuteRequest.instance_name is ${instanceName.length} characters; the proxy accepts at most ${MAX_INSTANCE_NAME} (set --remote_instance_name / instance_name to your cluster's instance)`,
    );
  }
  // Checked first: without a digest, "a hash of 0 characters" would be the confusing complaint.
  if (!request.actionDigest) toBlobDigest(undefined, 0, 'ExecuteRequest.action_digest');
  const requested = request.digestFunction ?? 0;
  const hash = request.actionDigest?.hash ?? '';
  const digestFunction = resolveDigestFunction(
    requested,
    hash,
    requested === 0 ? await announced(instanceName) : undefined,
  );
  // An unset function stays unset in the proxy's CAS requests unless the announcements chose another than the length rule.
  const named = requested !== 0 || digestFunction === digestFunctionByLength(hash) ? requested : digestFunction;
  return {
    instanceName,
    requestedDigestFunction: named,
    digestFunction,
    actionDigest: toBlobDigest(request.actionDigest, digestFunction, 'ExecuteRequest.action_digest'),
  };
}
