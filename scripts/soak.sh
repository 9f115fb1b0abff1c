#!/usr/bin/env bash
# Soak (issue 13; documented, not in CI): SOAK_CALLS short sanitized calls through ONE
# `callmask run` process at a high call rate; RSS and CPU per call must stay flat from the
# first slice of calls to the last.
#
#   scripts/soak.sh                        # 100,000 calls at 200 calls/s (~9 min)
#   SOAK_CALLS=20000 scripts/soak.sh       # a shorter run
#   SOAK_SPEECH=1 scripts/soak.sh          # spoken-identifier masking on as well
#
# What runs (all on 127.0.0.1, every process started here stopped by PID at the end):
#   callmask run (release build): trunk mode, one `wav` recorder into a tmpfs folder
#     (/dev/shm; finished recordings are counted and deleted as the run goes, so nothing
#     fills), DTMF masking on (the default), spoken identifiers off unless SOAK_SPEECH=1
#     (then `masking.speech=true` with the default look-ahead and model), RUST_LOG=warn;
#   sipp UAS (the agent, built-in `uas`) answering every call;
#   sipp UAC (the PBX, a scenario written here) placing SOAK_CALLS calls at SOAK_RATE calls/s:
#     INVITE (PCMU + telephone-event), ACK, then plays a 1 s pcap (PCMU voice-like tones with
#     an in-band DTMF key press, made here) with play_pcap_audio, BYE after SOAK_CALL_MS.
# Every SOAK_SAMPLE_S seconds the script reads callmask's completed-call count
# (callmask_calls_total{outcome="completed"} from /metrics), and at each multiple of
# SOAK_SLICE calls records the process's RSS (VmRSS) and CPU time (utime+stime of
# /proc/PID/stat, all threads). It prints one row per slice:
#   calls done | RSS MB | CPU ms per call in the slice | recordings finished in the slice
# and the peak RSS (VmHWM) and idle RSS after the last call.
#
# Exit status: 1 if RSS at the end exceeds RSS at the first slice by more than
# SOAK_RSS_MARGIN % (default 20), or the last slice's CPU per call is more than
# SOAK_CPU_RATIO (default 1.2) times the first slice's, or more than SOAK_MAX_FAILED (default
# 0) calls failed, or callmask exited; 2 on a setup problem (tool, port, build).
#
# Env: SOAK_CALLS (100000), SOAK_RATE (200), SOAK_SLICE (10000), SOAK_CALL_MS (1000: pause
# after the ACK before BYE; the pcap lasts 1 s), SOAK_SAMPLE_S (1), SOAK_SPEECH (0),
# SOAK_RSS_MARGIN (20), SOAK_CPU_RATIO (1.2), SOAK_MAX_FAILED (0), SOAK_HOLD_S (0: seconds
# to keep callmask running after the table, e.g. to inspect it with gdb or heaptrack), PORT_BASE (15000: SIP and
# HTTP on BASE..+4, sipp media on +10 and +20), MEDIA_PORTS (16000-31999, 8000 pairs, below
# the kernel's ephemeral range: an answered call holds 2 pairs until 5 s after it ends, so
# the pool must hold more than 2 x rate x (call length + 5 s)), OUT (/tmp/callmask-soak:
# logs, sipp files, the table as table.md), REC_DIR (a fresh folder under /dev/shm), CALLMASK_BIN
# (default: scripts/speech_bin.sh builds the release binary with the engine into
# $CARGO_TARGET_DIR, default /var/tmp/callmask-target), CALLMASK_SET (extra `--set K=V` words).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CALLS=${SOAK_CALLS:-100000}
RATE=${SOAK_RATE:-200}
SLICE=${SOAK_SLICE:-10000}
CALL_MS=${SOAK_CALL_MS:-1000}
SAMPLE_S=${SOAK_SAMPLE_S:-1}
SPEECH=${SOAK_SPEECH:-0}
RSS_MARGIN=${SOAK_RSS_MARGIN:-20}
CPU_RATIO=${SOAK_CPU_RATIO:-1.2}
MAX_FAILED=${SOAK_MAX_FAILED:-0}
PORT_BASE=${PORT_BASE:-15000}
MEDIA_PORTS=${MEDIA_PORTS:-16000-31999}
OUT=${OUT:-/tmp/callmask-soak}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/callmask-target}

die() { echo "soak: $*" >&2; exit 2; }
for tool in sipp curl python3 ss; do command -v "$tool" >/dev/null || die "$tool not found"; done
[ "$CALLS" -ge "$SLICE" ] || die "SOAK_CALLS ($CALLS) must be at least SOAK_SLICE ($SLICE)"

if [ -z "${CALLMASK_BIN:-}" ]; then
  echo "soak: building callmask (release) into $CARGO_TARGET_DIR" >&2
  # shellcheck source=scripts/speech_bin.sh
  source scripts/speech_bin.sh
  CALLMASK_BIN=$BIN
fi
[ -x "$CALLMASK_BIN" ] || die "no callmask binary at $CALLMASK_BIN"

P_PBX=$PORT_BASE P_AG=$((PORT_BASE + 1)) P_PBXPEER=$((PORT_BASE + 2)) P_AGPEER=$((PORT_BASE + 3))
P_HTTP=$((PORT_BASE + 4)) MP_UAC=$((PORT_BASE + 10)) MP_UAS=$((PORT_BASE + 20))
for p in $P_PBX $P_AG $P_PBXPEER $P_AGPEER $MP_UAC $((MP_UAC + 1)) $MP_UAS $((MP_UAS + 1)); do
  ss -Hlun "sport = :$p" | grep -q . && die "udp port $p is busy (set PORT_BASE)"
done
ss -Hltn "sport = :$P_HTTP" | grep -q . && die "tcp port $P_HTTP is busy (set PORT_BASE)"

rm -rf "$OUT"
mkdir -p "$OUT/sipp"
if [ -z "${REC_DIR:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then REC_DIR=$(mktemp -d /dev/shm/callmask-soak.XXXX)
  else REC_DIR=$(mktemp -d /tmp/callmask-soak-rec.XXXX); fi
fi
mkdir -p "$REC_DIR"

CM="" UAS="" UAC=""
cleanup() {
  local p alive
  for p in $UAC $UAS $CM; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=""
    for p in $UAC $UAS $CM; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in $UAC $UAS $CM; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$REC_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The caller's audio: 1 s of PCMU at 20 ms (a two-tone "voice", then the DTMF key 5 for 100 ms
# in band, then voice again), Ethernet/IPv4/UDP frames for sipp's play_pcap_audio (sipp
# rewrites the addresses and ports, keeps the RTP headers and the timing).
python3 - "$OUT/sipp/soak.pcap" <<'PY'
import math, struct, sys

def ulaw(x):
    x = max(-32635, min(32635, int(x)))
    sign = 0x80 if x < 0 else 0
    x = abs(x) + 0x84
    exp = 7
    while exp > 0 and not (x & (0x4000 >> (7 - exp))):
        exp -= 1
    mant = (x >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF

rate, n = 8000, 8000
pcm = []
for i in range(n):
    t = i / rate
    if 0.4 <= t < 0.5:  # key 5: 770 + 1336 Hz
        v = 7000 * math.sin(2 * math.pi * 770 * t) + 7000 * math.sin(2 * math.pi * 1336 * t)
    else:
        v = 3000 * math.sin(2 * math.pi * 450 * t) + 1500 * math.sin(2 * math.pi * 1900 * t)
    pcm.append(v)
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
t0, ssrc = 1.7e9, 0x50AC0001
for k in range(n // 160):
    payload = bytes(ulaw(s) for s in pcm[k * 160:(k + 1) * 160])
    rtp = struct.pack("!BBHII", 0x80, 0x80 if k == 0 else 0, k, k * 160, ssrc) + payload
    udp = struct.pack("!HHHH", 27000, 6000, 8 + len(rtp), 0) + rtp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), k, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
    frame = b"\0" * 12 + b"\x08\x00" + ip
    ts = t0 + (k + 1) * 0.02
    out.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(frame), len(frame)) + frame)
PY

cat >"$OUT/sipp/uac_soak.xml" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callmask soak uac">
  <send retrans="500">
    <![CDATA[
      INVITE sip:agent@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:pbx@[local_ip]:[local_port]>;tag=[pid]SoakTag[call_number]
      To: <sip:agent@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:pbx@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [media_ip]
      s=soak
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:pbx@[local_ip]:[local_port]>;tag=[pid]SoakTag[call_number]
      To: <sip:agent@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <nop>
    <action>
      <exec play_pcap_audio="soak.pcap"/>
    </action>
  </nop>
  <pause/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:pbx@[local_ip]:[local_port]>;tag=[pid]SoakTag[call_number]
      To: <sip:agent@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
XML

# One sipp is the whole PBX, from one address: the per-source buckets (100 new calls/s, 1000
# requests/s by default) are raised so that they do not refuse the soak's own calls when sipp
# catches up after a stall.
LIMITS_SET=(--set limits.source_calls_per_s=$((RATE * 5)) --set limits.source_requests_per_s=$((RATE * 20)))
SPEECH_SET=(--set masking.speech=false --set masking.lookahead_ms=80)
[ "$SPEECH" = 1 ] && SPEECH_SET=(--set masking.speech=true)
ulimit -n "$(ulimit -Hn)"
# shellcheck disable=SC2086
RUST_LOG=${RUST_LOG:-warn} "$CALLMASK_BIN" run \
  --set "pbx.listen=127.0.0.1:$P_PBX" --set "agents.listen=127.0.0.1:$P_AG" \
  --set "pbx.peer=127.0.0.1:$P_PBXPEER" --set "agents.peer=127.0.0.1:$P_AGPEER" \
  --set "http.listen=127.0.0.1:$P_HTTP" --set "media.ports=$MEDIA_PORTS" \
  --set "recorder=[{kind=\"wav\",dir=\"$REC_DIR\"}]" "${SPEECH_SET[@]}" "${LIMITS_SET[@]}" ${CALLMASK_SET:-} \
  >"$OUT/callmask.log" 2>&1 &
CM=$!
for _ in $(seq 1800); do
  curl -sf -o /dev/null "http://127.0.0.1:$P_HTTP/readyz" && break
  kill -0 "$CM" 2>/dev/null || { tail -20 "$OUT/callmask.log" >&2; die "callmask exited at start-up"; }
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$P_HTTP/readyz" || die "callmask not ready (see $OUT/callmask.log)"

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$CM/stat"; }
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$CM/status"; }
completed() {
  curl -sf "http://127.0.0.1:$P_HTTP/metrics" |
    awk '$1 == "callmask_calls_total{outcome=\"completed\"}" { printf "%d\n", $2 }'
}
# Finished recordings (WAV + sidecar; `.partial` files are calls in progress) counted and
# deleted.
RECS=0
reap_recordings() {
  local n
  n=$(find "$REC_DIR" -type f -name '*.wav' -print -delete | wc -l)
  find "$REC_DIR" -type f -name '*.json' -delete
  RECS=$((RECS + n))
}

echo "soak: callmask pid $CM, $CALLS calls at $RATE/s, slices of $SLICE, speech masking $([ "$SPEECH" = 1 ] && echo on || echo off); work dir $OUT, recordings in $REC_DIR (deleted as they finish)" >&2
(cd "$OUT/sipp" && exec sipp -sn uas -i 127.0.0.1 -p "$P_AGPEER" -mi 127.0.0.1 -mp "$MP_UAS" \
  -m "$CALLS" -nostdin -trace_err -trace_screen -screen_file uas_screen.log \
  >"$OUT/sipp/uas.out" 2>&1) &
UAS=$!
sleep 0.5
START_CPU=$(cpu_ticks)
START_T=$(date +%s.%N)
(cd "$OUT/sipp" && exec sipp -sf uac_soak.xml -i 127.0.0.1 -p "$P_PBXPEER" -mi 127.0.0.1 -mp "$MP_UAC" \
  -m "$CALLS" -r "$RATE" -l $((RATE * 30)) -d "$CALL_MS" -nostdin -trace_err -trace_screen \
  -screen_file uac_screen.log "127.0.0.1:$P_PBX" >"$OUT/sipp/uac.out" 2>&1) &
UAC=$!

ROWS=()
PREV_CALLS=0 PREV_CPU=$START_CPU PREV_RECS=0 NEXT=$SLICE
FIRST_RSS="" FIRST_CPU="" LAST_CPU="" LAST_RSS=""
record_slice() { # calls_done
  local done=$1 cpu rss dcalls ms
  cpu=$(cpu_ticks) rss=$(status_kb VmRSS)
  reap_recordings
  dcalls=$((done - PREV_CALLS))
  ms=$(awk -v c="$((cpu - PREV_CPU))" -v t="$TCK" -v n="$dcalls" 'BEGIN { printf "%.3f", c / t * 1000 / n }')
  local mb
  mb=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
  ROWS+=("| $done | $mb | $ms | $((RECS - PREV_RECS)) | $(date -u +%H:%M:%S) |")
  echo "soak: $done calls: RSS $mb MB, $ms CPU-ms per call in the slice, $((RECS - PREV_RECS)) recordings" >&2
  [ -z "$FIRST_RSS" ] && FIRST_RSS=$rss FIRST_CPU=$ms
  LAST_RSS=$rss LAST_CPU=$ms
  PREV_CALLS=$done PREV_CPU=$cpu PREV_RECS=$RECS
}
while kill -0 "$UAC" 2>/dev/null; do
  sleep "$SAMPLE_S"
  kill -0 "$CM" 2>/dev/null || { echo "soak: callmask exited during the run" >&2; tail -20 "$OUT/callmask.log" >&2; exit 1; }
  done_now=$(completed || echo 0)
  if [ "${done_now:-0}" -ge "$NEXT" ]; then
    record_slice "$done_now"
    NEXT=$(( (done_now / SLICE + 1) * SLICE ))
  else
    reap_recordings
  fi
done
UAC_RC=0
wait "$UAC" || UAC_RC=$?
UAC=""
END_T=$(date +%s.%N)
# The calls still ending (BYE answered, recordings closed).
for _ in $(seq 50); do
  a=$(curl -sf "http://127.0.0.1:$P_HTTP/metrics" | awk '$1 == "callmask_calls_active" { print $2 }')
  [ "${a:-1}" = 0 ] && break
  sleep 0.2
done
done_now=$(completed || echo 0)
[ "$done_now" -gt "$PREV_CALLS" ] && [ $((done_now - PREV_CALLS)) -ge $((SLICE / 2)) ] && record_slice "$done_now"
sleep 1
reap_recordings
HWM=$(status_kb VmHWM) IDLE=$(status_kb VmRSS)
curl -sf "http://127.0.0.1:$P_HTTP/metrics" >"$OUT/metrics.txt" || true
wait "$UAS" 2>/dev/null || true
UAS=""

stat_of() { # screen file, label
  awk -v l="$2" 'index($0, l) == 3 { split($0, c, "|"); v = c[3] } END { gsub(/ /, "", v); print v + 0 }' "$OUT/sipp/$1"
}
OK=$(stat_of uac_screen.log "Successful call") FAILED=$(stat_of uac_screen.log "Failed call")
WALL=$(awk -v a="$START_T" -v b="$END_T" 'BEGIN { printf "%.0f", b - a }')
TOTAL_CPU=$(awk -v c="$(( $(cpu_ticks) - START_CPU ))" -v t="$TCK" 'BEGIN { printf "%.1f", c / t }')
{
  echo "callmask soak, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "$CALLS calls at $RATE/s (call $CALL_MS ms after the answer, 1 s of PCMU with one in-band DTMF key from the caller), wav recorder on tmpfs, DTMF masking on, speech masking $([ "$SPEECH" = 1 ] && echo on || echo off)"
  echo
  echo "| calls done | RSS MB | CPU ms per call in the slice | recordings in the slice | time (UTC) |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "sipp UAC: $OK successful, $FAILED failed (exit $UAC_RC); $RECS recordings finished; ${WALL} s wall, ${TOTAL_CPU} CPU-s in callmask"
  echo "peak RSS (VmHWM) $(awk -v k="$HWM" 'BEGIN { printf "%.1f", k / 1024 }') MB; RSS idle after the last call $(awk -v k="$IDLE" 'BEGIN { printf "%.1f", k / 1024 }') MB"
  grep -E '^callmask_(calls_total|recorder_errors_total|recorder_queue_dropped_frames_total|rtp_packets_dropped_total|masked_spans_total|limit_refusals_total)' "$OUT/metrics.txt" | grep -v ' 0$' || true
} | tee "$OUT/table.md"

if [ "${SOAK_HOLD_S:-0}" -gt 0 ]; then
  echo "soak: callmask (pid $CM) kept running ${SOAK_HOLD_S} s for inspection" >&2
  sleep "$SOAK_HOLD_S"
fi
rc=0
RSS_LIMIT=$(( FIRST_RSS * (100 + RSS_MARGIN) / 100 ))
if [ "$LAST_RSS" -gt "$RSS_LIMIT" ]; then
  echo "FAIL: RSS at the end ($((LAST_RSS / 1024)) MB) is more than $RSS_MARGIN % over RSS at the first slice ($((FIRST_RSS / 1024)) MB)"; rc=1
else
  echo "PASS: RSS flat (end $((LAST_RSS / 1024)) MB <= first slice $((FIRST_RSS / 1024)) MB + $RSS_MARGIN %)"
fi
if awk -v a="$LAST_CPU" -v b="$FIRST_CPU" -v r="$CPU_RATIO" 'BEGIN { exit !(a > r * b) }'; then
  echo "FAIL: CPU per call in the last slice ($LAST_CPU ms) is more than $CPU_RATIO x the first ($FIRST_CPU ms)"; rc=1
else
  echo "PASS: CPU per call flat (last slice $LAST_CPU ms <= $CPU_RATIO x first $FIRST_CPU ms)"
fi
if [ "$FAILED" -gt "$MAX_FAILED" ] || [ "$OK" -lt $((CALLS - MAX_FAILED)) ]; then
  echo "FAIL: $FAILED calls failed, $OK of $CALLS completed (allowed failures: $MAX_FAILED; see $OUT/sipp)"; rc=1
else
  echo "PASS: $OK of $CALLS calls completed"
fi
exit "$rc"
