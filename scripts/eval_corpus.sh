#!/usr/bin/env bash
# Runs the dev corpus (../shared/eval/data/dev, 20 calls) through `callmask mask` and scores
# the output with ../shared/eval/score.py, then checks the acceptance thresholds:
#   DTMF-only: 0 in-band tones leaked, 0 still decodable by spandsp or multimon-ng,
#              0 negative controls muted, < 0.5 % of speech over-masked.
# Output: /tmp/callmask-eval/dtmf/ (masked WAVs, span reports, score.json).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${CALLMASK_SHARED:-$(cd .. && pwd)/shared}
EVAL="$SHARED/eval"
export SPANDSP_DTMF_BIN=${SPANDSP_DTMF_BIN:-/tmp/callmask-eval/spandsp_dtmf}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/callmask-target}
OUT=${OUT:-/tmp/callmask-eval/dtmf}

# The debug build is fast enough for 20 minutes of audio and saves CI a release build.
PROFILE=${PROFILE:-debug}
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -q -p callmask
else
  cargo build --locked -q -p callmask
fi
BIN="$CARGO_TARGET_DIR/$PROFILE/callmask"
rm -rf "$OUT" && mkdir -p "$OUT"

start=$(date +%s.%N)
for wav in "$EVAL"/data/dev/call_*.wav; do
  base=$(basename "$wav" .wav)
  "$BIN" mask "$wav" "$OUT/$base.wav" --no-speech --report "$OUT/$base.spans.json" 2>/dev/null
done
end=$(date +%s.%N)
echo "corpus: masked 20 calls in $(python3 -c "print(round($end-$start,2))") s (DTMF only, $PROFILE build)"

python3 "$EVAL/score.py" --set-dir "$EVAL/data/dev" --masked-dir "$OUT" --json "$OUT/score.json" \
  | tee "$OUT/score.txt" | sed -n '/AGGREGATE/,$p'

python3 - "$OUT/score.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["aggregate"]
d, o, n = a["dtmf"], a["overmask"], a["negative_control"]
neg_muted = sum(v["falsely_muted"] for v in n.values())
neg_total = sum(v["spans"] for v in n.values())
checks = [
    (f"in-band DTMF leaked {d['leaked']}/{d['spans']} (need 0)", d["leaked"] == 0),
    (f"still decodable: spandsp {d['still_detected_spandsp']}, multimon {d['still_detected_multimon']} (need 0)",
     d["still_detected_spandsp"] == 0 and d["still_detected_multimon"] == 0),
    (f"negative controls muted {neg_muted}/{neg_total} (need 0)", neg_muted == 0),
    (f"speech over-masked {o['speech_muted_pct']}% (need < 0.5%)", o["speech_muted_pct"] < 0.5),
]
failed = 0
for text, ok in checks:
    print(("PASS " if ok else "FAIL ") + text)
    failed += not ok
print(f"corpus: {len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
