#!/usr/bin/env bash
# Runs the masking-core benches (crate callmask-benches) with short measurement times suitable
# for a small, shared machine, then prints frames/s medians and the callmask/spandsp ratio.
#
#   scripts/bench_dsp.sh                  # all three benches
#   scripts/bench_dsp.sh dtmf_detect      # only some: dsp_mask, dtmf_detect, g711
#
# Environment:
#   CARGO_TARGET_DIR   build dir (default: <repo>/target); criterion results go under it
#   BENCH_WARMUP       warm-up seconds per bench (default 1)
#   BENCH_MEASURE      measurement seconds per bench (default 3)
#   BENCH_SPANDSP      1/0 to force the spandsp comparison on/off (default: on if installed)
#   CALLMASK_BENCH_SPEECH  µ-law file for the speech input (default: the dev corpus call_000)
#
# Numbers on a 2-core box shared with compilers are noisy: read medians, compare pairs that
# ran back to back (the dtmf_detect group alternates callmask/spandsp per input).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
warmup="${BENCH_WARMUP:-1}"
measure="${BENCH_MEASURE:-3}"

benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
    benches=(dsp_mask dtmf_detect g711)
fi

if [ -z "${BENCH_SPANDSP:-}" ]; then
    BENCH_SPANDSP=0
    if [ -f /usr/include/spandsp/dtmf.h ] &&
        { ldconfig -p 2>/dev/null | grep -q 'libspandsp\.so' ||
          compgen -G '/usr/lib/*/libspandsp.so' >/dev/null ||
          [ -e /usr/lib/libspandsp.so ] || [ -e /usr/local/lib/libspandsp.so ]; }; then
        BENCH_SPANDSP=1
    fi
fi
features=()
if [ "$BENCH_SPANDSP" = 1 ]; then
    features=(--features spandsp)
    echo "bench_dsp: spandsp found, comparing against dtmf_rx" >&2
else
    echo "bench_dsp: spandsp not found (apt install libspandsp-dev), callmask only" >&2
fi

bench_args=()
for b in "${benches[@]}"; do bench_args+=(--bench "$b"); done

stamp="$(mktemp)"
trap 'rm -f "$stamp"' EXIT
# Build first so compile time does not overlap the measurements of the first bench.
cargo bench -p callmask-benches "${features[@]}" "${bench_args[@]}" --no-run
cargo bench -p callmask-benches "${features[@]}" "${bench_args[@]}" -- \
    --warm-up-time "$warmup" --measurement-time "$measure" --noplot

python3 - "$CARGO_TARGET_DIR/criterion" "$stamp" <<'PY'
import json, os, sys

root, stamp = sys.argv[1], sys.argv[2]
since = os.path.getmtime(stamp)
rows = {}
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
        continue
    bj = os.path.join(dirpath, "benchmark.json")
    ej = os.path.join(dirpath, "estimates.json")
    if not os.path.exists(ej) or os.path.getmtime(ej) < since:
        continue  # stale result from an earlier run
    with open(bj) as f:
        meta = json.load(f)
    with open(ej) as f:
        est = json.load(f)
    thr = meta.get("throughput") or {}
    elems = thr.get("Elements") or 1
    med_ns = est["median"]["point_estimate"]
    lo = est["median"]["confidence_interval"]["lower_bound"]
    hi = est["median"]["confidence_interval"]["upper_bound"]
    fps = elems / (med_ns * 1e-9)
    # frames/s bounds from the median's confidence interval (inverse of time)
    rows[meta["full_id"]] = (meta["group_id"], meta.get("function_id") or "",
                             meta.get("value_str") or "", fps, elems / (hi * 1e-9),
                             elems / (lo * 1e-9), med_ns / elems)

if not rows:
    print("no fresh criterion results under", root)
    sys.exit(1)

print()
print(f"{'benchmark':<36} {'frames/s (median)':>18} {'95% CI of median':>25} {'ns/frame':>9}")
for full in sorted(rows):
    g, fn, val, fps, lo, hi, ns = rows[full]
    print(f"{full:<36} {fps:>18,.0f} {f'{lo:,.0f} .. {hi:,.0f}':>25} {ns:>9.1f}")

ratios = []
for full, r in sorted(rows.items()):
    g, fn, val = r[0], r[1], r[2]
    if g == "dtmf_detect" and fn == "callmask":
        other = rows.get(f"dtmf_detect/spandsp/{val}")
        if other:
            ratios.append((val, r[3], other[3], r[3] / other[3]))
if ratios:
    print()
    print("DTMF receiver, callmask vs spandsp dtmf_rx (same frames, back to back; target >= 3x)")
    print(f"{'input':<10} {'callmask f/s':>14} {'spandsp f/s':>14} {'ratio':>7}")
    for val, ours, theirs, ratio in ratios:
        print(f"{val:<10} {ours:>14,.0f} {theirs:>14,.0f} {ratio:>6.2f}x")

mask = [(k, r[3]) for k, r in sorted(rows.items()) if r[0] == "dsp_mask"]
if mask:
    print()
    print("dsp_mask target: >= 1,000,000 frames/s per core")
    for k, fps in mask:
        print(f"  {k:<34} {fps/1e6:6.2f} M frames/s  {'OK' if fps >= 1e6 else 'BELOW TARGET'}")
PY
