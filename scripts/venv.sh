# Sourced by scripts/schemathesis.sh and the bench scripts: ensure_venv VENV IMPORTS PACKAGE...
# makes VENV a virtual environment holding exactly PACKAGE... (pinned, from PyPI), idempotently:
# a quick no-op when its stamp matches, else a fresh environment (a half-built one from a killed
# run is not reused). IMPORTS is a Python import line that must succeed afterwards. Needs log
# and die.
ensure_venv() {
  local venv="$1" imports="$2"
  shift 2
  local py="$venv/bin/python" stamp="$venv/kb-packages.txt" # stamp written last
  [[ -x "$py" && "$(cat "$stamp" 2>/dev/null)" == "$*" ]] && return 0
  command -v python3 >/dev/null 2>&1 || die "python3 not found"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian splits venv's pip bootstrap into python3-venv.
    as_root() { if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
    log "installing python3-venv"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf -- "$venv"
  mkdir -p "$(dirname "$venv")"
  log "installing $* into $venv"
  python3 -m venv "$venv" || die "python3 -m venv $venv failed"
  "$py" -m pip install --quiet --disable-pip-version-check "$@" >&2 || die "pip install $* failed"
  "$py" -c "$imports" || die "the packages do not import after install"
  printf '%s\n' "$*" > "$stamp"
  log "installed"
}
