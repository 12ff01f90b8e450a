# The two set-up commands of the README: `make demo` and `make test`. Both install what they need
# on a fresh Debian machine as root (apt packages once, then a virtualenv with vipdrain).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := keepalived haproxy iproute2 nftables ruby shellcheck prometheus python3 python3-venv python3-pip
APT_STAMP := $(VENV)/.apt-installed
VENV_STAMP := $(VENV)/.installed

.PHONY: setup demo test lint unit lab generate check-generated bench package-keepalived release release-check clean

setup: $(VENV_STAMP)

$(APT_STAMP):
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV_STAMP): $(APT_STAMP) pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,demo]'
	@touch $@

# The main job: a 3-VM lab, a rolling `bosh deploy` under load, a report and a timeline picture.
demo: setup
	$(VENV)/bin/vipdrain demo --out out/demo

# Everything CI runs: lint, the release check, the generated-files check, unit tests, lab tests
# and BDD scenarios.
test: setup lint release-check
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check src tests bench scripts

unit: setup
	$(VENV)/bin/pytest tests/unit

lab: setup
	$(VENV)/bin/pytest -m lab

generate: setup
	$(VENV)/bin/vipdrain generate-job

check-generated: setup
	$(VENV)/bin/vipdrain generate-job --check

# Optional (not in CI): compile keepalived the way the BOSH package does, from Debian's source.
package-keepalived:
	bash tests/bosh/package_keepalived.sh

# The BOSH release tarball, on an operator's workstation with the bosh CLI, git and internet
# (docs/BOSH.md, "Build the release"). Needs a python with PyYAML: the .venv of `make setup`,
# or PYTHON=... ; not `setup` itself, which installs the lab's apt packages.
RELEASE_TARBALL ?= dev_releases/vipdrain-dev.tgz
release:
	scripts/make-release.sh $(RELEASE_TARBALL)

# bosh-cli's rules on a copy of the tree plus what `make release` fetches (CI: the wheels from
# PyPI, a stand-in named like the keepalived tarball; blobs added as `bosh add-blob` would).
release-check: setup
	rm -rf out/release-check out/release-check-blobs
	mkdir -p out/release-check
	cp -R config jobs packages src pyproject.toml out/release-check/
	$(PY) scripts/release_blobs.py fetch --dest out/release-check-blobs --keepalived-stand-in
	$(PY) scripts/release_blobs.py add --release-dir out/release-check --dest out/release-check-blobs --stand-in
	$(PY) scripts/release_rules.py out/release-check

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
