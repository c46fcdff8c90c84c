#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing (scripts/setup.sh), builds kb,
# ingests sample_docs/ into a bucket of kb's own embedded database with the local model, and
# answers example questions. Run it again: unchanged documents are recognised and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v cargo >/dev/null 2>&1 || { echo "demo: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
echo "== cargo build --bin kb (on a fresh machine the first build takes 10 to 40 minutes)"
cargo build --locked --bin kb
kb="${CARGO_TARGET_DIR:-target}/debug/kb"

echo "== kb ingest sample_docs --bucket samples"
"$kb" ingest sample_docs --bucket samples --bucket-type brand

ask() {
  echo
  echo "== kb search \"$1\" ${*:2}"
  "$kb" search "$1" --bucket samples --limit 3 "${@:2}"
}
ask "what tone do we use on LinkedIn?"
ask "can I get a refund on an annual plan?" --mode hybrid
ask "how much does the Starter plan cost?"
ask "which security certifications does Lighthouse have?"
ask "how do we handle unsubscribes and double opt-in?" --mode hybrid
