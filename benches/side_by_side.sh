#!/usr/bin/env bash
# Reference vector search engines beside `kb bench search`, on the same vectors in the same run:
# FAISS exact (IndexFlatIP), FAISS HNSW and Chroma (embedded, in process). See side_by_side.py.
#
# Idempotent: installs pinned numpy, faiss-cpu, chromadb and matplotlib from PyPI into a private
# virtual environment (a quick offline no-op when they are there), then runs, with its python:
#   benches/side_by_side.sh [ARGS]            benches/side_by_side.py ARGS  (--help for them)
#   benches/side_by_side.sh plot [ARGS]       benches/plots.py ARGS         (--help for them)
# Example:
#   benches/side_by_side.sh --base base.npy --queries queries.npy --out faiss_chroma.json
#   benches/side_by_side.sh plot --out-dir plots/ faiss_chroma.json kb.json
#
# Environment knobs (optional):
#   KB_BENCH_VENV=DIR  the virtual environment (default ~/.cache/kb/venv-bench)
set -euo pipefail

# Top-level pins only; pip resolves their dependencies (chromadb brings onnxruntime, grpcio, ...).
PACKAGES=(numpy==2.4.6 faiss-cpu==1.15.1 chromadb==1.5.9 matplotlib==3.11.2)
VENV="${KB_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kb/venv-bench}"
PY="$VENV/bin/python"
STAMP="$VENV/kb-bench-packages.txt" # written last, so only a complete install matches
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { printf 'side_by_side: %s\n' "$*" >&2; }
die() { printf 'side_by_side: error: %s\n' "$*" >&2; exit 1; }

if [[ ! -x "$PY" || "$(cat "$STAMP" 2>/dev/null)" != "${PACKAGES[*]}" ]]; then
  command -v python3 >/dev/null 2>&1 || die "python3 not found"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "numpy ${PACKAGES[0]#numpy==} needs Python >= 3.11 (found $(python3 --version 2>&1))"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian splits venv's pip bootstrap into python3-venv (as scripts/schemathesis.sh does).
    as_root() { if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
    log "installing python3-venv"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends python3-venv >/dev/null
  fi
  # A fresh environment each install: a half-built one (from a killed run) is not reused.
  rm -rf -- "$VENV"
  mkdir -p "$(dirname "$VENV")"
  log "installing ${PACKAGES[*]} into $VENV"
  python3 -m venv "$VENV" \
    || die "python3 -m venv $VENV failed; on Debian install python3-venv (apt-get install python3-venv)"
  "$PY" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2 \
    || die "pip install ${PACKAGES[*]} failed"
  "$PY" -c 'import numpy, faiss, chromadb, matplotlib' || die "the packages do not import after install"
  printf '%s\n' "${PACKAGES[*]}" > "$STAMP"
  log "installed"
fi

if [[ "${1:-}" == plot ]]; then
  shift
  exec "$PY" "$HERE/plots.py" "$@"
fi
exec "$PY" "$HERE/side_by_side.py" "$@"
