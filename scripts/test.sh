#!/usr/bin/env bash
# Runs every test of kb: installs what is missing (scripts/setup.sh: PostgreSQL, pgvector,
# the local model), then the unit tests and the integration tests against a real
# PostgreSQL (kb's embedded cluster in a temporary directory) and the real model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v cargo >/dev/null 2>&1 || { echo "test: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
cargo test --locked --lib --bins --tests "$@"
