#!/usr/bin/env bash
# Fuzzes /rest/v1's request grammar (fuzz/fuzz_targets/rest_parse.rs, libFuzzer through
# cargo fuzz) for a bounded time: SECONDS (default 60). Installs what it needs, idempotently:
# the nightly toolchain (cargo fuzz builds with sanitizers) and cargo-fuzz. A crash fails
# the run and leaves its input under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"

log() { printf 'fuzz: %s\n' "$*" >&2; }

command -v rustup >/dev/null 2>&1 || { log "rustup not found: install Rust with rustup (https://rustup.rs)"; exit 1; }
if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing the nightly toolchain (minimal profile)"
  rustup toolchain install nightly --profile minimal >&2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked >&2
fi
mkdir -p fuzz/corpus/rest_parse
log "running rest_parse for ${SECONDS_TO_RUN}s"
cargo +nightly fuzz run rest_parse fuzz/corpus/rest_parse fuzz/seeds/rest_parse -- \
  -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -timeout=10 -print_final_stats=1 >&2
log "no crash"
