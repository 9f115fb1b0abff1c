#!/usr/bin/env bash
# RTP relay capacity of callmask with the shared load harness (../shared/bench, see its README).
#
#   scripts/relay_bench.sh N [MODE]                  one point: N calls through a fresh callmask
#   scripts/relay_bench.sh sweep REPEATS "N..." "MODE..."   repeats as the outer loop
#                                   (PTS_relay / PTS_record override "N..." per mode;
#                                   ORDER=point: the modes back to back at each N instead)
#   scripts/relay_bench.sh summarize FILE.jsonl...   median table (markdown)
#
# One point: start `callmask run` (trunk mode, loopback) pinned to core 0 with one tokio worker
# and the same scheduling class as the generator (SCHED_FIFO 10, like the rtpengine anchor);
# run the shared `sip/run_sip_bench.sh N 5060` (sipp UAC on 5061 -> callmask 5060 -> sipp UAS
# on 5070, then rtpgen pinned to core 1 over the anchored ports) with RELAY_PID/RELAY_CPU=0;
# scrape callmask's drop counters; stop everything started here, by PID.
# Modes: relay  = no recorder (pass-through; the recorder-path DSP still runs, see docs)
#        record = one `wav` recorder into the run's work dir (DTMF-sanitized recorder fork)
#        srtp   = relay with SDES-SRTP on both legs (issue 14): benches/sip/run_srtp_bench.sh
#                 (sipp RTP/SAVP + a=crypto AES_CM_128_HMAC_SHA1_80, media by srtpgen)
#        srtp-record   = srtp + the `wav` recorder
#        relay-srtpgen = relay, plain RTP, media by srtpgen instead of rtpgen (generator check)
# The JSON line of rtpgen, plus relay/mode/n_req/repeat/calls_merged/callmask counters, is
# appended to $OUT.
#
# Env: OUT (default /tmp/relaybench/results.jsonl), CALLMASK_BIN (default
# $CARGO_TARGET_DIR/release/callmask, built if missing; CARGO_TARGET_DIR default
# /tmp/tgt-relaybench), BENCH_BIN (/tmp/callmask-bench, rtpgen built if missing),
# CALLMASK_SHARED (../shared), MEDIA_PORTS (21000-31999: must not overlap the generator's
# 10000-10015/20000-20015 nor the kernel's ephemeral range 32768+), CM_SCHED (fifo|none),
# CM_WORKERS (1), PBX_PEER (127.0.0.1:5070: where calls from the agents' side go; the
# harness places every call from the PBX side, benches/sip_under_overload.sh moves it), SRTPGEN (default $CARGO_TARGET_DIR/release/srtpgen, built if missing), DURATION (10) / WARMUP (2) (passed to the harness), REPEAT (label only),
# EARLY_STOP (1: stop the sipp UAC/UAS as soon as rtpgen has written its result instead of
# waiting ~45 s for the calls' BYEs; callmask is restarted per point anyway), KEEP (1: keep
# the work dir).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SELF="$REPO/scripts/relay_bench.sh"
SHARED=${CALLMASK_SHARED:-$(cd .. && pwd)/shared}
export BENCH_BIN=${BENCH_BIN:-/tmp/callmask-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/tgt-relaybench}
OUT=${OUT:-/tmp/relaybench/results.jsonl}

summarize() {
  python3 - "$@" <<'PY'
import json, sys, statistics as st
from collections import defaultdict
rows = defaultdict(list)
for fn in sys.argv[1:]:
    for l in open(fn):
        l = l.strip()
        if l.startswith("{"):
            d = json.loads(l)
            rows[(d.get("relay", d["label"]), d.get("mode", ""), d.get("n_req", d["calls"]))].append(d)
def med(v):
    v = [x for x in v if x is not None]
    return st.median(v) if v else float("nan")
print("| relay | mode | calls | runs | calls set up (min) | loss % (med, max) | p50 µs | p99 µs | p99.9 µs | relay CPU % | foreign on core 0 % | gen CPU % | pass (runs) | relay µs/pkt | load 1m |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (relay, mode, n), ds in sorted(rows.items()):
    g = lambda k: med([d.get(k) for d in ds])
    loss = [d["loss_pct"] if d["loss_pct"] is not None else 100.0 for d in ds]
    # Recording modes pass only with whole recordings (no frame dropped at the recorder queue).
    ok = lambda d: (d["loss_pct"] is not None and d["loss_pct"] < 0.01 and d["lat_us_p99"] < 5000
                    and d["calls"] >= d.get("n_req", d["calls"]) and not d.get("cm_rec_queue_dropped"))
    npass = sum(ok(d) for d in ds)
    medpass = (med(loss) < 0.01 and g("lat_us_p99") < 5000 and min(d["calls"] for d in ds) >= n
               and med([d.get("cm_rec_queue_dropped") or 0 for d in ds]) == 0)
    gen = g("gen_cpu_pct")
    # CPU per relayed packet: relay CPU (in cores) / packets relayed per second (in = out)
    upk = med([d["relay_sched_cpu_pct"] / 100 / d["pps_offered"] * 1e6 for d in ds
               if d.get("relay_sched_cpu_pct") is not None and d.get("pps_offered")])
    print("| %s | %s | %d | %d | %d | %.4f, %.4f | %.0f | %.0f | %.0f | %.1f | %.1f | %.1f%s | %s (%d/%d) | %.1f | %.1f |" % (
        relay, mode, n, len(ds), min(d["calls"] for d in ds), med(loss), max(loss), g("lat_us_p50"),
        g("lat_us_p99"), g("lat_us_p999"), g("relay_sched_cpu_pct"), g("relay_core_foreign_pct"),
        gen, " ⚠" if gen > 90 else "", "yes" if medpass else "NO", npass, len(ds), upk, g("loadavg_1m")))
PY
}

if [ "${1:-}" = summarize ]; then shift; summarize "$@"; exit 0; fi
if [ "${1:-}" = sweep ]; then
  R=${2:?repeats}; PTS=${3:?points}; MODES=${4:-relay record}
  mkdir -p "$(dirname "$OUT")"
  one() {
    echo "== repeat $1  mode $2  N=$3" >&2
    REPEAT=$1 "$SELF" "$3" "$2" || echo "point N=$3 mode=$2 failed rc=$?" >&2
    sleep 2
  }
  for r in $(seq "$R"); do
    if [ "${ORDER:-mode}" = point ]; then
      # ORDER=point: the modes back to back at each point (same N, minutes apart at most)
      for n in $PTS; do for m in $MODES; do one "$r" "$m" "$n"; done; done
    else
      for m in $MODES; do
        v="PTS_${m//-/_}"   # per-mode points override, e.g. PTS_record="250 375 500"
        for n in ${!v:-$PTS}; do one "$r" "$m" "$n"; done
      done
    fi
  done
  summarize "$OUT"
  exit 0
fi

N=${1:?usage: relay_bench.sh N [relay|record|srtp|srtp-record|relay-srtpgen]}
MODE=${2:-relay}
case "$MODE" in
  relay | record) HARNESS="$SHARED/bench/sip/run_sip_bench.sh"; HENV=() ;;
  srtp | srtp-record) HARNESS="$REPO/benches/sip/run_srtp_bench.sh"; HENV=(PLAIN=0) ;;
  relay-srtpgen) HARNESS="$REPO/benches/sip/run_srtp_bench.sh"; HENV=(PLAIN=1) ;;
  *) echo "mode must be relay, record, srtp, srtp-record or relay-srtpgen" >&2; exit 2 ;;
esac
for tool in sipp python3 taskset curl; do
  command -v "$tool" >/dev/null || { echo "relay_bench: $tool not found" >&2; exit 2; }
done
[ -x "$BENCH_BIN/rtpgen" ] || bash "$SHARED/bench/build.sh" >&2
if [ "$HARNESS" != "$SHARED/bench/sip/run_sip_bench.sh" ]; then
  export SRTPGEN=${SRTPGEN:-$CARGO_TARGET_DIR/release/srtpgen}
  [ -x "$SRTPGEN" ] || cargo build --release -q -p callmask-benches --bin srtpgen
  export SHARED_SIP="$SHARED/bench/sip"
fi
if [ -z "${CALLMASK_BIN:-}" ]; then
  [ -x "$CARGO_TARGET_DIR/release/callmask" ] || cargo build --release -q -p callmask
  CALLMASK_BIN="$CARGO_TARGET_DIR/release/callmask"
fi
for p in 5060 5061 5062 5070; do
  if ss -Hlun "sport = :$p" | grep -q .; then echo "relay_bench: udp port $p is busy" >&2; exit 3; fi
done
mkdir -p "$(dirname "$OUT")"
W=$(mktemp -d /tmp/relaybench.run.XXXX)

CM=""; HP=""; SIPP_PIDS=""
cleanup() {
  local p
  for p in $SIPP_PIDS $HP $CM; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=""
    for p in $SIPP_PIDS $HP $CM; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in $SIPP_PIDS $HP $CM; do kill -9 "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

REC=()
if [ "$MODE" = record ] || [ "$MODE" = srtp-record ]; then
  mkdir -p "$W/rec"
  REC=(--set "recorder=[{kind=\"wav\",dir=\"$W/rec\"}]")
fi
case "${CM_SCHED:-fifo}" in fifo) PRIO=(chrt -f 10) ;; *) PRIO=() ;; esac
# ~4 sockets per call: raise the soft limit to the hard one (20,000 here)
ulimit -n "$(ulimit -Hn)"
RUST_LOG=${RUST_LOG:-warn} TOKIO_WORKER_THREADS=${CM_WORKERS:-1} "${PRIO[@]}" taskset -c 0 "$CALLMASK_BIN" run \
  --set pbx.listen=127.0.0.1:5060 --set agents.listen=127.0.0.1:5062 \
  --set "pbx.peer=${PBX_PEER:-127.0.0.1:5070}" --set agents.peer=127.0.0.1:5070 --set http.listen=127.0.0.1:9099 \
  --set "media.ports=${MEDIA_PORTS:-21000-31999}" --set masking.speech=false --set masking.lookahead_ms=80 \
  "${REC[@]}" >"$W/callmask.log" 2>&1 &
CM=$!
for _ in $(seq 100); do
  curl -sf -o /dev/null http://127.0.0.1:9099/healthz && break
  kill -0 "$CM" 2>/dev/null || { echo "callmask exited at start-up:" >&2; tail -20 "$W/callmask.log" >&2; exit 1; }
  sleep 0.1
done
echo "callmask pid $CM ($MODE), work dir $W" >&2
# Idle memory, before any call (for memory per call: RSS with N calls up minus this, over N).
curl -sf http://127.0.0.1:9099/metrics >"$W/metrics_idle.txt" || true

RES="$W/result.jsonl"
: >"$W/harness.err"
env "${HENV[@]}" RELAY_PID=$CM RELAY_CPU=0 OUT="$RES" bash "$HARNESS" "$N" 5060 \
  >"$W/harness.out" 2>"$W/harness.err" &
HP=$!
while kill -0 "$HP" 2>/dev/null; do
  [ -z "$SIPP_PIDS" ] && SIPP_PIDS=$(sed -n 's/^sipp UAS pid \([0-9]*\), UAC pid \([0-9]*\).*/\1 \2/p' "$W/harness.err" || true)
  if [ -s "$RES" ]; then
    # measurement done: scrape counters while the calls are still up, then end the calls early
    curl -sf http://127.0.0.1:9099/metrics >"$W/metrics.txt" || true
    [ "${EARLY_STOP:-1}" = 1 ] && for p in $SIPP_PIDS; do kill "$p" 2>/dev/null || true; done
    break
  fi
  sleep 0.5
done
wait "$HP" || true
HP=""
[ -s "$RES" ] || { echo "relay_bench: no result (see $W)" >&2; KEEP=1; tail -5 "$W/harness.err" >&2; exit 1; }
cat "$W/harness.out" >&2
python3 - "$RES" "$W/harness.out" "$W/metrics.txt" "$MODE" "$N" "${REPEAT:-0}" "$OUT" "$W/metrics_idle.txt" <<'PY'
import json, re, sys
res, hout, mfile, mode, n, rep, out, idle = sys.argv[1:]
d = json.loads(open(res).read().strip().splitlines()[-1])
m = re.search(r"merged (\d+) calls", open(hout).read())
d.update(relay="callmask", mode=mode, n_req=int(n), repeat=int(rep), calls_merged=int(m.group(1)) if m else None)
try:
    d["loadavg_1m"] = float(open("/proc/loadavg").read().split()[0])  # the VM is shared
except (OSError, ValueError):
    pass
try:
    for line in open(mfile):
        for k, pat in (("cm_rtp_dropped", "callmask_rtp_packets_dropped_total"),
                       ("cm_rec_queue_dropped", "callmask_recorder_queue_dropped_frames_total"),
                       ("cm_fail_closed_s", "callmask_fail_closed_muted_seconds_total"),
                       ("cm_srtp_decrypted", "callmask_srtp_packets_decrypted_total"),
                       ("cm_srtp_dropped", "callmask_srtp_packets_dropped_total")):
            if line.startswith(pat):
                d[k] = d.get(k, 0) + float(line.rsplit(" ", 1)[1])
except OSError:
    pass
# Memory per call: resident memory with the calls up (scraped right after the measurement)
# minus the idle process's, over the calls set up.
def rss(f):
    try:
        for line in open(f):
            if line.startswith("process_resident_memory_bytes "):
                return float(line.split()[1])
    except OSError:
        return None
r_idle, r_load = rss(idle), rss(mfile)
if r_idle and r_load:
    d["cm_rss_idle_mb"] = round(r_idle / 2**20, 1)
    d["cm_rss_mb"] = round(r_load / 2**20, 1)
    calls = d.get("calls_merged") or int(n)
    d["cm_kib_per_call"] = round((r_load - r_idle) / 1024 / max(calls, 1), 1)
line = json.dumps(d)
open(out, "a").write(line + "\n")
print(line)
PY
