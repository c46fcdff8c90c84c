#!/usr/bin/env bash
# BENCHMARKS.md's search tables and plots in one command, on the same vectors in one run:
#   1. kb's side: `kb bench search` (kb's SQL and HTTP search, the spec's function, the
#      ivfflat and hnsw effort sweeps, filters, throughput by clients) on rows derived from
#      Debian's package descriptions (and NFCorpus where ../shared/data/nfcorpus is, or
#      $KB_BENCH_NFCORPUS), embedded once with kb's model and cached in ~/.cache/kb/bench;
#   2. FAISS exact, FAISS HNSW and Chroma on the same rows and queries (side_by_side.sh,
#      a private venv);
#   3. the plots, into benches/plots/<rows>/.
# Usage: benches/search.sh [ROWS]   (default 100000; 1000000 is the long run, over an hour)
# The bench's cluster lives in $KB_BENCH_DATA_DIR (default /tmp/kb-bench-cluster).
set -euo pipefail
rows=${1:-100000}
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
cargo build --release --locked --bin kb
out=target/bench-search/$rows
nfcorpus=${KB_BENCH_NFCORPUS:-../shared/data/nfcorpus}
extra=()
if [[ -f "$nfcorpus/corpus.jsonl" ]]; then extra=(--nfcorpus "$nfcorpus"); fi
KB_DATA_DIR=${KB_BENCH_DATA_DIR:-/tmp/kb-bench-cluster} KB_LOG=warn \
  target/release/kb bench search --rows "$rows" --out "$out" "${extra[@]}"
benches/side_by_side.sh --base "$out/vectors.npy" --queries "$out/queries.npy" --out "$out/side_by_side.json"
benches/side_by_side.sh plot --out-dir "benches/plots/$rows" "$out/kb.json" "$out/side_by_side.json"
echo "results: $out/kb.json, $out/side_by_side.json; plots: benches/plots/$rows/" >&2
