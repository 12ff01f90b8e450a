# shellcheck shell=bash
# Shared by every lifecycle script of the keepalived job: paths, the Python runtime, logging.
#
# `vipdrain generate-job` pastes this file in place of the line that sources it, so each script
# in jobs/keepalived/templates/ stands alone on a VM; run from lifecycle/ the line sources it.
# Nothing here writes to stdout: the drain script's stdout belongs to its one integer.

# BOSH's root; the lab (and any non-BOSH use) points it elsewhere, as vipdrain itself does.
ROOT="${VIPDRAIN_ROOT:-/var/vcap}"
JOB=keepalived
JOB_DIR="$ROOT/jobs/$JOB"
LOG_DIR="$ROOT/sys/log/$JOB"
# shellcheck disable=SC2034  # used by keepalived_ctl
RUN_DIR="$ROOT/sys/run/$JOB"
# One chronological log for every hook: drain, stop, pre-start, start, post-start read in order.
LOG_FILE="$LOG_DIR/lifecycle.log"
STEP="$(basename "$0")"

# Put the job's packages on PATH: python + vipdrain through their runtime.env files (the
# convention of cloudfoundry/bosh-package-python-release), keepalived's sbin for `keepalived -t`
# and for starting it. A missing file is skipped, so the scripts also run where vipdrain is
# installed another way; `require_vipdrain` then says which files were expected.
load_runtime() {
  local env_file nounset=0
  # runtime.env files may expand variables that are unset here (python's: `...:$PYTHONPATH`).
  if [[ $- == *u* ]]; then nounset=1; fi
  set +u
  for env_file in "$ROOT/packages/python-3.12/bosh/runtime.env" "$ROOT/packages/vipdrain/bosh/runtime.env"; do
    # shellcheck disable=SC1090  # the files exist only on a VM
    if [[ -f $env_file ]]; then source "$env_file"; fi
  done
  if ((nounset)); then set -u; fi
  PATH="$ROOT/packages/keepalived/sbin:$ROOT/packages/keepalived/bin:$PATH"
  export PATH
  # keepalived.conf runs vipdrain (health check, notify hook) through this job's wrapper, which
  # brings the runtime with it: keepalived's scripts inherit no runtime.env of their own.
  if [[ -z ${VIPDRAIN_CMD:-} && -x $JOB_DIR/bin/vipdrain ]]; then
    export VIPDRAIN_CMD="$JOB_DIR/bin/vipdrain"
  fi
}

# One log line: timestamped into the log file and, bare, to stderr (never stdout).
log() {
  mkdir -p "$LOG_DIR" 2>/dev/null || true
  printf '%(%Y-%m-%dT%H:%M:%S%z)T %s[%d]: %s\n' -1 "$STEP" "$$" "$*" >>"$LOG_FILE" 2>/dev/null || true
  printf '%s: %s\n' "$STEP" "$*" >&2
}

# Copy lines from stdin to stdout unchanged and, timestamped, to the log file.
tee_log() {
  local line
  mkdir -p "$LOG_DIR" 2>/dev/null || true
  while IFS= read -r line || [[ -n $line ]]; do
    printf '%s\n' "$line"
    printf '%(%Y-%m-%dT%H:%M:%S%z)T %s[%d]: %s\n' -1 "$STEP" "$$" "$line" >>"$LOG_FILE" 2>/dev/null || true
  done
}

require_vipdrain() {
  if ! command -v vipdrain >/dev/null 2>&1; then
    log "vipdrain is not on PATH: expected $ROOT/packages/vipdrain/bosh/runtime.env (packages python-3.12 and vipdrain)"
    exit 127
  fi
}

# Run `vipdrain <step> --root <root> ARGS...`: its stdout stays ours, its stderr goes to our
# stderr and, timestamped, to the log. Returns vipdrain's exit code.
run_vipdrain() {
  local subcommand="$1"
  shift
  vipdrain "$subcommand" --root "$ROOT" "$@" 2> >(tee_log >&2)
}
