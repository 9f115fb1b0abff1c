#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, unit + integration tests, then the dev corpus
# through `callmask mask` scored by ../shared/eval/score.py with the acceptance thresholds.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/callmask-target}
export CARGO_TERM_COLOR=never

cargo test --workspace --locked 2>&1 | tee /tmp/callmask-cargo-test.log
./scripts/eval_corpus.sh
