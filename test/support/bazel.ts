/**
 * A throwaway Bazel 4.2.3 workspace for end-to-end tests.
 *
 * Everything Bazel writes lives under one temporary directory: the workspace,
 * the output user root (`startup --output_user_root`) and HOME, and the home
 * rc file is ignored, so no user configuration leaks in and nothing is left
 * behind. The system rc (/etc/bazel/bazelrc) stays: Debian's Bazel needs its
 * install_base and host_javabase settings. rules_cc and rules_java point at the stand-ins in
 * bazel-bootstrap-source so `cc_binary` builds offline (Debian's own
 * bazel-rules-cc is too new for 4.2.3).
 *
 * One Bazel server per workspace; reuse the workspace across the tests of a
 * file and call `dispose()` in afterAll: it runs `bazel shutdown`, kills the
 * server by PID if that did not work, and removes the directory.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import protobuf from 'protobufjs';
import { run, type RunResult } from './e2e-process';

const MOCK_REPOS = '/usr/src/bazel-bootstrap/mock_repos';
const BUILD_TIMEOUT_MS = 170_000;
/** A leaked server (a crashed test run) exits on its own after this long idle. */
const SERVER_MAX_IDLE_SECS = 120;

/** Skip reason when this machine cannot run Bazel builds, or undefined when it can. */
export function bazelUnavailableReason(): string | undefined {
  if (!existsSync('/usr/bin/bazel')) return 'bazel is not installed: run scripts/install-deps.sh (bazel-bootstrap)';
  if (!existsSync(path.join(MOCK_REPOS, 'rules_cc'))) {
    return `${MOCK_REPOS} is missing: run scripts/install-deps.sh (bazel-bootstrap-source)`;
  }
  return undefined;
}

/** Counts from Bazel's summary line, e.g. `INFO: 3 processes: 1 internal, 2 remote.` */
export interface ProcessSummary {
  total: number;
  /** By kind as Bazel names it: 'internal', 'remote', 'remote cache hit', 'local', 'linux-sandbox', ... */
  byKind: Record<string, number>;
  remote: number;
  remoteCacheHit: number;
}

export interface BazelResult extends RunResult {
  /** stdout and stderr together (Bazel writes nearly everything to stderr). */
  output: string;
  /** The last summary line of the command, if it printed one. */
  summary: ProcessSummary | undefined;
}

/** Parses the last `N processes: ...` line in Bazel's output. Pure. */
export function parseProcessSummary(output: string): ProcessSummary | undefined {
  const lines = [...output.matchAll(/^(?:INFO: )?(\d+) process(?:es)?: (.*?)\.?$/gm)];
  const last = lines.at(-1);
  if (!last) return undefined;
  const byKind: Record<string, number> = {};
  for (const part of last[2]!.split(',')) {
    const m = part.trim().match(/^(\d+) (.+)$/);
    if (m) byKind[m[2]!] = (byKind[m[2]!] ?? 0) + Number(m[1]);
  }
  return {
    total: Number(last[1]),
    byKind,
    remote: byKind['remote'] ?? 0,
    remoteCacheHit: byKind['remote cache hit'] ?? 0,
  };
}

export interface WorkspaceOptions {
  /** Files to create, relative to the workspace root. */
  files?: Record<string, string>;
  /** Extra .bazelrc lines. */
  bazelrc?: string[];
}

export class BazelWorkspace {
  private constructor(
    /** Temporary directory holding everything below. */
    readonly root: string,
    /** The workspace (where WORKSPACE is). */
    readonly dir: string,
    readonly outputUserRoot: string,
    readonly home: string,
  ) {}

  static async create(opts: WorkspaceOptions = {}): Promise<BazelWorkspace> {
    const reason = bazelUnavailableReason();
    if (reason) throw new Error(reason);
    const root = await mkdtemp(path.join(os.tmpdir(), 'nix-reapi-proxy-bazel-'));
    const ws = new BazelWorkspace(root, path.join(root, 'ws'), path.join(root, 'out'), path.join(root, 'home'));
    await mkdir(ws.dir);
    await mkdir(ws.outputUserRoot);
    await mkdir(ws.home);
    await ws.write('WORKSPACE', '');
    await ws.write(
      '.bazelrc',
      [
        `startup --output_user_root=${ws.outputUserRoot}`,
        `startup --max_idle_secs=${SERVER_MAX_IDLE_SECS}`,
        `build --override_repository=rules_cc=${MOCK_REPOS}/rules_cc`,
        `build --override_repository=rules_java=${MOCK_REPOS}/rules_java`,
        'build --nosandbox_debug',
        'build --color=no --curses=no',
        ...(opts.bazelrc ?? []),
        '',
      ].join('\n'),
    );
    for (const [rel, text] of Object.entries(opts.files ?? {})) await ws.write(rel, text);
    return ws;
  }

  /** Writes a file relative to the workspace, creating directories. */
  async write(rel: string, contents: string | Buffer, mode?: number): Promise<string> {
    const file = path.join(this.dir, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, contents);
    if (mode !== undefined) await chmod(file, mode);
    return file;
  }

  /** Path of a file under bazel-bin, e.g. `bin('pkg/out.txt')`. */
  bin(rel: string): string {
    return path.join(this.dir, 'bazel-bin', rel);
  }

  async readBin(rel: string): Promise<string> {
    return readFile(this.bin(rel), 'utf8');
  }

  /** The environment Bazel runs with: a private HOME and nothing from the caller's Bazel setup. */
  env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: this.home,
      USER: process.env.USER ?? 'root',
      LANG: 'C.UTF-8',
      TMPDIR: os.tmpdir(),
    };
  }

  /** Runs `bazel <command> <args>`; never rejects on a failed build, only on a timeout. */
  async bazel(command: string, args: readonly string[] = [], timeoutMs = BUILD_TIMEOUT_MS): Promise<BazelResult> {
    const r = await run('bazel', ['--nohome_rc', command, ...args], {
      cwd: this.dir,
      env: this.env(),
      timeoutMs,
    });
    const output = `${r.stdout}\n${r.stderr}`;
    return { ...r, output, summary: parseProcessSummary(r.stderr) };
  }

  /** `bazel build <args>` (targets and flags together, as Bazel takes them). */
  build(args: readonly string[], timeoutMs?: number): Promise<BazelResult> {
    return this.bazel('build', args, timeoutMs);
  }

  /** Like `build`, but rejects with Bazel's output unless the build succeeded. */
  async buildOk(args: readonly string[], timeoutMs?: number): Promise<BazelResult> {
    const r = await this.build(args, timeoutMs);
    if (r.code !== 0)
      throw new Error(`bazel build ${args.join(' ')} failed (exit ${r.code}):\n${r.output.slice(-12000)}`);
    return r;
  }

  async clean(): Promise<void> {
    const r = await this.bazel('clean');
    if (r.code !== 0) throw new Error(`bazel clean failed:\n${r.output.slice(-4000)}`);
  }

  /** Stops the Bazel server (by PID if `bazel shutdown` fails) and removes everything. Safe to call twice. */
  async dispose(): Promise<void> {
    if (!existsSync(this.root)) return;
    try {
      await this.bazel('shutdown', [], 60_000);
    } catch {
      // Fall through to the PID.
    }
    for (const pid of await this.serverPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
    await rm(this.root, { recursive: true, force: true });
  }

  /** PIDs of Bazel servers still recorded under this workspace's output user root. */
  private async serverPids(): Promise<number[]> {
    const pids: number[] = [];
    const bases = await readdir(this.outputUserRoot).catch(() => [] as string[]);
    for (const b of bases) {
      const text = await readFile(path.join(this.outputUserRoot, b, 'server', 'server.pid.txt'), 'utf8').catch(
        () => undefined,
      );
      const pid = Number(text?.trim());
      if (Number.isInteger(pid) && pid > 1) pids.push(pid);
    }
    return pids;
  }
}

/** One call from `--experimental_remote_grpc_log`. */
export interface GrpcLogEntry {
  /** e.g. `build.bazel.remote.execution.v2.Execution/Execute` */
  method: string;
  /** gRPC status code the call ended with (0 = OK). */
  code: number;
  /** instance_name of Execute, GetActionResult and FindMissingBlobs requests; resource name of ByteStream calls. */
  target?: string;
}

// Field numbers from Bazel's src/main/protobuf/remote_execution_log.proto.
const LOG_STATUS = 2;
const LOG_METHOD = 3;
const LOG_DETAILS = 4;
/**
 * RpcCallDetails oneof fields whose message has `request` = 1 whose first
 * field is the target: execute 7, get_action_result 8, find_missing_blobs 10
 * (instance_name) and read 5 (resource_name).
 */
const DETAILS_WITH_REQUEST = new Set([5, 7, 8, 10]);
/** RpcCallDetails write = 6: WriteDetails has `repeated string resource_names = 1`. */
const DETAILS_WRITE = 6;

function firstString(buf: Uint8Array, field: number): string | undefined {
  const r = protobuf.Reader.create(buf);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === field && (tag & 7) === 2) return r.string();
    r.skipType(tag & 7);
  }
  return undefined;
}

function firstBytes(buf: Uint8Array, field: number): Uint8Array | undefined {
  const r = protobuf.Reader.create(buf);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === field && (tag & 7) === 2) return r.bytes();
    r.skipType(tag & 7);
  }
  return undefined;
}

/** Decodes a `--experimental_remote_grpc_log` file (varint-length-delimited LogEntry messages). */
export async function readGrpcLog(file: string): Promise<GrpcLogEntry[]> {
  const data = await readFile(file);
  const outer = protobuf.Reader.create(data);
  const entries: GrpcLogEntry[] = [];
  while (outer.pos < outer.len) {
    const entry = outer.bytes();
    const r = protobuf.Reader.create(entry);
    const e: GrpcLogEntry = { method: '', code: 0 };
    while (r.pos < r.len) {
      const tag = r.uint32();
      const field = tag >>> 3;
      if (field === LOG_METHOD && (tag & 7) === 2) {
        e.method = r.string();
      } else if (field === LOG_STATUS && (tag & 7) === 2) {
        const status = protobuf.Reader.create(r.bytes());
        while (status.pos < status.len) {
          const t = status.uint32();
          if (t >>> 3 === 1 && (t & 7) === 0) e.code = status.int32();
          else status.skipType(t & 7);
        }
      } else if (field === LOG_DETAILS && (tag & 7) === 2) {
        const details = protobuf.Reader.create(r.bytes());
        while (details.pos < details.len) {
          const t = details.uint32();
          const f = t >>> 3;
          if ((t & 7) === 2 && DETAILS_WITH_REQUEST.has(f)) {
            const request = firstBytes(details.bytes(), 1);
            if (request) e.target = firstString(request, 1);
          } else if ((t & 7) === 2 && f === DETAILS_WRITE) {
            e.target = firstString(details.bytes(), 1);
          } else {
            details.skipType(t & 7);
          }
        }
      } else {
        r.skipType(tag & 7);
      }
    }
    entries.push(e);
  }
  return entries;
}
