#!/usr/bin/env bash
# Spoken-identifier masking on the dev AND val corpora (issue 11): builds `callmask` with the
# embedded Whisper recognizer (feature `whisper`; needs scripts/setup_asr.sh once), masks every
# call of ../shared/eval/data/{dev,val} with speech on (`callmask mask`, defaults), scores each
# set with ../shared/eval/score.py and prints dev and val side by side: the aggregate, the CPU
# time and the issue 11 targets (PASS/FAIL lines):
#   spoken IDs leaked <= 2/61 (dev) and <= 2 % of val's, speech over-masked <= 5 % on each,
#   DTMF leaked 0 and decodable 0, negative controls muted 0, <= 0.1 CPU-s per audio-s.
# dev is the set the policy is developed on; val is never tuned on (it checks generalisation).
# Exit status: a regression gate at today's measured figures plus a small slack for the
# recognizer's cross-CPU numeric jitter (env SPEECH_GATE_*, measured spread stated below),
# strict on decodable DTMF and CPU. The targets above are printed, not gated, until they are met.
# Extra arguments go to `callmask mask` (e.g. --lookahead-ms 5000; the default is 8000).
# A third set, holdout, is generated here (scripts/gen_holdout.py: 40 calls, seed 2026, other
# voices and wording than dev and val, written apart from both) into /tmp/callmask-eval/holdout:
# dev and val errors have been read while the policy was developed; holdout's were read only
# after its rules were written (see README "Spoken identifiers").
# SETS="dev" limits the run to one set. Output: /tmp/callmask-eval/speech/{dev,val,holdout}/.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${CALLMASK_SHARED:-$(cd .. && pwd)/shared}
EVAL="$SHARED/eval"
export SPANDSP_DTMF_BIN=${SPANDSP_DTMF_BIN:-/tmp/callmask-eval/spandsp_dtmf}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/callmask-target}
OUT=${OUT:-/tmp/callmask-eval/speech}
# shellcheck source=scripts/speech_bin.sh
source scripts/speech_bin.sh
SETS=${SETS:-dev val holdout}
HOLDOUT=${HOLDOUT:-/tmp/callmask-eval/holdout}
status=0
for SET in $SETS; do
SOUT="$OUT/$SET"
rm -rf "$SOUT" && mkdir -p "$SOUT"
DATA="$EVAL/data/$SET"
if [ "$SET" = holdout ]; then
  DATA=$HOLDOUT
  # Made afresh each run (~40 s): a set left by an older generator would skew the gate.
  rm -rf "$DATA"
  python3 scripts/gen_holdout.py "$DATA" --calls 40 --seed 2026
fi

: > "$SOUT/cpu.txt"
for wav in "$DATA"/call_*.wav; do
  base=$(basename "$wav" .wav)
  # user+system CPU seconds of the whole run (model load included), one line per call
  /usr/bin/time -f "$base %U %S %e" -a -o "$SOUT/cpu.txt" \
    "$BIN" mask "$wav" "$SOUT/$base.wav" --report "$SOUT/$base.spans.json" "$@" 2>"$SOUT/$base.log"
done

python3 "$EVAL/score.py" --set-dir "$DATA" --masked-dir "$SOUT" --json "$SOUT/score.json" \
  > "$SOUT/score.txt"
echo "=== $SET ($(ls "$DATA"/call_*.wav | wc -l) calls)"
sed -n '/AGGREGATE/,$p' "$SOUT/score.txt"

python3 - "$SOUT" "$DATA" "$SET" <<'PY' || status=1
import glob, json, os, sys, wave
out, data, name = sys.argv[1], sys.argv[2], sys.argv[3]
a = json.load(open(os.path.join(out, "score.json")))["aggregate"]
audio_s = 0.0
for f in sorted(glob.glob(os.path.join(data, "call_*.wav"))):
    w = wave.open(f)
    audio_s += w.getnframes() / w.getframerate()
cpu = wall = 0.0
for line in open(os.path.join(out, "cpu.txt")):
    p = line.split()
    if len(p) == 4 and not p[0].startswith("Command"):
        cpu += float(p[1]) + float(p[2])
        wall += float(p[3])
rec_s = segs = late = 0
for f in glob.glob(os.path.join(out, "*.spans.json")):
    sp = json.load(open(f)).get("speech") or {}
    rec_s += sp.get("recognizer_s", 0.0)
    segs += sp.get("segments", 0)
    late += sp.get("live_late", 0)
d, o, n, s = a["dtmf"], a["overmask"], a["negative_control"], a["spoken_id"]
neg_muted = sum(v["falsely_muted"] for v in n.values())
neg_total = sum(v["spans"] for v in n.values())
decodable = d.get("still_detected_spandsp", 0) + d.get("still_detected_multimon", 0)
per = cpu / audio_s
print(f"\n{name}: cpu {cpu:.1f} CPU-s for {audio_s:.0f} audio-s = {per:.3f} CPU-s per audio-s "
      f"(wall {wall:.1f} s; recognizer {rec_s:.1f} s over {segs} segments; "
      f"{late} segments would be late live with one worker per call)")
max_ids = 2 if name == "dev" else int(0.02 * s["spans"])
checks = [
    (f"spoken IDs leaked {s['leaked']}/{s['spans']} (target <= {max_ids})", s["leaked"] <= max_ids),
    (f"speech over-masked {o['speech_muted_pct']}% (target <= 5%)", o["speech_muted_pct"] <= 5.0),
    (f"in-band DTMF leaked {d['leaked']}/{d['spans']}, decodable {decodable} (target 0, 0)",
     d["leaked"] == 0 and decodable == 0),
    (f"negative controls muted {neg_muted}/{neg_total} (target 0)", neg_muted == 0),
    (f"{per:.3f} CPU-s per audio-s (target <= 0.1)", per <= 0.1),
]
failed = 0
for text, ok in checks:
    print(f"{name}: " + ("PASS " if ok else "FAIL ") + text)
    failed += not ok
print(f"{name}: speech targets: {len(checks) - failed} passed, {failed} failed")
# The gate: today's figures plus slack for cross-CPU numeric jitter. The recognizer's
# decodes differ between CPUs (CTranslate2 picks other kernels): the same policy measured
# dev 6.65 % / val 13.8 % over-masked and 0/93 val negatives on one machine (2026-12-07),
# 8.81 % / 15.27 % and 1/93 on another (2026-12-08, 3x faster per audio-second; the muted
# negative is noise that the segmenter joined to a garbled caller turn in val_011), leaks
# +-1 identifier. The gate allows that spread; the targets above stay the goal.
gate_ids = int(os.environ.get(f"SPEECH_GATE_LEAKS_{name.upper()}",
                              {"dev": "4", "val": "11", "holdout": "26"}[name]))
gate_over = float(os.environ.get(f"SPEECH_GATE_OVERMASK_PCT_{name.upper()}",
                                 {"dev": "9.0", "val": "16.0", "holdout": "16.5"}[name]))
gate_neg = int(os.environ.get(f"SPEECH_GATE_NEGATIVES_{name.upper()}",
                              {"dev": "0", "val": "1", "holdout": "0"}[name]))
gate_dtmf = {"dev": 0, "val": 1, "holdout": 0}[name]  # val: one -28 dBm0 tone under speech, 85 ms, never decodable
gate = (s["leaked"] <= gate_ids and o["speech_muted_pct"] <= gate_over
        and d["leaked"] <= gate_dtmf and decodable == 0 and neg_muted <= gate_neg and per <= 0.1)
print(f"{name}: speech gate (leaked <= {gate_ids}, over-masked <= {gate_over} %, DTMF leaked "
      f"<= {gate_dtmf} and decodable 0, negatives <= {gate_neg}, <= 0.1 CPU-s/audio-s): "
      f"{'PASS' if gate else 'FAIL'}")
sys.exit(0 if gate else 1)
PY
done
exit $status
