#!/usr/bin/env bash
# SIP under media overload (issue 15): how many calls callmask still sets up per second, and
# how fast, while its media core relays more calls than it can carry.
#
#   benches/sip_under_overload.sh N [MODE] [RATE] [PROBE_CALLS]
#     N            media calls kept up by the shared harness (scripts/relay_bench.sh N MODE:
#                  callmask pinned to core 0 with SCHED_FIFO 10, sipp + rtpgen on core 1);
#                  pick ~120 % of the mode's capacity (docs/relay-bench.md), or a small N for
#                  the baseline
#     MODE         record (default) or relay
#     RATE         probe calls offered per second (default 50)
#     PROBE_CALLS  probe calls in all (default 400)
#
# Once rtpgen is sending (+ 3 s), a probe sipp UAC (built-in `uac` scenario: INVITE with SDP,
# 200, ACK, 1 s, BYE) places PROBE_CALLS calls at RATE from the agents' side (127.0.0.1:5062);
# callmask routes them to the PBX peer, moved to a probe sipp UAS (built-in `uas`) on 5080.
# The probe's response times (INVITE -> 200, sipp -trace_rtt) and its successful/failed calls
# are printed as one JSON line with the media run's loss and p99, appended to $OUT
# (default /tmp/relaybench/sip-overload.jsonl). Every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:?usage: sip_under_overload.sh N [MODE] [RATE] [PROBE_CALLS]}
MODE=${2:-record}
RATE=${3:-50}
CALLS=${4:-400}
OUT=${OUT:-/tmp/relaybench/sip-overload.jsonl}
mkdir -p "$(dirname "$OUT")"
W=$(mktemp -d /tmp/sipoverload.XXXX)
MEDIA_OUT="$W/media.jsonl"
for p in 5080 5090; do
  if ss -Hlun "sport = :$p" | grep -q .; then echo "sip_under_overload: udp port $p is busy" >&2; exit 3; fi
done

RB=""; UAS=""; UAC=""
cleanup() {
  local p
  for p in $UAC $UAS; do kill "$p" 2>/dev/null || true; done
  # relay_bench.sh stops what it started (callmask, sipp, rtpgen) on its own exit
  [ -n "$RB" ] && kill "$RB" 2>/dev/null || true
  [ -n "$RB" ] && wait "$RB" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The media run: long enough to cover the probe (its calls take CALLS/RATE s + 1 s each).
PROBE_S=$(( CALLS / RATE + 2 ))
DURATION=$(( PROBE_S + 8 )) PBX_PEER=127.0.0.1:5080 OUT="$MEDIA_OUT" \
  scripts/relay_bench.sh "$N" "$MODE" >"$W/relay_bench.log" 2>&1 &
RB=$!

# Probe UAS (the "PBX" for calls from the agents' side), on the generator's core.
(cd "$W" && exec taskset -c 1 sipp -sn uas -i 127.0.0.1 -p 5080 -nostdin -trace_err \
  >"$W/uas.out" 2>&1) &
UAS=$!

# Wait for the media: rtpgen runs once the harness's calls are all answered.
for _ in $(seq 600); do
  pgrep -f "rtpgen --map" >/dev/null && break
  kill -0 "$RB" 2>/dev/null || { echo "relay_bench ended early:" >&2; tail -20 "$W/relay_bench.log" >&2; exit 1; }
  sleep 0.2
done
pgrep -f "rtpgen --map" >/dev/null || { echo "no media run started" >&2; exit 1; }
sleep 3
START=$(date +%s.%N)
(cd "$W" && exec taskset -c 1 sipp -sn uac -i 127.0.0.1 -p 5090 127.0.0.1:5062 -r "$RATE" \
  -m "$CALLS" -l "$CALLS" -d 1000 -nostdin -trace_rtt -rtt_freq 1 -trace_stat -fd 1 \
  -timeout $(( PROBE_S + 30 ))s -timeout_error >"$W/uac.out" 2>&1) &
UAC=$!
wait "$UAC" || true
UAC=""
END=$(date +%s.%N)
wait "$RB" || true
RB=""
python3 - "$W" "$N" "$MODE" "$RATE" "$CALLS" "$START" "$END" "$MEDIA_OUT" "$OUT" <<'PY'
import csv, glob, json, statistics as st, sys
w, n, mode, rate, calls, start, end, media, out = sys.argv[1:]
rtts = []
for f in glob.glob(f"{w}/*_rtt.csv"):
    for row in csv.reader(open(f), delimiter=";"):
        try:
            rtts.append(float(row[1]))
        except (IndexError, ValueError):
            pass
ok = failed = None
stat = sorted(glob.glob(f"{w}/*_.csv"))
if stat:
    rows = list(csv.reader(open(stat[-1]), delimiter=";"))
    head, last = rows[0], rows[-1]
    col = lambda name: int(last[head.index(name)]) if name in head else None
    ok, failed = col("SuccessfulCall(C)"), col("FailedCall(C)")
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None
d = {"probe": "sip_under_overload", "media_calls": int(n), "mode": mode, "offered_cps": float(rate),
     "probe_calls": int(calls), "succeeded": ok, "failed": failed,
     "achieved_cps": round(ok / (float(end) - float(start) - 1.0), 1) if ok else 0.0,
     "setup_ms_p50": st.median(rtts) if rtts else None, "setup_ms_p95": pct(rtts, 0.95),
     "setup_ms_max": max(rtts) if rtts else None}
try:
    m = json.loads(open(media).read().strip().splitlines()[-1])
    d.update(media_loss_pct=m.get("loss_pct"), media_p99_us=m.get("lat_us_p99"),
             media_calls_up=m.get("calls"), relay_cpu_pct=m.get("relay_sched_cpu_pct"))
except (OSError, ValueError, IndexError):
    d["media"] = "no result"
line = json.dumps(d)
open(out, "a").write(line + "\n")
print(line)
PY
