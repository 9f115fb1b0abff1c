#!/usr/bin/env bash
# Spoken-identifier masking on real human speech (issue 5), not the synthetic dev corpus:
# Debian pocketsphinx-testdata's digit recordings must come out muted and its LibriVox clips
# (no numbers) mostly audible. Each clip goes through the telephone band (16 kHz -> 8 kHz,
# mu-law round trip, 1 s of silence either side) and through `callmask mask` with speech on.
# Prints, per clip, the fraction of its active speech that was muted (digit clips: want ~100 %)
# or left audible (LibriVox: want most).
# Sentences with embedded numbers: each "mixed" clip is assembled with sox from the same
# recordings (a LibriVox sentence, 0.4 s of silence, a digit recording, 0.4 s, another LibriVox
# sentence; two speakers, as on a call): the digit part must be muted (>= 95 % of its active
# speech) and the sentences around it stay audible (>= 80 %). The digit part's position is
# known from the pieces' lengths (soxi), not from any label.
# Needs: apt-get install pocketsphinx-testdata sox; scripts/setup_asr.sh once.
# Extra arguments go to `callmask mask` (e.g. --lookahead-ms 3000).
# Output: /tmp/callmask-eval/human/ (8 kHz inputs, masked WAVs, span reports).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${PS_DATA:-/usr/share/pocketsphinx/test/data}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/callmask-target}
OUT=${OUT:-/tmp/callmask-eval/human}
[ -d "$DATA/tidigits" ] || { echo "eval_human_speech: $DATA missing: apt-get install pocketsphinx-testdata" >&2; exit 1; }
# shellcheck source=scripts/speech_bin.sh
source scripts/speech_bin.sh
rm -rf "$OUT" && mkdir -p "$OUT"

# name kind source (kind: digits = must be muted, speech = should stay audible)
clips=(
  "dhd.2934z digits $DATA/tidigits/dhd.2934z.raw"
  "numbers digits $DATA/numbers.raw"
)
for f in "$DATA"/librivox/*.wav; do
  clips+=("$(basename "$f" .wav) speech $f")
done

# Mixed clips: sentence + digits + sentence, at 16 kHz, with the digit span written beside.
LV=$DATA/librivox/sense_and_sensibility_01_austen_64kb
mixed() { # name before.wav digits.raw after.wav
  local name=$1 before=$2 digits=$3 after=$4
  sox -t raw -r 16000 -e signed -b 16 -c 1 "$digits" -r 16000 -c 1 -b 16 "$OUT/$name.digits.wav"
  sox "$before" -r 16000 -c 1 -b 16 "$OUT/$name.before.wav"
  sox "$after" -r 16000 -c 1 -b 16 "$OUT/$name.after.wav"
  sox -n -r 16000 -c 1 -b 16 "$OUT/$name.gap.wav" trim 0 0.4
  sox "$OUT/$name.before.wav" "$OUT/$name.gap.wav" "$OUT/$name.digits.wav" "$OUT/$name.gap.wav" \
    "$OUT/$name.after.wav" "$OUT/$name.mixed16.wav"
  # digit span in ms of the 8 kHz input (1 s of padding is added below)
  python3 - "$OUT/$name" <<'PY'
import sys, wave
n = sys.argv[1]
ms = lambda f: 1000 * wave.open(f).getnframes() / 16000
a = 1000 + ms(n + ".before.wav") + 400
open(n + ".span", "w").write(f"{a:.0f} {a + ms(n + '.digits.wav'):.0f}\n")
PY
  clips+=("$name mixed $OUT/$name.mixed16.wav")
}
mixed mixed_2934 "$LV-0880.wav" "$DATA/tidigits/dhd.2934z.raw" "$LV-0930.wav"
mixed mixed_numbers "$LV-0890.wav" "$DATA/numbers.raw" "$LV-0880.wav"

: > "$OUT/clips.txt"
for c in "${clips[@]}"; do
  read -r name kind src <<<"$c"
  in16=(-t wav "$src")
  [[ $src == *.raw ]] && in16=(-t raw -r 16000 -e signed -b 16 -c 1 "$src")
  # telephone band: 8 kHz mu-law and back to 16-bit PCM, 1 s of silence either side
  sox "${in16[@]}" -r 8000 -c 1 -e u-law -t wav "$OUT/$name.ulaw.wav" pad 1 1
  sox "$OUT/$name.ulaw.wav" -e signed -b 16 "$OUT/$name.in.wav"
  "$BIN" mask "$OUT/$name.in.wav" "$OUT/$name.out.wav" --report "$OUT/$name.spans.json" "$@" \
    2>"$OUT/$name.log"
  echo "$name $kind" >> "$OUT/clips.txt"
done

python3 - "$OUT" <<'PY'
import sys, wave
import numpy as np
out = sys.argv[1]

def read(path):
    w = wave.open(path)
    return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)

fails = 0
for line in open(f"{out}/clips.txt"):
    name, kind = line.split()
    x, y = read(f"{out}/{name}.in.wav"), read(f"{out}/{name}.out.wav")
    n = min(len(x), len(y)) // 160
    ex = (x[: n * 160].reshape(n, 160) ** 2).mean(axis=1) + 1e-9
    ey = (y[: n * 160].reshape(n, 160) ** 2).mean(axis=1) + 1e-9
    # active speech: 20 ms frames within 35 dB of the clip's loudest frame
    active = 10 * np.log10(ex) > 10 * np.log10(ex.max()) - 35
    muted = 10 * np.log10(ey) < 10 * np.log10(ex) - 30
    frac = (active & muted).sum() / max(active.sum(), 1)
    if kind == "mixed":
        a, b = (int(v) // 20 for v in open(f"{out}/{name}.span").read().split())
        inside = np.zeros(n, dtype=bool)
        inside[a:b] = True
        fd = (active & muted & inside).sum() / max((active & inside).sum(), 1)
        fs = 1 - (active & muted & ~inside).sum() / max((active & ~inside).sum(), 1)
        ok = fd >= 0.95 and fs >= 0.8
        print(f"{'PASS' if ok else 'FAIL'} {name}: digits {100 * fd:.1f} % of "
              f"{(active & inside).sum() * 20} ms muted (want >= 95 %), sentences {100 * fs:.1f} % "
              f"of {(active & ~inside).sum() * 20} ms audible (want >= 80 %)")
        fails += not ok
        continue
    if kind == "digits":
        ok = frac >= 0.95
        print(f"{'PASS' if ok else 'FAIL'} {name}: {100 * frac:.1f} % of {active.sum() * 20} ms "
              f"active speech muted (digits; want >= 95 %)")
    else:
        ok = 1 - frac >= 0.8
        print(f"{'PASS' if ok else 'FAIL'} {name}: {100 * (1 - frac):.1f} % of "
              f"{active.sum() * 20} ms active speech audible (no numbers; want >= 80 %)")
    fails += not ok
print(f"human speech: {fails} failed")
sys.exit(1 if fails else 0)
PY
