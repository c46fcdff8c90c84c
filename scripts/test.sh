#!/usr/bin/env bash
# Runs every test of kb: installs what is missing (scripts/setup.sh: PostgreSQL, pgvector,
# the local model; scripts/schemathesis.sh: schemathesis for the OpenAPI test), then the
# unit tests and the integration tests against a real PostgreSQL (kb's embedded cluster in
# a temporary directory) and the real model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# schemathesis (pinned, in its own virtual environment) for the OpenAPI test.
KB_SCHEMATHESIS="$(bash scripts/schemathesis.sh)"
export KB_SCHEMATHESIS
bash scripts/mcp-client.sh  # the MCP TypeScript SDK (npm ci, pinned) for tests/it/mcp.rs
command -v cargo >/dev/null 2>&1 || { echo "test: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
cargo test --locked --lib --bins --tests "$@"
