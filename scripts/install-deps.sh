#!/usr/bin/env bash
# Installs everything the test suite and the demo need on Debian 12, as root:
# Nix 2.8 (usable offline), Bazel 4.2.3 and its sources (for the remote worker
# and the stand-in rule repositories), OpenSSH (ssh-ng store tests), HAProxy (the
# HTTP/2 front tests) and the npm
# dependencies. Idempotent: when everything is in place it prints nothing and
# takes well under a second. Needs no network beyond apt and npm.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: must run as root (it installs Debian packages and writes /etc/nix/nix.conf)" >&2
  exit 1
fi

log=$(mktemp -t install-deps.XXXXXX.log)
policy_created=
cleanup() {
  if [[ -n $policy_created ]]; then rm -f /usr/sbin/policy-rc.d; fi
  rm -f "$log"
}
trap cleanup EXIT

fail() {
  echo "install-deps: $1 failed; its output:" >&2
  cat "$log" >&2
  exit 1
}

installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# nix-setup-systemd (a Recommends of nix-bin) creates the nixbld group and build
# users; without it every build fails. Named explicitly so it is installed even
# where apt is configured to skip Recommends.
with_recommends=(nix-bin nix-setup-systemd)
# Bazel pulls in a JDK and build-essential; its Recommends are not needed.
without_recommends=(bazel-bootstrap bazel-bootstrap-source default-jdk-headless openssh-server util-linux openssl nfs-ganesha nfs-ganesha-vfs haproxy)

missing_with=()
missing_without=()
for p in "${with_recommends[@]}"; do installed "$p" || missing_with+=("$p"); done
for p in "${without_recommends[@]}"; do installed "$p" || missing_without+=("$p"); done

if (( ${#missing_with[@]} + ${#missing_without[@]} > 0 )); then
  export DEBIAN_FRONTEND=noninteractive
  # Installing openssh-server must not start a system sshd on port 22: tests
  # start their own on loopback. policy-rc.d exit 101 forbids service starts.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  apt-get update -qq > "$log" 2>&1 || fail "apt-get update"
  apt_opts=(-y -qq -o Dpkg::Use-Pty=0)
  if (( ${#missing_with[@]} > 0 )); then
    apt-get install "${apt_opts[@]}" --install-recommends "${missing_with[@]}" > "$log" 2>&1 \
      || fail "apt-get install ${missing_with[*]}"
  fi
  if (( ${#missing_without[@]} > 0 )); then
    apt-get install "${apt_opts[@]}" --no-install-recommends "${missing_without[@]}" > "$log" 2>&1 \
      || fail "apt-get install ${missing_without[*]}"
  fi
  for p in "${missing_with[@]}" "${missing_without[@]}"; do
    echo "installed $p $(dpkg-query -W -f='${Version}' "$p")"
  done
fi

# --- /etc/nix/nix.conf: offline and without a sandbox ----------------------
# Only the three keys below are touched; every other line is kept as it is.
conf=/etc/nix/nix.conf
mkdir -p /etc/nix
touch "$conf"

# set_key KEY VALUE: make "KEY = VALUE" the only setting of KEY.
set_key() {
  local key=$1 value=$2
  local want="$key = $value"
  if grep -Eq "^[[:space:]]*${key}[[:space:]]*=" "$conf"; then
    if [[ $(grep -E "^[[:space:]]*${key}[[:space:]]*=" "$conf") == "$want" ]]; then return; fi
    local tmp
    tmp=$(mktemp "$conf.XXXXXX")
    awk -v key="$key" -v want="$want" '
      $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { if (!done) print want; done = 1; next }
      { print }' "$conf" > "$tmp"
    chmod 644 "$tmp"
    mv "$tmp" "$conf"
  else
    printf '%s\n' "$want" >> "$conf"
  fi
  echo "set '$want' in $conf"
}

# An empty substituter list: otherwise every query spends seconds failing DNS
# for cache.nixos.org.
set_key substituters ''
set_key sandbox false
# Keep any experimental features already enabled; add nix-command.
features=$(sed -nE 's/^[[:space:]]*experimental-features[[:space:]]*=(.*)$/\1/p' "$conf" | tail -n 1 | xargs || true)
if [[ " $features " != *" nix-command "* ]]; then
  set_key experimental-features "$(echo "$features nix-command" | xargs)"
fi

# The worker's namespace bind-mounts a chroot store over /nix/store, so the
# mount point must exist; initialising the store creates it and the database.
if [[ ! -d /nix/store || ! -e /nix/var/nix/db/db.sqlite ]]; then
  nix-store --init > "$log" 2>&1 || fail "nix-store --init"
  echo "initialised the Nix store /nix/store"
fi

# --- npm dependencies -------------------------------------------------------
# npm records what it installed in node_modules/.package-lock.json. The tree is
# stale when a package the lock file requires (optional, platform-specific ones
# aside) is missing or has another version there. Content, not mtimes: an edit
# to package.json's scripts must not make this wipe node_modules under tests
# that are running.
npm_stale() {
  node -e '
    const fs = require("fs");
    const read = (f) => { try { return JSON.parse(fs.readFileSync(f, "utf8")).packages || {}; } catch { return null; } };
    const want = read("package-lock.json"), have = read("node_modules/.package-lock.json");
    if (!want || !have) process.exit(0);
    for (const [name, p] of Object.entries(want)) {
      if (name === "" || p.optional || p.link) continue;
      if (!have[name] || have[name].version !== p.version) process.exit(0);
    }
    process.exit(1);'
}
if npm_stale; then
  npm ci --no-audit --no-fund --loglevel=error > "$log" 2>&1 || fail "npm ci"
  echo "installed npm dependencies (npm ci)"
fi
