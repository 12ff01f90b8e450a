#!/usr/bin/env bash
# Exercise packages/keepalived/packaging the way a BOSH compilation VM runs it. Optional (it
# compiles C for a minute or two; not run in CI):
#
#   make package-keepalived            # or: bash tests/bosh/package_keepalived.sh [WORK_DIR]
#
# Steps (Debian 12, as root):
#   1. build tools: gcc, make, the OpenSSL headers (apt-get install build-essential libssl-dev);
#      installed here when missing;
#   2. the source: the release's own blob - keepalived 2.3.4, pinned by sha256 in
#      scripts/release_blobs.py - from KEEPALIVED_TARBALL, from .release/blobs/ (where `make
#      release` fetched it) or downloaded from keepalived.org; where none of these works (no
#      internet), Debian's source of keepalived: `apt-get source --download-only keepalived`. That
#      needs deb-src entries; this script makes them in a private apt directory from the machine's
#      own deb822 sources file (Types: deb -> deb-src), so the system's apt configuration is not
#      changed;
#   3. the upstream tarball (Debian's keepalived_X.Y.Z.orig.tar.gz is one) is staged the way BOSH
#      stages the blob: keepalived/keepalived-X.Y.Z.tar.gz in a fresh compile directory;
#   4. `bash -x packaging` runs there with BOSH_INSTALL_TARGET, BOSH_PACKAGES_DIR and a minimal
#      PATH, in an isolated environment, as the agent does;
#   5. the installed keepalived prints its version, and `keepalived -t` accepts a small
#      VRRP-only config.
# Nothing outside WORK_DIR (default: a new temp dir, kept for inspection) is written.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="${1:-$(mktemp -d -t vipdrain-keepalived-XXXXXX)}"
mkdir -p "$work"
echo "work dir: $work"

missing=()
for pkg in gcc make libssl-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing build tools: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential libssl-dev
fi

# The release's pinned tarball first (verified by scripts/release_blobs.py), Debian's second.
python="$repo/.venv/bin/python"
[[ -x $python ]] || python=python3
pinned_args=(--dest "$work/pinned")
for candidate in "${KEEPALIVED_TARBALL:-}" "$repo"/.release/blobs/keepalived/keepalived-*.tar.gz; do
  if [[ -n $candidate && -f $candidate ]]; then
    pinned_args+=(--keepalived-tarball "$candidate")
    break
  fi
done
orig=""
if orig="$("$python" "$repo/scripts/release_blobs.py" keepalived "${pinned_args[@]}")"; then
  version="$(basename "$orig" .tar.gz)"
  version="${version#keepalived-}"
  echo "keepalived $version: the release's pinned tarball"
elif [[ -n ${KEEPALIVED_TARBALL:-} ]]; then
  exit 1 # the tarball named is not the pinned one: release_blobs.py said why
else
  orig=""
  echo "no pinned keepalived tarball (set KEEPALIVED_TARBALL or run make release): using Debian's source" >&2
fi

if [[ -z $orig ]]; then
# A private apt state with deb-src entries made from the machine's deb822 sources.
apt_dir="$work/apt"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
found_sources=0
for sources in /etc/apt/sources.list.d/*.sources; do
  [[ -f $sources ]] || continue
  sed 's/^Types:.*/Types: deb-src/' "$sources" >"$apt_dir/sources.list.d/$(basename "$sources")"
  found_sources=1
done
if ((found_sources == 0)); then
  echo "no /etc/apt/sources.list.d/*.sources file to derive deb-src entries from;" >&2
  echo "add a deb-src line for your mirror to /etc/apt/sources.list, apt-get update, then" >&2
  echo "run: apt-get source --download-only keepalived (in $work/src) and re-run this script" >&2
  exit 1
fi
apt_opts=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
)
mkdir -p "$work/src"
if ! compgen -G "$work/src/keepalived_*.orig.tar.gz" >/dev/null; then
  apt-get "${apt_opts[@]}" update -qq
  # Only the upstream tarball is needed: a failure to fetch the Debian patches is not fatal.
  (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only keepalived) ||
    echo "apt-get source failed; carrying on if the upstream tarball arrived" >&2
fi
orig="$(compgen -G "$work/src/keepalived_*.orig.tar.gz" | head -n 1 || true)"
if [[ -z $orig ]]; then
  echo "no keepalived_*.orig.tar.gz in $work/src: apt-get source did not deliver it" >&2
  exit 1
fi
version="$(basename "$orig" .orig.tar.gz)"
version="${version#keepalived_}"
echo "keepalived $version from $(basename "$orig")"
fi

# Stage the package as BOSH does: spec files (the blob) under a fresh compile directory.
compile="$work/compile"
install="$work/install/keepalived"
rm -rf "$compile" "$install"
mkdir -p "$compile/keepalived" "$install"
cp "$orig" "$compile/keepalived/keepalived-$version.tar.gz"
cp "$repo/packages/keepalived/packaging" "$compile/packaging"

(
  cd "$compile"
  env -i \
    BOSH_COMPILE_TARGET="$compile" \
    BOSH_INSTALL_TARGET="$install" \
    BOSH_PACKAGE_NAME=keepalived \
    BOSH_PACKAGES_DIR="$work/install" \
    PATH=/usr/local/bin:/usr/bin:/bin \
    bash -x packaging
) >"$work/compile.log" 2>&1 || {
  tail -n 40 "$work/compile.log" >&2
  echo "packaging failed: see $work/compile.log" >&2
  exit 1
}

"$install/sbin/keepalived" --version
# keepalived -t wants an existing, non-loopback interface: the default route's, else any.
iface="$(ip route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')"
if [[ -z $iface ]]; then
  iface="$(ip -o link show | awk -F': ' '$2 != "lo" { sub(/@.*/, "", $2); print $2; exit }')"
fi
if [[ -z $iface ]]; then
  echo "ok: $install/sbin/keepalived built (no non-loopback interface here for keepalived -t)"
  exit 0
fi
conf="$work/check.conf"
cat >"$conf" <<CONF
global_defs {
  router_id vipdrain_package_check
}
vrrp_instance vip_1 {
  state BACKUP
  interface $iface
  virtual_router_id 51
  priority 100
  advert_int 1
  unicast_peer {
    192.0.2.11
  }
  virtual_ipaddress {
    192.0.2.100/32
  }
}
CONF
"$install/sbin/keepalived" -t -f "$conf"
echo "ok: $install/sbin/keepalived (log: $work/compile.log)"
