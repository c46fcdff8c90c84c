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
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { printf 'side_by_side: %s\n' "$*" >&2; }
die() { printf 'side_by_side: error: %s\n' "$*" >&2; exit 1; }

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "numpy ${PACKAGES[0]#numpy==} needs Python >= 3.11 (found $(python3 --version 2>&1))"
# shellcheck source=scripts/venv.sh
source "$HERE/../scripts/venv.sh"
ensure_venv "$VENV" 'import numpy, faiss, chromadb, matplotlib' "${PACKAGES[@]}"

if [[ "${1:-}" == plot ]]; then
  shift
  exec "$PY" "$HERE/plots.py" "$@"
fi
exec "$PY" "$HERE/side_by_side.py" "$@"
