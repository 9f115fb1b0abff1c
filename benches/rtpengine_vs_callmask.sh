#!/usr/bin/env bash
# rtpengine pass-through and callmask measured in the same run on the shared harness
# (../shared/bench: relay on core 0 with SCHED_FIFO 10, rtpgen on core 1, warm-up 2 s, 10 s
# measured, pass = loss < 0.01 % and p99 added latency < 5 ms; callmask's recordings also
# whole: no frame dropped at its recorder queue), interleaved point by point
# (rtpengine then callmask at each N, a fresh daemon / a fresh callmask per point), repeats as
# the outer loop; prints one table of medians and the capacity ratio (issue 15).
#
#   benches/rtpengine_vs_callmask.sh [REPEATS] ["N..."] [MODE]
#     REPEATS  default 3;  N...  default "500 625 750 875 1000"
#     MODE     callmask's mode (scripts/relay_bench.sh): record (default: DTMF masking + the
#              wav recorder, speech off, 80 ms look-ahead, media.workers 1) or relay
#   benches/rtpengine_vs_callmask.sh summarize FILE.jsonl
#
# Needs rtpengine (bash ../shared/bench/install.sh: Debian's rtpengine-daemon) and the
# release callmask (CALLMASK_BIN, or built by relay_bench.sh). Results: $OUT (JSON lines).
# Only 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${CALLMASK_SHARED:-$(cd .. && pwd)/shared}
B="$SHARED/bench"
export BENCH_BIN=${BENCH_BIN:-/tmp/callmask-bench}
OUT=${OUT:-/tmp/relaybench/vs-rtpengine.jsonl}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
export DURATION WARMUP

summarize() {
  python3 - "$@" <<'PY'
import json, sys, statistics as st
from collections import defaultdict
rows = defaultdict(list)
for fn in sys.argv[1:]:
    for l in open(fn):
        l = l.strip()
        if not l.startswith("{"):
            continue
        d = json.loads(l)
        relay = d.get("relay") or ("rtpengine" if d.get("label", "").startswith("rtpengine") else d.get("label"))
        mode = d.get("mode") or "pass"
        n = d.get("n_req") or d.get("calls")
        rows[(n, relay, mode)].append(d)
def med(v):
    v = [x for x in v if x is not None]
    return st.median(v) if v else float("nan")
def ok(d, n):
    # A recording relay passes only with whole recordings: no frame dropped at the recorder
    # queue (rtpengine has no recorder: 0).
    return (d.get("loss_pct") is not None and d["loss_pct"] < 0.01 and d.get("lat_us_p99", 1e9) < 5000
            and d.get("calls", 0) >= n and not d.get("cm_rec_queue_dropped"))
print("| calls | relay | mode | runs | loss % (median) | p50 µs | p99 µs | relay CPU % | foreign on core 0 % | gen CPU % | µs CPU per relayed packet | recorder frames dropped (max) | pass (runs) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
cap = defaultdict(int)
for (n, relay, mode), ds in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] != "rtpengine")):
    g = lambda k: med([d.get(k) for d in ds])
    loss = med([d["loss_pct"] if d.get("loss_pct") is not None else 100.0 for d in ds])
    passed = sum(ok(d, n) for d in ds)
    recdrop = max(d.get("cm_rec_queue_dropped") or 0 for d in ds)
    medpass = (loss < 0.01 and g("lat_us_p99") < 5000 and min(d.get("calls", 0) for d in ds) >= n
               and med([d.get("cm_rec_queue_dropped") or 0 for d in ds]) == 0)
    if medpass:
        cap[(relay, mode)] = max(cap[(relay, mode)], n)
    # 2 one-way streams per call at 50 packets/s: 100 packets relayed per call per second.
    us_pkt = g("relay_sched_cpu_pct") / 100 * 1e6 / (n * 100) if n else float("nan")
    print(f"| {n} | {relay} | {mode} | {len(ds)} | {loss:.4f} | {g('lat_us_p50'):.0f} | {g('lat_us_p99'):.0f} | "
          f"{g('relay_sched_cpu_pct'):.1f} | {g('relay_core_foreign_pct'):.1f} | {g('gen_cpu_pct'):.1f} | {us_pkt:.1f} | {recdrop:.0f} | "
          f"{'yes' if medpass else 'NO'} ({passed}/{len(ds)}) |")
print()
rtpe = cap.get(("rtpengine", "pass"), 0)
for (relay, mode), c in sorted(cap.items()):
    ratio = f"{c / rtpe:.2f}x rtpengine" if rtpe and relay != "rtpengine" else ""
    print(f"capacity (largest N passing on the medians): {relay} {mode}: {c} {ratio}")
PY
}

if [ "${1:-}" = summarize ]; then
  shift
  summarize "$@"
  exit 0
fi

REPEATS=${1:-3}
PTS=${2:-"500 625 750 875 1000"}
MODE=${3:-record}
command -v rtpengine >/dev/null || { echo "rtpengine not installed: bash $B/install.sh" >&2; exit 1; }
[ -x "$BENCH_BIN/rtpgen" ] || bash "$B/build.sh" >/dev/null
mkdir -p "$(dirname "$OUT")"
RUN=/tmp/relaybench-rtpe
for r in $(seq "$REPEATS"); do
  for N in $PTS; do
    echo "== repeat $r, $N calls: rtpengine pass-through" >&2
    RUN=$RUN bash "$B/start_rtpengine.sh" >/dev/null
    OUT=$OUT RUN=$RUN bash "$B/run_point.sh" "$N" "rtpengine-pass" >/dev/null 2>&1 || echo "   (rtpengine point failed)" >&2
    RUN=$RUN bash "$B/stop_rtpengine.sh" >/dev/null 2>&1 || true
    # The previous callmask may still be finishing its recordings: wait for SIP port 5060.
    for _ in $(seq 40); do
      python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 5060))' 2>/dev/null && break
      sleep 0.5
    done
    echo "== repeat $r, $N calls: callmask $MODE" >&2
    LOG="$(dirname "$OUT")/callmask-$MODE-$N-r$r.log"
    OUT=$OUT REPEAT=$r scripts/relay_bench.sh "$N" "$MODE" >"$LOG" 2>&1 \
      || echo "   (callmask point failed: $(tail -1 "$LOG"); see $LOG)" >&2
  done
done
summarize "$OUT"
