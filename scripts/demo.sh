#!/usr/bin/env bash
# nix-reapi-proxy in a minute, for a human watching (npm run demo; needs root).
#
# Bazel 4.2.3 builds three actions remotely on Bazel's own remote worker. Each
# action uses a "toolchain" from the Nix store: one named in the command, one
# through --action_env, one from an input script. The worker sees only the
# shared store $S (it runs in a mount namespace with $S/nix/store on
# /nix/store), where none of the toolchains are yet. So:
#   1. against the worker alone the build fails: No such file or directory;
#   2. through the proxy (--shared-store $S) it succeeds: the proxy copies each
#      referenced store path and its closure into $S before forwarding Execute;
#   3. a toolchain no action used stays out of $S.
# Everything it starts is stopped by PID and every temporary file removed, also
# on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

bold=$'\e[1m' green=$'\e[32m' red=$'\e[31m' dim=$'\e[2m' off=$'\e[0m'
if [[ ! -t 1 ]]; then bold='' green='' red='' dim='' off=''; fi
step_no=0
step() { step_no=$((step_no + 1)); printf '\n%s== %d. %s%s\n' "$bold" "$step_no" "$1" "$off"; }
say() { printf '   %s\n' "$*"; }
die() { printf '%sdemo failed: %s%s\n' "$red" "$*" "$off" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
  die "run as root: it installs packages and gives the executor its own mount namespace"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/nix-reapi-proxy-demo.XXXXXX")
S=$T/shared-store
WS=$T/ws
BAZEL_ENV=(env -i "PATH=$PATH" "HOME=$T/home" "USER=${USER:-root}" "LANG=C.UTF-8")
WORKER_PID=''
PROXY_PID=''
BAZEL_STARTED=''

stop_pid() { # PID NAME: SIGTERM, wait up to 10 s, then SIGKILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  printf '\n%s== Cleaning up%s\n' "$bold" "$off"
  if [[ -n $BAZEL_STARTED ]]; then
    (cd "$WS" && "${BAZEL_ENV[@]}" bazel --nohome_rc shutdown >/dev/null 2>&1)
    say "Bazel server stopped"
  fi
  if [[ -n $PROXY_PID ]]; then stop_pid "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null; say "proxy (pid $PROXY_PID) stopped"; fi
  # The worker helper stops the JVM; the mount namespace dies with it.
  if [[ -n $WORKER_PID ]]; then stop_pid "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null; say "remote worker (pid $WORKER_PID) stopped"; fi
  rm -rf "$T"
  say "removed $T"
  if ((status == 0)); then printf '\n%sDemo finished.%s\n' "$green" "$off"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for_line FILE REGEX PID SECONDS WHAT: until FILE has a line matching REGEX.
wait_for_line() {
  local file=$1 re=$2 pid=$3 deadline=$((SECONDS + $4)) what=$5
  until grep -Eq "$re" "$file" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then cat "$file" >&2; die "$what exited before it was ready"; fi
    if ((SECONDS >= deadline)); then cat "$file" >&2; die "$what was not ready after $4 s"; fi
    sleep 0.1
  done
}

bazel_build() { # LOG ARGS...: bazel build in $WS, output to LOG; returns Bazel's exit code
  local log=$1
  shift
  BAZEL_STARTED=1
  (cd "$WS" && "${BAZEL_ENV[@]}" bazel --nohome_rc build "$@" >"$log" 2>&1)
}

# --------------------------------------------------------------------------
step "Dependencies (apt: Nix, Bazel 4.2.3; npm modules)"
bash scripts/install-deps.sh
say "all present"

step "Building the proxy and the test worker helper"
node node_modules/typescript/bin/tsc -p tsconfig.build.json
node node_modules/typescript/bin/tsc --outDir "$T/js" --rootDir test/support --module commonjs --target ES2022 \
  --esModuleInterop --skipLibCheck --strict --types node test/support/e2e-worker-cli.ts
say "dist/src/cli.js built"

# --------------------------------------------------------------------------
step "Four Nix toolchains in the host store /nix/store (each needs a second store path)"
salt=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
cat >"$T/toolchains.nix" <<EOF
let
  mk = name: script: derivation {
    name = "demo-$salt-\${name}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  };
  helper = who: mk who ''
    /bin/mkdir -p \$out/bin
    printf '#!/bin/sh\necho "%s says \$*"\n' \${who} > \$out/bin/helper
    /bin/chmod +x \$out/bin/helper
  '';
  tool = name: dep: mk name ''
    /bin/mkdir -p \$out/bin
    printf '#!/bin/sh\nexec %s/bin/helper %s "\$@"\n' \${dep} \${name} > \$out/bin/tool
    /bin/chmod +x \$out/bin/tool
  '';
  lib-b = mk "lib-b" ''
    /bin/mkdir -p \$out/lib
    printf 'greet() { echo "lib-b greets \$*"; }\n' > \$out/lib/greet.sh
  '';
in {
  tool-a = tool "tool-a" (helper "helper-a");
  tool-b = mk "tool-b" ''
    /bin/mkdir -p \$out/bin
    printf '#!/bin/sh\n. %s/lib/greet.sh\ngreet tool-b "\$@"\n' \${lib-b} > \$out/bin/tool
    /bin/chmod +x \$out/bin/tool
  '';
  tool-c = tool "tool-c" (helper "helper-c");
  tool-d = tool "tool-d" (helper "helper-d");
}
EOF
nix-build --no-out-link --quiet -j4 "$T/toolchains.nix" -A tool-a -A tool-b -A tool-c -A tool-d \
  >"$T/toolchains.txt" 2>"$T/nix-build.log" || { cat "$T/nix-build.log" >&2; die "building the toolchains failed"; }
mapfile -t tools <"$T/toolchains.txt"
((${#tools[@]} == 4)) || { cat "$T/nix-build.log" >&2; die "expected 4 toolchain paths, got ${#tools[@]}"; }
TOOL_A=${tools[0]} TOOL_B=${tools[1]} TOOL_C=${tools[2]} TOOL_D=${tools[3]}
for t in "$TOOL_A" "$TOOL_B" "$TOOL_C" "$TOOL_D"; do
  say "$t"
  say "  ${dim}needs $(nix-store -q --references "$t" | tr '\n' ' ')${off}"
done

step "A shared store \$S that the executor mounts on /nix/store"
nix store ping --store "$S" >/dev/null 2>&1 || die "cannot initialise the chroot store $S"
say "S=$S (empty)"
node "$T/js/e2e-worker-cli.js" --store-root "$S" >"$T/worker.log" 2>&1 &
WORKER_PID=$!
wait_for_line "$T/worker.log" '^worker port=[0-9]+' "$WORKER_PID" 90 "the remote worker"
WORKER_PORT=$(sed -nE 's/^worker port=([0-9]+).*/\1/p' "$T/worker.log")
say "Bazel's remote worker on 127.0.0.1:$WORKER_PORT; in its mount namespace /nix/store is $S/nix/store"

mkdir -p "$WS" "$T/home" "$T/bazel-root"
: >"$WS/WORKSPACE"
cat >"$WS/.bazelrc" <<EOF
startup --output_user_root=$T/bazel-root
startup --max_idle_secs=120
build --nosandbox_debug --color=no --curses=no
build --action_env=TOOL_B=$TOOL_B
EOF
printf '%s/bin/tool hello\n' "$TOOL_C" >"$WS/run-c.sh"
cat >"$WS/BUILD" <<EOF
# Three ways an action reaches a toolchain:
genrule(name = "via_cmd", outs = ["a.txt"], cmd = "$TOOL_A/bin/tool hello > \$@")
genrule(name = "via_env", outs = ["b.txt"], cmd = "\$\$TOOL_B/bin/tool hello > \$@")
genrule(name = "via_script", srcs = ["run-c.sh"], outs = ["c.txt"], cmd = "bash \$(location run-c.sh) > \$@")
EOF
say "workspace: genrule naming tool-a, --action_env=TOOL_B=<tool-b>, input script run-c.sh calling tool-c"

# --------------------------------------------------------------------------
step "Bazel against the executor alone (expected to fail)"
if bazel_build "$T/direct.log" --keep_going "--remote_executor=grpc://127.0.0.1:$WORKER_PORT" //:all; then
  cat "$T/direct.log"
  die "the build succeeded without the proxy: the executor should not have the toolchains"
fi
grep -E 'No such file or directory' "$T/direct.log" | sed 's/^/   /'
say "${red}FAILED${off} as expected: the executor's /nix/store lacks the toolchains"

# --------------------------------------------------------------------------
step "The proxy in front of the executor"
say "node dist/src/cli.js --upstream grpc://127.0.0.1:$WORKER_PORT --shared-store \$S --substituter local --no-require-sigs"
node dist/src/cli.js --listen 127.0.0.1:0 --upstream "grpc://127.0.0.1:$WORKER_PORT" \
  --shared-store "$S" --substituter local --no-require-sigs >"$T/proxy.log" 2>&1 &
PROXY_PID=$!
wait_for_line "$T/proxy.log" '"msg":"listening"' "$PROXY_PID" 30 "the proxy"
PROXY_PORT=$(node -e '
  for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
    try { const o = JSON.parse(l); if (o.msg === "listening") { console.log(String(o.listen).split(":").pop()); break; } } catch {}
  }' "$T/proxy.log")
[[ -n $PROXY_PORT ]] || { cat "$T/proxy.log" >&2; die "cannot find the proxy's port in its log"; }
say "listening on 127.0.0.1:$PROXY_PORT"

step "Bazel through the proxy"
if ! bazel_build "$T/proxy-build.log" "--remote_executor=grpc://127.0.0.1:$PROXY_PORT" //:all; then
  cat "$T/proxy-build.log" >&2
  printf '%s--- proxy log ---%s\n' "$dim" "$off" >&2
  tail -n 40 "$T/proxy.log" >&2
  die "the build through the proxy failed"
fi
grep -E '^INFO: [0-9]+ process' "$T/proxy-build.log" | sed 's/^/   /'
for f in a b c; do say "bazel-bin/$f.txt: $(cat "$WS/bazel-bin/$f.txt")"; done
say "${green}SUCCEEDED${off}"
say "the proxy's log, one line per Execute (action, outcome, store paths referenced/missing/copied, time):"
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n");
  for (const l of lines) {
    let o; try { o = JSON.parse(l); } catch { continue; }
    if (o.msg !== "execute") continue;
    const action = String(o.action ?? "?").replace(/^(.{12}).*\//, "$1…/");
    const names = (o.sample ?? []).map((p) => String(p).replace(/^\/nix\/store\/[^-]+-/, "")).join(", ");
    const total = o.ms && o.ms.total !== undefined ? `${o.ms.total} ms` : "";
    console.log(`     ${action}  ${o.outcome ?? "?"}  refs=${o.references ?? "?"} missing=${o.missing ?? "?"} ` +
      `copied=${o.realised ?? "?"} joined=${o.joined ?? 0}  ${total}  [${names}]`);
  }' "$T/proxy.log"

# --------------------------------------------------------------------------
step "What the shared store holds now"
for t in "$TOOL_A" "$TOOL_B" "$TOOL_C"; do
  say "closure of $(basename "$t"):"
  nix-store --store "$S" -q --requisites "$t" | sed 's/^/     /'
done
if [[ -n $(nix-store --store "$S" --check-validity --print-invalid "$TOOL_D") ]]; then
  say "$(basename "$TOOL_D"): not copied (no action used it)"
else
  die "$TOOL_D is in the shared store although no action used it"
fi
