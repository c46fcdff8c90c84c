#!/usr/bin/env bash
# Idempotent: installs schemathesis (pinned) from PyPI into a private virtual environment,
# for the OpenAPI test (tests/it/http/openapi.rs); a quick offline no-op when it is there.
# Prints the path of the schemathesis executable on stdout (logs go to stderr), so:
#   export KB_SCHEMATHESIS="$(bash scripts/schemathesis.sh)"
#
# Environment knobs (optional):
#   KB_SCHEMATHESIS_VENV=DIR  the virtual environment (default ~/.cache/kb/venv-schemathesis)
set -euo pipefail

VERSION="4.32.5"
VENV="${KB_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kb/venv-schemathesis}"
BIN="$VENV/bin/schemathesis"

log() { printf 'schemathesis: %s\n' "$*" >&2; }
die() { printf 'schemathesis: error: %s\n' "$*" >&2; exit 1; }

installed_version() {
  [[ -x "$BIN" ]] || return 0
  "$BIN" --version 2>/dev/null | awk '{ print $NF }'
}

if [[ "$(installed_version)" == "$VERSION" ]]; then
  log "$VERSION: ok ($BIN)"
  printf '%s\n' "$BIN"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 not found (it also installs the model: run scripts/setup.sh)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "schemathesis $VERSION needs Python >= 3.10 (found $(python3 --version 2>&1))"
# shellcheck source=scripts/venv.sh
source "$(dirname "$0")/venv.sh"
ensure_venv "$VENV" 'import schemathesis' "schemathesis==$VERSION"
[[ "$(installed_version)" == "$VERSION" ]] || die "schemathesis $VERSION not runnable at $BIN after install"
log "$VERSION: installed ($BIN)"
printf '%s\n' "$BIN"
