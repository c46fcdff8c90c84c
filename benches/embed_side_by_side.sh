#!/usr/bin/env bash
# kb's local embedder against sentence-transformers on the same model files and texts, in one run,
# in turns (benches/embed_side_by_side.py --help for what is measured).
#
# Idempotent: installs pinned torch and sentence-transformers from PyPI into a private virtual
# environment (a no-op when they are there; torch brings several GB), builds kb in release mode,
# then runs the comparison on the model scripts/setup.sh installs:
#   benches/embed_side_by_side.sh [--reps 5] [--lengths 32,128,256] [--json FILE]
#
# Environment knobs (optional):
#   KB_EMBED_VENV=DIR  the virtual environment (default ~/.cache/kb/venv-embed)
#   KB_MODEL_DIR=DIR   the model directory (default: the one scripts/setup.sh installs)
set -euo pipefail

PACKAGES=(torch==2.15.0 sentence-transformers==6.3.0)
VENV="${KB_EMBED_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kb/venv-embed}"
PY="$VENV/bin/python"
STAMP="$VENV/kb-bench-packages.txt" # written last, so only a complete install matches
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

log() { printf 'embed_side_by_side: %s\n' "$*" >&2; }
die() { printf 'embed_side_by_side: error: %s\n' "$*" >&2; exit 1; }

if [[ ! -x "$PY" || "$(cat "$STAMP" 2>/dev/null)" != "${PACKAGES[*]}" ]]; then
  command -v python3 >/dev/null 2>&1 || die "python3 not found"
  rm -rf -- "$VENV"
  mkdir -p "$(dirname "$VENV")"
  log "installing ${PACKAGES[*]} into $VENV"
  python3 -m venv "$VENV" \
    || die "python3 -m venv $VENV failed; on Debian install python3-venv (apt-get install python3-venv)"
  "$PY" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2 \
    || die "pip install ${PACKAGES[*]} failed"
  "$PY" -c 'import torch, sentence_transformers' || die "the packages do not import after install"
  printf '%s\n' "${PACKAGES[*]}" > "$STAMP"
  log "installed"
fi

bash "$ROOT/scripts/setup.sh" >&2
MODEL_DIR="${KB_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kb/models/all-MiniLM-L6-v2}"
[[ -f "$MODEL_DIR/modules.json" ]] || die "no sentence-transformers model in $MODEL_DIR"
log "building kb (release)"
(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
exec "$PY" "$HERE/embed_side_by_side.py" --kb "$ROOT/target/release/kb" --model-dir "$MODEL_DIR" "$@"
