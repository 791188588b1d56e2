import * as grpc from '@grpc/grpc-js';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { T } from '../reapi/protos';
import type { Metadata } from '../rpc/server-call';
import { forwardableMetadata } from './client-metadata';

const GET_CAPABILITIES = '/build.bazel.remote.execution.v2.Capabilities/GetCapabilities';

/** ServerCapabilities as protobufjs decodes it, only the fields that name digest functions. */
export interface CapabilitiesLike {
  cacheCapabilities?: { digestFunctions?: readonly number[] | null } | null;
  executionCapabilities?: { digestFunction?: number | null; digestFunctions?: readonly number[] | null } | null;
}

/**
 * The digest functions a ServerCapabilities announces: cache_capabilities.digest_functions,
 * plus execution_capabilities.digest_function (deprecated) and .digest_functions. Pure;
 * UNKNOWN (0) is dropped, order of first appearance kept.
 */
export function announcedDigestFunctions(caps: CapabilitiesLike): number[] {
  const out: number[] = [];
  const add = (fn: number | null | undefined): void => {
    if (typeof fn === 'number' && fn !== 0 && !out.includes(fn)) out.push(fn);
  };
  for (const fn of caps.cacheCapabilities?.digestFunctions ?? []) add(fn);
  add(caps.executionCapabilities?.digestFunction);
  for (const fn of caps.executionCapabilities?.digestFunctions ?? []) add(fn);
  return out;
}

/** Asks the upstream for an instance name's capabilities; rejects when it cannot. */
export type CapabilitiesFetch = (
  instanceName: string,
  metadata: Metadata,
  deadline: number,
) => Promise<CapabilitiesLike>;

/** What the Execute path asks: the functions the upstream announced for an instance name, undefined = not known. */
export interface DigestFunctionSource {
  announced(instanceName: string, metadata: Metadata): Promise<readonly number[] | undefined>;
}

export interface UpstreamDigestFunctionsOptions {
  fetch: CapabilitiesFetch;
  logger: Logger;
  /** How long an answer is kept (default 5 min), so an upstream's new configuration is picked up. */
  ttlMs?: number;
  /** How long a failure is kept before the upstream is asked again (default 30 s). */
  failureTtlMs?: number;
  /** Instance names remembered (default 1000). */
  maxEntries?: number;
  /** Longest wait for GetCapabilities (default 5 s). */
  timeoutMs?: number;
  /** Longer instance names are never asked about or kept (default 1024 characters): the length rule applies. */
  maxInstanceNameLength?: number;
}

/**
 * The upstream's announced digest functions per instance name, asked lazily
 * (the first Execute of an instance name that leaves digest_function unset
 * asks GetCapabilities, concurrent ones share that call) and kept in an LRU
 * bounded in entries, with a TTL. When the upstream cannot be asked the answer
 * is undefined (callers fall back to the hash-length rule), logged once per
 * process and remembered for failureTtlMs so a down upstream is not asked on
 * every Execute. Never rejects.
 */
export class UpstreamDigestFunctions implements DigestFunctionSource {
  private readonly cache: LRUCache<string, Promise<readonly number[] | undefined>>;
  private failureLogged = false;
  private longNameLogged = false;

  constructor(private readonly options: UpstreamDigestFunctionsOptions) {
    this.cache = new LRUCache({ max: Math.max(1, options.maxEntries ?? 1000), ttl: options.ttlMs ?? 5 * 60_000 });
  }

  announced(instanceName: string, metadata: Metadata): Promise<readonly number[] | undefined> {
    if (instanceName.length > (this.options.maxInstanceNameLength ?? 1024)) {
      if (!this.longNameLogged) {
        this.longNameLogged = true;
        this.options.logger.warn(
          { instanceNameLength: instanceName.length },
          "instance name too long to look up the upstream's digest functions; inferring digest functions from hash length for it",
        );
      }
      return Promise.resolve(undefined);
    }
    const cached = this.cache.get(instanceName);
    if (cached !== undefined) return cached;
    const pending = this.ask(instanceName, metadata);
    this.cache.set(instanceName, pending);
    return pending;
  }

  private async ask(instanceName: string, metadata: Metadata): Promise<readonly number[] | undefined> {
    const timeoutMs = this.options.timeoutMs ?? 5000;
    try {
      const caps = await this.options.fetch(instanceName, metadata, Date.now() + timeoutMs);
      return announcedDigestFunctions(caps);
    } catch (err) {
      // Kept shorter than an answer; replaced only if still the entry for this name.
      const failed = Promise.resolve(undefined);
      this.cache.set(instanceName, failed, { ttl: this.options.failureTtlMs ?? 30_000 });
      if (!this.failureLogged) {
        this.failureLogged = true;
        this.options.logger.warn(
          { err, instanceName },
          "could not ask the upstream's GetCapabilities for its digest functions; inferring the digest function of Executes without one from the hash length (64 hex = SHA256) until it answers",
        );
      }
      return undefined;
    }
  }
}

/** CapabilitiesFetch over the proxy's own gRPC client to the upstream (the CAS reader's). */
export function grpcCapabilitiesFetch(client: grpc.Client): CapabilitiesFetch {
  return (instanceName, metadata, deadline) =>
    new Promise<CapabilitiesLike>((resolve, reject) => {
      const md = new grpc.Metadata();
      for (const [key, value] of forwardableMetadata(metadata)) {
        try {
          md.add(key, value);
        } catch {
          // A header grpc-js refuses cannot matter to GetCapabilities.
        }
      }
      const request = Buffer.from(T.GetCapabilitiesRequest.encode({ instanceName }).finish());
      client.makeUnaryRequest<Buffer, Buffer>(
        GET_CAPABILITIES,
        (b) => b,
        (b) => b,
        request,
        md,
        { deadline },
        (err, value) => {
          if (err) {
            reject(err);
            return;
          }
          try {
            resolve(T.ServerCapabilities.decode(value ?? Buffer.alloc(0)) as unknown as CapabilitiesLike);
          } catch (decodeErr) {
            reject(decodeErr);
          }
        },
      );
    });
}
