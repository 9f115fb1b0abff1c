#!/usr/bin/env bash
# Mask the DTMF eval corpus with the in-band receiver (80 ms look-ahead) and score it.
# Usage: scripts/dtmf_corpus_eval.sh [OUT_DIR] [SET_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/callmask-dtmf-corpus}
SET=${2:-/work/shared/eval/data/dev}
export SPANDSP_DTMF_BIN=${SPANDSP_DTMF_BIN:-/tmp/callmask-eval/spandsp_dtmf}
[ -x "$SPANDSP_DTMF_BIN" ] || bash /work/shared/eval/tools/build.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/tgt-dtmf}
cargo run -q --release -p callmask-dsp --example dtmf_corpus -- "$SET" "$OUT" 80
python3 /work/shared/eval/score.py --set-dir "$SET" --masked-dir "$OUT" --json "$OUT/score.json" \
  | sed -n '/^AGGREGATE/,$p'
