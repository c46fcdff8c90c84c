#!/usr/bin/env bash
# Reference BM25 on a collection in BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv or
# qrels.tsv), for comparison with `kb eval`'s lexical mode (BENCHMARKS.md).
#
# Scoring: rank_bm25's BM25Okapi (PyPI `rank-bm25`, in a private virtual environment under
# ~/.cache/kb/venv-bm25), one bag of tokens per document (title + text, as `kb eval` ingests it).
# Tokenisation: exactly kb's, taken from PostgreSQL: `knowledge_tsvector('english', ...)`
# (migrations/0008_lexical_search.sql), each lexeme repeated once per position; a query's
# tokens are its distinct lexemes, as in kb. So the comparison is of ranking, not of tokenisers.
#
# Usage: benches/reference_bm25.sh DIR [k1] [b]
#   The database is DATABASE_URL, else kb's embedded cluster (KB_DATA_DIR as for kb; the kb
#   binary is $KB, default `kb`). Prints one JSON object per scorer.
set -euo pipefail

dir=${1:?usage: benches/reference_bm25.sh DIR [k1] [b]}
k1=${2:-1.2}
b=${3:-0.75}
here=$(cd "$(dirname "$0")" && pwd)
venv=${XDG_CACHE_HOME:-$HOME/.cache}/kb/venv-bm25
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import rank_bm25, numpy' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'rank-bm25==0.2.2' 'numpy>=1.24'
fi

url=${DATABASE_URL:-}
if [ -z "$url" ]; then
  url=$("${KB:-kb}" db start | sed -n 's/^running: //p')
fi
psql_bin=psql
if ! command -v psql >/dev/null; then
  psql_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)/psql
fi

qrels=$dir/qrels/test.tsv
[ -f "$qrels" ] || qrels=$dir/qrels.tsv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# JSON lines are read as single text fields (a CSV whose quote and delimiter never occur).
tokens() { # $1 = file, $2 = SQL expression of the text from j (jsonb), $3 = distinct (true/false)
  "$psql_bin" "$url" -v ON_ERROR_STOP=1 -qAt -F $'\t' <<SQL
CREATE TEMP TABLE lines (line text);
\copy lines (line) FROM '$1' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT j->>'_id',
       CASE WHEN $3 THEN array_to_string(tsvector_to_array(v), ' ')
            ELSE array_to_string(ARRAY(
                   SELECT u.lexeme FROM unnest(v) u,
                          generate_series(1, coalesce(array_length(u.positions, 1), 1))), ' ')
       END
FROM (SELECT line::jsonb AS j FROM lines WHERE btrim(line) <> '') l,
     LATERAL (SELECT public.knowledge_tsvector('english', $2) AS v) t;
SQL
}
# The document text exactly as `kb eval` writes it: title, blank line, text.
tokens "$dir/corpus.jsonl" \
  "concat_ws(E'\n\n', nullif(btrim(j->>'title'), ''), nullif(btrim(j->>'text'), ''))" false > "$tmp/docs.tsv"
tokens "$dir/queries.jsonl" "j->>'text'" true > "$tmp/queries.tsv"

"$venv/bin/python" "$here/reference_bm25.py" "$tmp/docs.tsv" "$tmp/queries.tsv" "$qrels" "$k1" "$b"
