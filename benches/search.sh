#!/usr/bin/env bash
# BENCHMARKS.md's search tables and plots in one command, on the same vectors in one run:
#   1. kb's side: `kb bench search` (kb's SQL and HTTP search, the spec's function, the
#      ivfflat and hnsw effort sweeps, filters, throughput by clients) on rows derived from
#      Debian's package descriptions (and NFCorpus where ../shared/data/nfcorpus is, or
#      $KB_BENCH_NFCORPUS), embedded once with kb's model and cached in ~/.cache/kb/bench;
#   2. FAISS exact, FAISS HNSW and Chroma on the same rows and queries (side_by_side.sh,
#      a private venv);
#   3. the plots, into benches/plots/<rows>/.
# Usage: benches/search.sh [ROWS]   (default 100000, ~15 min; 1000000 is the long run, ~1 h)
# Above 100k rows the index-build sweep is left to the 100k run (each build takes minutes
# per 100k rows): kb builds its default graph only and sweeps ef_search, and Chroma runs
# unfiltered (its filtered search scans: 75-88 ms per query at 100k); FAISS HNSW also runs
# with kb's graph (m 32, ef_construction 128) up to ef_search 1024.
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
results=("$out/kb.json" "$out/side_by_side.json")
if (( rows > 100000 )); then
  extra+=(--methods hnsw)
fi
KB_DATA_DIR=${KB_BENCH_DATA_DIR:-/tmp/kb-bench-cluster} KB_LOG=warn \
  target/release/kb bench search --rows "$rows" --out "$out" "${extra[@]}"
vectors=(--base "$out/vectors.npy" --queries "$out/queries.npy")
if (( rows > 100000 )); then
  benches/side_by_side.sh "${vectors[@]}" --engines faiss-flat,faiss-hnsw --out "$out/side_by_side.json"
  benches/side_by_side.sh "${vectors[@]}" --engines chroma --filters "" --out "$out/side_by_side_chroma.json"
  # FAISS with kb's graph, searched as wide as kb's default searches at this size.
  benches/side_by_side.sh "${vectors[@]}" --engines faiss-hnsw --hnsw-m 32 --hnsw-ef-construction 128 \
    --hnsw-ef 256,512,1024 --filters "" --out "$out/side_by_side_faiss_m32.json"
  results+=("$out/side_by_side_chroma.json" "$out/side_by_side_faiss_m32.json")
else
  benches/side_by_side.sh "${vectors[@]}" --out "$out/side_by_side.json"
fi
benches/side_by_side.sh plot --out-dir "benches/plots/$rows" "${results[@]}"
echo "results: ${results[*]}; plots: benches/plots/$rows/" >&2
