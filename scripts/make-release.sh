#!/usr/bin/env bash
# From a clone to a dev release tarball, on an operator's workstation with the bosh CLI, git and
# internet access (docs/BOSH.md, "Build the release"):
#
#   make release                          # = scripts/make-release.sh dev_releases/vipdrain-dev.tgz
#
# 1. fetch the blobs into .release/blobs/: keepalived's source tarball (the version
#    haproxy-boshrelease ships, refused unless its sha256 is the pinned one) and the wheels of
#    pyproject.toml's dependencies for the vendored python (3.12, manylinux x86_64, binary only);
# 2. make config/blobs.yml list exactly those: `bosh remove-blob` for stale ones, `bosh add-blob`;
# 3. `bosh vendor-package python-3.12` from cloudfoundry/bosh-package-python-release (a pinned
#    commit) into this release's blobstore - for dev releases the local one in .blobstore/
#    (config/final.yml), which needs no credentials;
# 4. the release check: bosh-cli's rules applied to the tree (scripts/release_rules.py);
# 5. `bosh create-release --force --tarball TARBALL`.
#
# Environment: BOSH (the bosh CLI, default `bosh`), PYTHON (a python with PyYAML; default the
# .venv of `make setup`, else python3), PYTHON_RELEASE_DIR (a checkout of
# bosh-package-python-release; default: cloned into .release/), KEEPALIVED_TARBALL (a
# keepalived-X.tar.gz downloaded already; verified like a download).
# KEEPALIVED_STAND_IN=1 (tests only) puts a file with the tarball's name in its place: the
# release then builds but its keepalived package cannot compile.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
tarball="${1:-dev_releases/vipdrain-dev.tgz}"
bosh="${BOSH:-bosh}"
python="${PYTHON:-}"
if [[ -z $python ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
# The commit of cloudfoundry/bosh-package-python-release whose python-3.12 package (compile.env,
# runtime.env) the vipdrain packaging was tested against (tests/bosh/fixtures/python-3.12/).
python_release_commit=07a34fe27da6f13266208289b07a29daf0213f3d
python_release="${PYTHON_RELEASE_DIR:-.release/bosh-package-python-release}"

if ! command -v "$bosh" >/dev/null 2>&1; then
  echo "make-release: the bosh CLI ($bosh) is not on PATH: https://bosh.io/docs/cli-v2-install/" >&2
  exit 1
fi

step() { printf '\n== %s\n' "$*" >&2; }

step "1/5 fetch the blobs into .release/blobs"
fetch=(--dest .release/blobs)
if [[ ${KEEPALIVED_STAND_IN:-0} == 1 ]]; then
  fetch+=(--keepalived-stand-in)
elif [[ -n ${KEEPALIVED_TARBALL:-} ]]; then
  fetch+=(--keepalived-tarball "$KEEPALIVED_TARBALL")
fi
"$python" scripts/release_blobs.py fetch "${fetch[@]}"

step "2/5 bosh add-blob (config/blobs.yml lists exactly the fetched blobs)"
"$python" scripts/release_blobs.py add --dest .release/blobs --bosh "$bosh"

step "3/5 bosh vendor-package python-3.12 (into the blobstore of config/final.yml)"
if [[ -z ${PYTHON_RELEASE_DIR:-} && ! -d $python_release/.git ]]; then
  mkdir -p "$(dirname "$python_release")"
  git clone --quiet https://github.com/cloudfoundry/bosh-package-python-release "$python_release"
fi
if [[ -z ${PYTHON_RELEASE_DIR:-} ]]; then
  git -C "$python_release" -c advice.detachedHead=false checkout --quiet "$python_release_commit"
fi
"$bosh" vendor-package python-3.12 "$python_release"

step "4/5 release check (bosh-cli's rules)"
"$python" scripts/release_rules.py .

step "5/5 bosh create-release --force --tarball $tarball"
mkdir -p "$(dirname "$tarball")"
"$bosh" create-release --force --tarball "$tarball"
echo "release tarball: $tarball (upload it with: bosh upload-release $tarball)" >&2
