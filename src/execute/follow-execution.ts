import type { UpstreamCaller } from '../passthrough/upstream-caller';
import { encodeFrame } from '../rpc/grpc-frame';
import { Code } from '../reapi/grpc-status';
import { T } from '../reapi/protos';
import type { ServerCall } from '../rpc/server-call';
import { callStatusFor } from './call-status';
import type { ExecutionEntry } from './execution-entry';
import type { OperationRegistry } from './operation-registry';

export const EXECUTE_PATH = '/build.bazel.remote.execution.v2.Execution/Execute';
export const WAIT_EXECUTION_PATH = '/build.bazel.remote.execution.v2.Execution/WaitExecution';

export interface FollowDeps {
  upstream: UpstreamCaller;
  registry: OperationRegistry;
  progressIntervalMs: number;
}

export interface FollowOutcome {
  /** Set when this call relayed the Execute upstream. */
  forwardMs?: number;
  /** gRPC status of the relayed call, when there was one. */
  relayCode?: number;
}

/**
 * Serves one call (the Execute that created `entry`, or a WaitExecution on its
 * name) from the entry's state until the call ends: our QUEUED Operation as
 * soon as preparation has to wait (entry.waiting; a warm action never does,
 * and goes upstream without one) and then every `progressIntervalMs` while
 * preparing; the final
 * Operation when one is known; the upstream's stream once the entry is
 * forwarded (this call relays the original Execute if nobody else does, or a
 * WaitExecution on the upstream's name if the upstream already named it).
 * Resolves when the call has ended; never rejects.
 */
export async function followExecution(
  entry: ExecutionEntry,
  call: ServerCall,
  role: 'execute' | 'wait',
  deps: FollowDeps,
): Promise<FollowOutcome> {
  const detach = entry.attach();
  try {
    let sentQueued = false;
    for (;;) {
      if (call.ended || call.signal.aborted) return {};
      switch (entry.state) {
        case 'finished':
          await send(call, entry.finalOperation!);
          call.end({ code: Code.OK });
          return {};
        case 'gone':
          if (role === 'execute' && entry.error !== undefined) call.end(callStatusFor(entry.error));
          else call.end(notFound(entry.name));
          return {};
        case 'ready':
          return await forwardExecute(entry, call, deps);
        case 'forwarding':
          if (entry.upstreamName !== undefined) return await relayWait(entry, entry.upstreamName, call, deps);
          break;
        case 'preparing':
          break;
      }
      // Preparing, or another call is forwarding and the upstream has not named its Operation yet.
      if (!sentQueued) {
        if (entry.state === 'preparing' && !entry.waiting) {
          // Nothing to tell the client yet: preparation may finish without waiting for anything.
          await entry.waitForChange(call.signal, Infinity);
          continue;
        }
        sentQueued = true;
        await send(call, entry.queued);
        continue;
      }
      const woke = await entry.waitForChange(call.signal, deps.progressIntervalMs);
      if (woke === 'tick') await send(call, entry.queued);
    }
  } finally {
    detach();
  }
}

async function forwardExecute(entry: ExecutionEntry, call: ServerCall, deps: FollowDeps): Promise<FollowOutcome> {
  entry.forwardingActive = true;
  entry.setState('forwarding');
  const started = Date.now();
  let code: number = Code.UNKNOWN;
  try {
    code = (
      await deps.upstream.relay(call, EXECUTE_PATH, entry.requestFrame, {
        onMessage: (message) => entry.observeUpstream(message),
      })
    ).code;
  } finally {
    // Even if the relay broke its contract and threw, waiting calls must not wait forever.
    entry.forwardingActive = false;
    settleAfterForward(entry, call, deps);
  }
  return { forwardMs: Date.now() - started, relayCode: code };
}

function settleAfterForward(entry: ExecutionEntry, call: ServerCall, deps: FollowDeps): void {
  if (entry.state === 'finished') deps.registry.touch(entry);
  else if (entry.upstreamName !== undefined) entry.setState('forwarding');
  else if (call.signal.aborted) entry.setState('ready');
  else {
    // The upstream answered with an error before any Operation; the client got it. A later
    // WaitExecution on our name gets NOT_FOUND and the client calls Execute again.
    entry.setState('gone');
    deps.registry.delete(entry);
  }
}

async function relayWait(
  entry: ExecutionEntry,
  upstreamName: string,
  call: ServerCall,
  deps: FollowDeps,
): Promise<FollowOutcome> {
  const frame = encodeFrame(T.WaitExecutionRequest.encode({ name: upstreamName }).finish());
  const outcome = await deps.upstream.relay(call, WAIT_EXECUTION_PATH, frame, {
    onMessage: (message) => {
      entry.observeUpstream(message);
      if (entry.state === 'finished') deps.registry.touch(entry);
    },
  });
  return { relayCode: outcome.code };
}

export function notFound(name: string): { code: typeof Code.NOT_FOUND; message: string } {
  return {
    code: Code.NOT_FOUND,
    message: `operation ${name} is not known to nix-reapi-proxy (it finished, expired, or the proxy restarted); call Execute again`,
  };
}

/** Waits for backpressure, but never past the call's end. */
async function send(call: ServerCall, message: Buffer): Promise<void> {
  if (call.ended || call.signal.aborted) return;
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<void>((resolve) => {
    onAbort = () => resolve();
    call.signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([call.sendMessage(message), aborted]);
  } finally {
    call.signal.removeEventListener('abort', onAbort);
  }
}
