#!/bin/bash
# SRTP variant of ../shared/bench/sip/run_sip_bench.sh (issue 14): drive a SIP/SDP-allocating
# relay with sipp (signalling, RTP/SAVP + a=crypto AES_CM_128_HMAC_SHA1_80, a fresh key per
# call and side) + srtpgen (SRTP media: protects with the key each sipp side offered/answered,
# authenticates and decrypts with the key the relay put in the SDP it sent to that side).
#   run_srtp_bench.sh N [PROXY_PORT]
# Without PROXY_PORT the UAC calls the UAS directly (no relay: harness floor via SIP; each
# side then decrypts with the other side's key).
# env: DURATION (media seconds, default 10), WARMUP (2), GEN_CPU (1), RELAY_PID, RELAY_CPU,
#      SCHED (fifo|nice|none, for srtpgen), OUT (append JSON result), POOL (16), CPS (100),
#      SRTPGEN (srtpgen binary, default $CARGO_TARGET_DIR/release/srtpgen),
#      PLAIN=1: the shared plain RTP/AVP scenarios and map, media by srtpgen without SRTP
#      (a check that srtpgen measures what rtpgen measures).
set -euo pipefail
D=$(cd "$(dirname "$0")" && pwd)
SHARED_SIP=${SHARED_SIP:-$(cd "$D/../../.." && pwd)/shared/bench/sip}
N=${1:-20}; PROXY=${2:-}
DUR=${DURATION:-10}; WU=${WARMUP:-2}
GEN=${SRTPGEN:-${CARGO_TARGET_DIR:-/tmp/tgt-relaybench}/release/srtpgen}
[ -x "$GEN" ] || { echo "run_srtp_bench: no srtpgen at $GEN (cargo build --release -p callmask-benches --bin srtpgen)" >&2; exit 2; }
LABEL=srtp
if [ "${PLAIN:-0}" = 1 ]; then
  LABEL=plain
  MAPPY="$SHARED_SIP/sip_map.py"; UAC="$SHARED_SIP/uac_bench.xml"; UAS="$SHARED_SIP/uas_bench.xml"
else
  MAPPY="$D/srtp_map.py"; UAC="$D/uac_bench_srtp.xml"; UAS="$D/uas_bench_srtp.xml"
fi
W=$(mktemp -d /tmp/srtpbench.XXXX); cd "$W"
python3 "$MAPPY" csv "$N" --pool "${POOL:-16}"
HOLD=$(( (DUR + WU + 45) * 1000 ))   # > setup wait (<=30 s) + warm-up + duration
TARGET=127.0.0.1:${PROXY:-5070}
# sipp -bg prints "Background mode - PID=[n]" and exits 99: keep the PIDs to stop them later
UAS_PID=$(sipp -sf "$UAS" -i 127.0.0.1 -p 5070 -inf calls_uas.csv -trace_logs -log_file uas.log \
     -m "$N" -bg -timeout $(( DUR + WU + 120 ))s 2>&1 | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' || true)
sleep 0.5
UAC_PID=$(sipp -sf "$UAC" -i 127.0.0.1 -p 5061 "$TARGET" -inf calls_uac.csv -d "$HOLD" \
     -trace_logs -log_file uac.log -m "$N" -l "$N" -r "${CPS:-100}" -bg -timeout $(( DUR + WU + 120 ))s 2>&1 \
     | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' || true)
echo "sipp UAS pid $UAS_PID, UAC pid $UAC_PID (work dir $W)" >&2
# wait until every call is answered (bounded: 30 s); the scenarios append MAPA/MAPB lines via <exec>
for i in $(seq 150); do
  [ -f map_a.txt ] && [ -f map_b.txt ] && [ "$(wc -l < map_a.txt)" -ge "$N" ] && [ "$(wc -l < map_b.txt)" -ge "$N" ] && break
  sleep 0.2; done
python3 "$MAPPY" merge map_a.txt map_b.txt calls.map
EXTRA=""; [ -n "${RELAY_PID:-}" ] && EXTRA="--relay-pid $RELAY_PID --relay-core ${RELAY_CPU:-0}"
case "${SCHED:-fifo}" in fifo) PRIO="chrt -f 10";; nice) PRIO="nice -n -10";; *) PRIO="";; esac
# shellcheck disable=SC2086
$PRIO taskset -c "${GEN_CPU:-1}" "$GEN" --map calls.map --warmup "$WU" --duration "$DUR" \
  --gen-core "${GEN_CPU:-1}" --label "$LABEL-${PROXY:-direct}" $EXTRA ${OUT:+--out "$OUT"} \
  2> >(tee srtpgen.err >&2)   # its dead-stream report stays in the work dir
# calls end by BYE after the hold time; wait for that (bounded), then stop leftovers by PID
for i in $(seq 180); do kill -0 "$UAC_PID" 2>/dev/null || break; sleep 0.5; done
for p in $UAC_PID $UAS_PID; do kill "$p" 2>/dev/null || true; done
