/**
 * Bazel's own remote worker (src/tools/remote in Bazel's source), the REAPI
 * server end-to-end tests run against. Debian's bazel-bootstrap-source ships
 * its sources and /usr/share/bazel/A-server.jar everything it links against,
 * so it compiles with plain javac.
 *
 * Compiled once per source version into `os.tmpdir()/nix-reapi-proxy-worker-<hash>`
 * (outside the repository). Concurrent test files may compile at the same time:
 * each builds in its own temporary directory and renames it into place; the
 * loser of the race discards its copy.
 *
 * Two patches to the sources: the server binds 127.0.0.1 only (upstream binds
 * every interface), and after it starts it prints `NIX_REAPI_WORKER_LISTENING <port>`
 * on stdout. Ports: pass `port: 0` (the default) and the worker binds an
 * ephemeral port and reports it, so there is no window in which another process
 * can take a port picked in advance.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runOk, spawnServer, stopGroup, TailBuffer, waitForOutput } from './e2e-process';

export const WORKER_SOURCES = '/usr/src/bazel-bootstrap/src/tools/remote/src/main/java';
export const BAZEL_SERVER_JAR = '/usr/share/bazel/A-server.jar';
const MAIN_CLASS = 'com.google.devtools.build.remote.worker.RemoteWorker';
const WORKER_JAVA = 'com/google/devtools/build/remote/worker/RemoteWorker.java';
/** Bump when the patches below change, so stale compiled copies are not reused. */
const PATCH_VERSION = '2';
const READY_LINE = /^NIX_REAPI_WORKER_LISTENING (\d+)$/m;
const COMPILE_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 60_000;

const PATCHES: Array<{ find: string; replace: string }> = [
  {
    find: 'NettyServerBuilder.forPort(workerOptions.listenPort)',
    replace: 'NettyServerBuilder.forAddress(new java.net.InetSocketAddress("127.0.0.1", workerOptions.listenPort))',
  },
  {
    find: '    server.start();\n',
    replace:
      '    server.start();\n' +
      '    System.out.println("NIX_REAPI_WORKER_LISTENING " + server.getPort());\n' +
      '    System.out.flush();\n',
  },
];

/** Skip reason when this machine cannot run the worker, or undefined when it can. */
export function workerUnavailableReason(): string | undefined {
  if (!existsSync(WORKER_SOURCES))
    return `${WORKER_SOURCES} is missing: run scripts/install-deps.sh (bazel-bootstrap-source)`;
  if (!existsSync(BAZEL_SERVER_JAR))
    return `${BAZEL_SERVER_JAR} is missing: run scripts/install-deps.sh (bazel-bootstrap)`;
  return undefined;
}

async function listJava(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...(await listJava(dir, r)));
    else if (e.name.endsWith('.java')) out.push(r);
  }
  return out.sort();
}

async function sourceHash(files: string[]): Promise<string> {
  const h = createHash('sha256');
  h.update(`patch ${PATCH_VERSION}\n`);
  for (const f of files) {
    h.update(`${f}\n`);
    h.update(await readFile(path.join(WORKER_SOURCES, f)));
  }
  const jar = await stat(BAZEL_SERVER_JAR);
  h.update(`jar ${jar.size} ${jar.mtimeMs}\n`);
  return h.digest('hex').slice(0, 16);
}

/** Compiles the patched worker if needed; returns the directory holding `classes/`. */
export async function compileWorker(): Promise<string> {
  const reason = workerUnavailableReason();
  if (reason) throw new Error(reason);
  const files = await listJava(WORKER_SOURCES);
  const finalDir = path.join(os.tmpdir(), `nix-reapi-proxy-worker-${await sourceHash(files)}`);
  if (existsSync(path.join(finalDir, 'classes'))) return finalDir;

  const build = await mkdtemp(path.join(os.tmpdir(), 'nix-reapi-proxy-worker-build-'));
  try {
    const src = path.join(build, 'src');
    await cp(WORKER_SOURCES, src, { recursive: true });
    const mainFile = path.join(src, WORKER_JAVA);
    let text = await readFile(mainFile, 'utf8');
    for (const p of PATCHES) {
      if (!text.includes(p.find)) {
        throw new Error(`cannot patch ${WORKER_JAVA}: '${p.find.trim()}' not found (a different Bazel version?)`);
      }
      text = text.replace(p.find, p.replace);
    }
    await writeFile(mainFile, text);
    await writeFile(path.join(build, 'sources.txt'), files.map((f) => path.join(src, f)).join('\n') + '\n');
    await mkdir(path.join(build, 'classes'));
    await runOk(
      'javac',
      ['-nowarn', '-d', path.join(build, 'classes'), '-cp', BAZEL_SERVER_JAR, `@${path.join(build, 'sources.txt')}`],
      { timeoutMs: COMPILE_TIMEOUT_MS },
    );
    try {
      await rename(build, finalDir);
    } catch (e) {
      // Another test file finished first: its copy is identical.
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    }
  } finally {
    await rm(build, { recursive: true, force: true });
  }
  return finalDir;
}

export interface WorkerOptions {
  /** TCP port on 127.0.0.1; 0 (default) lets the worker pick a free one and report it. */
  port?: number;
  /**
   * A chroot Nix store root (the directory holding `nix/store`). When set, the
   * worker runs in a private mount namespace where `$storeRoot/nix/store` is
   * bind-mounted over `/nix/store`, so actions see only that store, like an
   * executor that mounts the shared store. Needs root.
   */
  storeRoot?: string;
  /** Extra worker flags (e.g. `--jobs=2`). */
  extraArgs?: string[];
}

export interface Worker {
  port: number;
  pid: number;
  /** grpc://127.0.0.1:<port> */
  url: string;
  /** What the worker printed so far (bounded). */
  logs(): string;
  /** Stops the worker (and any action it runs) and removes its CAS and work directories. */
  stop(): Promise<void>;
}

/** Starts the worker with execution enabled; resolves once it accepts connections. */
export async function startWorker(opts: WorkerOptions = {}): Promise<Worker> {
  const compiled = await compileWorker();
  const runDir = await mkdtemp(path.join(os.tmpdir(), 'nix-reapi-proxy-worker-run-'));
  const work = path.join(runDir, 'work');
  const cas = path.join(runDir, 'cas');
  await mkdir(work);
  await mkdir(cas);

  const java = [
    'java',
    '-Xmx1g',
    '-cp',
    `${path.join(compiled, 'classes')}:${BAZEL_SERVER_JAR}`,
    MAIN_CLASS,
    `--work_path=${work}`,
    `--cas_path=${cas}`,
    `--listen_port=${opts.port ?? 0}`,
    ...(opts.extraArgs ?? []),
  ];

  let cmd: string;
  let args: string[];
  if (opts.storeRoot !== undefined) {
    const source = path.join(path.resolve(opts.storeRoot), 'nix', 'store');
    if (!existsSync(source)) {
      await rm(runDir, { recursive: true, force: true });
      throw new Error(
        `${source} does not exist: initialise the store first (nix store ping --store ${opts.storeRoot})`,
      );
    }
    // The mount point must exist on the host; an empty directory is harmless if no Nix is installed.
    await mkdir('/nix/store', { recursive: true });
    // unshare execs (no fork), then sh execs java: the child's PID is the JVM's.
    // Paths travel as positional parameters, never spliced into the script.
    // setpriv --pdeathsig: the worker dies with the test process even if it crashes.
    cmd = 'setpriv';
    args = [
      '--pdeathsig',
      'KILL',
      '--',
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      'mount --bind "$1" /nix/store && shift && exec "$@"',
      'sh',
      source,
      ...java,
    ];
  } else {
    cmd = 'setpriv';
    args = ['--pdeathsig', 'KILL', '--', ...java];
  }

  const out = new TailBuffer(1024 * 1024);
  const child = spawnServer(cmd, args, { cwd: runDir });
  child.stdout!.on('data', (d) => out.push(d));
  child.stderr!.on('data', (d) => out.push(d));
  const stop = async (): Promise<void> => {
    await stopGroup(child);
    await rm(runDir, { recursive: true, force: true });
  };
  let port: number;
  try {
    const m = await waitForOutput(child, READY_LINE, () => out.toString(), START_TIMEOUT_MS, 'remote worker');
    port = Number(m[1]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, pid: child.pid!, url: `grpc://127.0.0.1:${port}`, logs: () => out.toString(), stop };
}
