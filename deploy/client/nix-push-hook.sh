#!/usr/bin/env bash
# nix-push-hook.sh: a Nix post-build-hook that pushes what Nix has just built
# locally to nix-reapi-proxy's binary cache, so remote actions that reference
# it (a rules_nixpkgs compiler wrapper, say) find it on the shared store.
#
# Install (see docs/client-setup.md, "Pushing what you build locally"):
#   install -m 0755 nix-push-hook.sh /etc/nix/nix-reapi-proxy-push-hook.sh
#   echo 'post-build-hook = /etc/nix/nix-reapi-proxy-push-hook.sh' >> /etc/nix/nix.conf
# The push authenticates with the token in the netrc file that nix.conf's
# `netrc-file` names (`machine HOST login nix password TOKEN`, a token with the
# push right).
#
# Nix runs this after every local build (not after a substitution), with
# OUT_PATHS (the built outputs, space-separated) and DRV_PATH in the
# environment; with the daemon it runs as root in the daemon's environment.
# Nix 2.8.0 passes an empty OUT_PATHS (NixOS/nix#6446): the outputs are then
# read from DRV_PATH.
#
# Settings: environment variables, or NAME=VALUE lines in the env file (read
# as data, never run as shell code; a variable set in the environment wins):
#   NIX_REAPI_PROXY_CACHE_URL        required: the proxy's binary cache,
#                                    http(s)://HOST[:PORT][/PATH], no query
#   NIX_REAPI_PROXY_SECRET_KEY_FILE  secret key (nix-store --generate-binary-cache-key)
#                                    signing the pushed narinfos, passed as
#                                    ?secret-key=FILE; needed unless the token
#                                    has the push-unsigned right
#   NIX_REAPI_PROXY_COMPRESSION      NAR compression: zstd (default), xz, none,
#                                    bzip2, gzip, br, lz4, lzip
#   NIX_REAPI_PROXY_PUSH_TIMEOUT     seconds the whole push may take (default 600)
#   NIX_REAPI_PROXY_CONNECT_TIMEOUT  seconds one connection may take (default 10)
#   NIX_REAPI_PROXY_PUSH_STRICT      1 = a failed push fails the build (default 0)
#   NIX_REAPI_PROXY_NIX              the nix binary (default: found on PATH,
#                                    then in the usual Nix profile locations)
#   NIX_REAPI_PROXY_PUSH_ENV_FILE    environment only: the env file (default
#                                    /etc/nix/nix-reapi-proxy-push-hook.env;
#                                    it may be absent, unless named here)
#
# A failed push does not fail the build by default. Nix waits for the hook
# before it goes on with other builds, and a non-zero exit makes the build fail
# although its outputs are already in the local store (a rebuild then finds
# them valid and runs no hook): failing would stop local work because the proxy
# is unreachable, and would not get the paths pushed either. So a failure is
# reported on stderr (in the build's output) with the command that pushes by
# hand, and the hook exits 0. With NIX_REAPI_PROXY_PUSH_STRICT=1 (CI, say) it
# exits 1 and the build fails. The same holds for a missing or bad setting and
# for inputs that are not store paths: those are refused before anything runs.
set -euo pipefail
# Nothing below is split into words or expanded as a glob except on purpose.
set -f

readonly ME=nix-reapi-proxy-push-hook
readonly DEFAULT_ENV_FILE=/etc/nix/nix-reapi-proxy-push-hook.env
readonly SETTINGS=(
  NIX_REAPI_PROXY_CACHE_URL NIX_REAPI_PROXY_SECRET_KEY_FILE NIX_REAPI_PROXY_COMPRESSION
  NIX_REAPI_PROXY_PUSH_TIMEOUT NIX_REAPI_PROXY_CONNECT_TIMEOUT NIX_REAPI_PROXY_PUSH_STRICT
  NIX_REAPI_PROXY_NIX
)
# /nix/store/<32 characters of Nix's base-32>-<name>; a name is at most 211 of
# the characters Nix allows in store path names, and does not start with '.'.
readonly STORE_PATH_RE='^/nix/store/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,210}$'
# Store paths and the single spaces Nix puts between them.
readonly OUT_PATHS_RE='^[A-Za-z0-9+._?=/ -]+$'
# http(s)://HOST[:PORT][/PATH]: no credentials, query or fragment.
readonly URL_RE='^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$'

strict=0
built_by=${DRV_PATH:-}

log() {
  printf '%s: %s\n' "$ME" "$*" >&2
}

# A value from outside, shown so that it cannot break the line or the terminal.
shown() {
  local s=$1
  if ((${#s} > 200)); then s="${s:0:200}..."; fi
  printf '%q' "$s"
}

# Reports a failure (one line per argument) and exits: 0 unless strict, so
# the build goes on.
fail() {
  local line
  for line in "$@"; do log "$line"; done
  if [[ $strict == 1 ]]; then
    log "NIX_REAPI_PROXY_PUSH_STRICT=1: failing the build${built_by:+ of $(shown "$built_by")} (its outputs stay in the local store)."
    exit 1
  fi
  log "The build itself is not failed (set NIX_REAPI_PROXY_PUSH_STRICT=1 to fail it instead)."
  exit 0
}

known_setting() {
  local name
  for name in "${SETTINGS[@]}"; do
    if [[ $1 == "$name" ]]; then return 0; fi
  done
  return 1
}

# Any value but 1, 0 or empty was meant to say something: taken as 1, with a warning.
set_strict() {
  case ${1:-0} in
    1) strict=1 ;;
    0 | '') strict=0 ;;
    *)
      strict=1
      log "warning: NIX_REAPI_PROXY_PUSH_STRICT is $(shown "$1"), taken as 1 (a failed push fails the build); set it to 1 or 0 (the default)."
      ;;
  esac
}

# NAME=VALUE lines, '#' comments and blank lines; VALUE may be in single or
# double quotes (taken literally), and an unquoted one ends at " #". Read as
# data: nothing in it is evaluated. The first bad line is reported once the
# whole file is read, so that a NIX_REAPI_PROXY_PUSH_STRICT in it counts.
load_env_file() {
  local file=$1 line name value number=0 lines=() problem=
  if [[ ! -r $file ]]; then
    fail "cannot read the env file $(shown "$file") (NIX_REAPI_PROXY_PUSH_ENV_FILE): create it with NIX_REAPI_PROXY_CACHE_URL=... or unset the variable."
  fi
  if [[ -n $(find "$file" -maxdepth 0 -perm -0002 2>/dev/null) ]]; then
    fail "the env file $(shown "$file") is writable by every user: make it writable by its owner only (chmod go-w)."
  fi
  while IFS= read -r line || [[ -n $line ]]; do lines+=("$line"); done <"$file"
  for line in ${lines[@]+"${lines[@]}"}; do
    number=$((number + 1))
    line=${line%$'\r'}
    if [[ $line =~ ^[[:space:]]*(#.*)?$ ]]; then continue; fi
    if [[ ! $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      problem=${problem:-"$(shown "$file") line $number is not NAME=VALUE: fix or remove it."}
      continue
    fi
    name=${BASH_REMATCH[2]}
    value=${BASH_REMATCH[3]}
    if [[ $value =~ ^\"([^\"]*)\"[[:space:]]*(#.*)?$ || $value =~ ^\'([^\']*)\'[[:space:]]*(#.*)?$ ]]; then
      value=${BASH_REMATCH[1]}
    else
      if [[ $value =~ ^(.*[^[:space:]])?[[:space:]]+#.*$ ]]; then value=${BASH_REMATCH[1]}; fi
      value=${value%"${value##*[![:space:]]}"}
    fi
    if ! known_setting "$name"; then
      problem=${problem:-"$(shown "$file") line $number sets $name, which is not a setting of this hook (they are: ${SETTINGS[*]})."}
      continue
    fi
    # The environment wins over the file.
    if [[ -z ${!name:-} ]]; then printf -v "$name" '%s' "$value"; fi
  done
  if [[ -n $problem ]]; then
    set_strict "${NIX_REAPI_PROXY_PUSH_STRICT:-}"
    fail "$problem"
  fi
}

positive_integer() {
  [[ $1 =~ ^[1-9][0-9]{0,5}$ ]]
}

# Sets nix and nix_store to the commands to run.
find_nix() {
  local candidate
  nix=
  if [[ -n ${NIX_REAPI_PROXY_NIX:-} ]]; then
    if [[ $NIX_REAPI_PROXY_NIX != /* || ! -x $NIX_REAPI_PROXY_NIX ]]; then
      fail "NIX_REAPI_PROXY_NIX is $(shown "$NIX_REAPI_PROXY_NIX"), not an executable given by its absolute path: point it at the nix binary."
    fi
    nix=$NIX_REAPI_PROXY_NIX
  elif candidate=$(command -v nix); then
    nix=$candidate
  else
    for candidate in /nix/var/nix/profiles/default/bin/nix /run/current-system/sw/bin/nix; do
      if [[ -x $candidate ]]; then
        nix=$candidate
        break
      fi
    done
  fi
  if [[ -z $nix ]]; then
    fail "cannot find the nix command (not on PATH=$(shown "$PATH"), nor in /nix/var/nix/profiles/default/bin): set NIX_REAPI_PROXY_NIX to its absolute path."
  fi
  nix_store=${nix%/*}/nix-store
  if [[ ! -x $nix_store ]]; then nix_store='nix-store'; fi
}

# --- Settings ---------------------------------------------------------------

# Strictness from the environment holds for problems with the env file itself.
if [[ ${NIX_REAPI_PROXY_PUSH_STRICT:-} == 1 ]]; then strict=1; fi
if [[ -n ${NIX_REAPI_PROXY_PUSH_ENV_FILE:-} ]]; then
  load_env_file "$NIX_REAPI_PROXY_PUSH_ENV_FILE"
elif [[ -e $DEFAULT_ENV_FILE ]]; then
  load_env_file "$DEFAULT_ENV_FILE"
fi
set_strict "${NIX_REAPI_PROXY_PUSH_STRICT:-}"

url=${NIX_REAPI_PROXY_CACHE_URL:-}
if [[ -z $url ]]; then
  fail "NIX_REAPI_PROXY_CACHE_URL is not set: put NIX_REAPI_PROXY_CACHE_URL=https://PROXY:PORT (the proxy's binary cache) in ${NIX_REAPI_PROXY_PUSH_ENV_FILE:-$DEFAULT_ENV_FILE}; nothing was pushed."
fi
if [[ ! $url =~ $URL_RE ]]; then
  fail "NIX_REAPI_PROXY_CACHE_URL is $(shown "$url"): it must be http(s)://HOST[:PORT][/PATH], without credentials (they go in the netrc file) or a query (set NIX_REAPI_PROXY_SECRET_KEY_FILE and NIX_REAPI_PROXY_COMPRESSION instead)."
fi
url=${url%/}

compression=${NIX_REAPI_PROXY_COMPRESSION:-zstd}
case $compression in
  none | xz | zstd | bzip2 | gzip | br | lz4 | lzip) ;;
  *) fail "NIX_REAPI_PROXY_COMPRESSION is $(shown "$compression"): use one of zstd, xz, none, bzip2, gzip, br, lz4, lzip." ;;
esac
query="compression=$compression"

key=${NIX_REAPI_PROXY_SECRET_KEY_FILE:-}
if [[ -n $key ]]; then
  if [[ ! $key =~ ^/[A-Za-z0-9._/+-]+$ ]]; then
    fail "NIX_REAPI_PROXY_SECRET_KEY_FILE is $(shown "$key"): give an absolute path of letters, digits and ._/+- (it goes into the cache URL's query)."
  fi
  if [[ ! -r $key ]]; then
    fail "cannot read the secret key $key (NIX_REAPI_PROXY_SECRET_KEY_FILE): create it with nix-store --generate-binary-cache-key NAME $key PUBLIC-KEY-FILE, readable by the user Nix runs this hook as (root with the daemon)."
  fi
  query="$query&secret-key=$key"
fi

push_timeout=${NIX_REAPI_PROXY_PUSH_TIMEOUT:-600}
connect_timeout=${NIX_REAPI_PROXY_CONNECT_TIMEOUT:-10}
if ! positive_integer "$push_timeout"; then
  fail "NIX_REAPI_PROXY_PUSH_TIMEOUT is $(shown "$push_timeout"): give a whole number of seconds."
fi
if ! positive_integer "$connect_timeout"; then
  fail "NIX_REAPI_PROXY_CONNECT_TIMEOUT is $(shown "$connect_timeout"): give a whole number of seconds."
fi

# --- What was built ---------------------------------------------------------

find_nix
paths=()
out_paths=${OUT_PATHS:-}
if [[ -n $out_paths ]]; then
  # Store paths and the spaces between them; anything else (a newline, ';',
  # '$', a quote...) is refused as a whole before anything runs.
  if [[ ! $out_paths =~ $OUT_PATHS_RE ]]; then
    fail "refusing OUT_PATHS=$(shown "$out_paths"): it holds characters no store path has; nothing was run or pushed. This hook is meant to be run by Nix as post-build-hook."
  fi
  IFS=' ' read -r -a paths <<<"$out_paths"
elif [[ -n ${DRV_PATH:-} ]]; then
  # Nix 2.8.0 leaves OUT_PATHS empty (NixOS/nix#6446): ask the store for the derivation's outputs.
  if [[ ! $DRV_PATH =~ $STORE_PATH_RE || $DRV_PATH != *.drv ]]; then
    fail "refusing DRV_PATH=$(shown "$DRV_PATH"): it is not a /nix/store/...drv path; nothing was run or pushed."
  fi
  if ! outputs=$("$nix_store" --query --outputs "$DRV_PATH"); then
    fail "OUT_PATHS is empty and nix-store --query --outputs $DRV_PATH failed (error above): push its outputs by hand with nix copy --to '$url?$query' PATHS."
  fi
  while IFS= read -r line; do
    if [[ -n $line ]]; then paths+=("$line"); fi
  done <<<"$outputs"
else
  fail "OUT_PATHS and DRV_PATH are both empty: this script is meant to be run by Nix as post-build-hook (post-build-hook = $0 in nix.conf); nothing was pushed."
fi

if ((${#paths[@]} == 0)); then
  log "no outputs to push${built_by:+ for $built_by}."
  exit 0
fi
for p in "${paths[@]}"; do
  if [[ ! $p =~ $STORE_PATH_RE ]]; then
    fail "refusing to push $(shown "$p") (from OUT_PATHS or DRV_PATH's outputs): it is not a /nix/store path; nothing was run or pushed."
  fi
done

# --- Push -------------------------------------------------------------------

target="$url?$query"
by_hand="nix copy --to '$target' ${paths[*]}"
command=("$nix" --extra-experimental-features nix-command copy
  --option connect-timeout "$connect_timeout" --to "$target" -- "${paths[@]}")
if timeout_cmd=$(command -v timeout || command -v gtimeout); then
  command=("$timeout_cmd" -k 10 "$push_timeout" "${command[@]}")
else
  log "warning: no timeout command (coreutils) on PATH: the push is bounded only by Nix's connect-timeout ($connect_timeout s)."
fi

started=$SECONDS
log "pushing ${#paths[@]} path(s) and their closure to $url ..."
status=0
"${command[@]}" || status=$?
elapsed=$((SECONDS - started))
if ((status == 0)); then
  log "pushed ${paths[*]} to $url in ${elapsed}s."
  exit 0
fi

if ((status == 124 || status == 137)); then
  what="the push did not finish within NIX_REAPI_PROXY_PUSH_TIMEOUT=${push_timeout}s and was stopped"
else
  what="nix copy exited with status $status after ${elapsed}s (its error is above)"
fi
fail "could not push ${paths[*]} to $url: $what." \
  "Remote actions that use these paths fail with FAILED_PRECONDITION until they are on the proxy." \
  "To fix: check that the proxy's binary cache answers at $url, that the netrc file nix.conf's netrc-file names has 'machine <proxy host> login nix password <token>' for a token with the push right," \
  "and that the narinfos are signed by a key the proxy trusts (NIX_REAPI_PROXY_SECRET_KEY_FILE) unless the token has push-unsigned; then push by hand (as root if the netrc file and key are root's): $by_hand"
