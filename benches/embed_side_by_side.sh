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
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

log() { printf 'embed_side_by_side: %s\n' "$*" >&2; }
die() { printf 'embed_side_by_side: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/venv.sh
source "$HERE/../scripts/venv.sh"
ensure_venv "$VENV" 'import torch, sentence_transformers' "${PACKAGES[@]}"

bash "$ROOT/scripts/setup.sh" >&2
MODEL_DIR="${KB_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kb/models/all-MiniLM-L6-v2}"
[[ -f "$MODEL_DIR/modules.json" ]] || die "no sentence-transformers model in $MODEL_DIR"
log "building kb (release)"
(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
exec "$PY" "$HERE/embed_side_by_side.py" --kb "$ROOT/target/release/kb" --model-dir "$MODEL_DIR" "$@"
