#!/usr/bin/env bash
# End-to-end recorder test: plays dev-corpus calls as real-time RTP through a running
# `callmask run` (trunk mode, loopback only) and scores what each recorder sink delivered:
# the `wav` file, the `rtp` fork and the `siprec` client's streams (both captured by
# scripts/rtp_capture.py, which writes what it receives to WAV; sipp with
# integration/scenarios/srs_uas.xml is the SRS).
#
#   scripts/e2e_recorder.sh [CALL...]     # e.g. 011 018 or call_011; default: the subset below
#   ALL=1 scripts/e2e_recorder.sh         # all 20 dev calls
#
# Per call (all selected calls run in parallel, each with its own callmask and port block):
#   make_pcap.py -> call.pcap (PCMU PT 0 + labelled RFC 4733 packets as PT 101)
#   rtp_capture.py on P+14 / P+16 (the rtp sink's caller / agent legs) and P+18 / P+19 (the
#   SRS's media ports); sipp as the SRS (srs_uas.xml) on P+5
#   callmask run (fresh instance; wav + rtp + siprec recorders, masking.lookahead_ms=80)
#   sipp UAS (the agent, on P4) in background; sipp UAC (the PBX, binds P3) INVITEs P1 and
#   plays the pcap, BYE after the call length + a margin
#   wait for DIR/*.wav, take channel 0 (caller = PBX side) as OUT/masked/call_NNN.wav; the
#   SRS gets callmask's BYE; the receiver writes the rtp sink's caller leg as
#   OUT/masked_rtp/call_NNN.wav and the SRS's caller stream as OUT/masked_siprec/call_NNN.wav
# Then: score.py --set-dir (a temp dir holding only the selected calls' labels/originals),
# with OUT/masked/call_NNN.events.json = every digit spandsp decodes anywhere in the recorded
# caller channel (so an RFC 4733 event that reached the recording as audio counts as
# forwarded), plus a whole-channel multimon-ng/spandsp decode that must find no digit at all
# (the original calls' non-DTMF parts decode nothing with either detector).
# Checks, for each sink (wav, rtp, siprec): 0 in-band tones leaked, 0 still decodable, 0
# negative controls muted, speech over-masked < 0.5 %, alignment reliable for every call,
# 0 RFC 4733 events in the recording, 0 digits decodable in any recorded caller channel,
# every call recorded; for rtp and siprec also 0 non-PCMU (RFC 4733) packets received.
# SINKS="wav rtp" (default "wav rtp siprec") scores fewer.
#
# Env: CALLMASK_BIN (default: build $CARGO_TARGET_DIR/release/callmask), CARGO_TARGET_DIR
# (default /tmp/tgt-rec), OUT (default /tmp/rec-e2e-corpus), PORT_BASE (default 23000, below the kernel's ephemeral range;
# call i uses PORT_BASE+40*i .. +39), MARGIN_MS (default 2500), CALLMASK_SHARED (default
# ../shared), CALLMASK_SET (extra `--set K=V` arguments, e.g. "--set masking.dtmf=false" to
# see the checks fail), SPANDSP_DTMF_BIN (default /tmp/callmask-eval/spandsp_dtmf, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SHARED=${CALLMASK_SHARED:-$(cd .. && pwd)/shared}
EVAL="$SHARED/eval"
DEV="$EVAL/data/dev"
export SPANDSP_DTMF_BIN=${SPANDSP_DTMF_BIN:-/tmp/callmask-eval/spandsp_dtmf}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/tgt-rec}
OUT=${OUT:-/tmp/rec-e2e-corpus}
PORT_BASE=${PORT_BASE:-23000}
MARGIN_MS=${MARGIN_MS:-2500}
JOBS=${JOBS:-20}  # calls played at the same time
SINKS=${SINKS:-wav rtp siprec}
SRS_XML="$REPO/integration/scenarios/srs_uas.xml"
# clean + over_speech + over_noise + rfc4733_dual (012), rfc4733_dual + RFC 4733-only (007),
# over_noise + RFC 4733-only + off-frequency pairs (018), clean/over_speech/over_noise (006),
# over_speech-heavy + RFC 4733-only (014), negative controls only: talk-off vowels,
# off-frequency pairs, music, whistle (011). 6 calls, 6 min of audio, ~1.5-2 min wall clock.
DEFAULT_CALLS="006 007 011 012 014 018"

t_start=$(date +%s)
if [ "$#" -gt 0 ]; then
  CALLS="$*"
elif [ "${ALL:-0}" = 1 ]; then
  CALLS=$(cd "$DEV" && ls call_*.json | sed 's/call_\([0-9]*\)\.json/\1/')
else
  CALLS=$DEFAULT_CALLS
fi
CALLS=$(for c in $CALLS; do c=${c#call_}; printf '%03d\n' "$((10#$c))"; done)

for tool in sipp python3 multimon-ng; do
  command -v "$tool" >/dev/null || { echo "recorder-e2e: $tool not found" >&2; exit 2; }
done
[ -x "$SPANDSP_DTMF_BIN" ] || SPANDSP_DTMF_BIN="$SPANDSP_DTMF_BIN" bash "$EVAL/tools/build.sh" >/dev/null
if [ -z "${CALLMASK_BIN:-}" ]; then
  cargo build --release -q -p callmask
  CALLMASK_BIN="$CARGO_TARGET_DIR/release/callmask"
fi

rm -rf "$OUT" && mkdir -p "$OUT/masked" "$OUT/masked_rtp" "$OUT/masked_siprec" "$OUT/set" "$OUT/work"

# ---------------------------------------------------------------- process bookkeeping
# Every process started here is listed by PID: the per-call subshells in PIDS, and their
# children (callmask, sipp) in $OUT/work/call_NNN/pids. TERM, then KILL what is left after 5 s.
PIDS=()
# shellcheck source=scripts/procs.sh
source scripts/procs.sh  # kill_list
cleanup() {
  local all=("${PIDS[@]}") f
  for f in "$OUT"/work/*/pids; do [ -e "$f" ] && mapfile -t -O "${#all[@]}" all <"$f"; done
  [ "${#all[@]}" -gt 0 ] && kill_list "${all[@]}"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One call, run in a subshell: writes $W/status ("ok" or a reason) and the masked channel.
run_call() {
  local c=$1 i=$2
  W="$OUT/work/call_$1"  # not local: the EXIT trap needs it
  local b=$((PORT_BASE + 40 * i))
  local P1=$b P2=$((b + 1)) P3=$((b + 2)) P4=$((b + 3)) P5=$((b + 4))
  local UAC_MP=$((b + 6)) UAS_MP=$((b + 10)) MA=$((b + 20)) MB=$((b + 39))
  local SRSP=$((b + 5)) RTP1=$((b + 14)) RTP2=$((b + 16)) SRS1=$((b + 18)) SRS2=$((b + 19))
  local cm uas uac srs cap dur rc=0 rec=""
  mkdir -p "$W/rec"
  : >"$W/pids"
  # shellcheck disable=SC2317
  reap_call() { [ -s "$W/pids" ] && mapfile -t cp <"$W/pids" && kill_list "${cp[@]}"; : >"$W/pids"; }
  trap reap_call EXIT
  trap 'exit 130' TERM INT
  echo "setup failed" >"$W/status"
  python3 "$EVAL/rtp/make_pcap.py" "$DEV/call_$c" -o "$W/call.pcap" >"$W/make_pcap.log"
  dur=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['meta']['duration_ms'])" "$DEV/call_$c.json")
  cp "$EVAL/rtp/uac_play.xml" "$EVAL/rtp/uas_answer.xml" "$SRS_XML" "$W/"

  # The rtp sink's and the SRS's receivers.
  python3 "$REPO/scripts/rtp_capture.py" "$W/cap" "$RTP1" "$RTP2" "$SRS1" "$SRS2" >"$W/capture.log" 2>&1 &
  cap=$!; echo "$cap" >>"$W/pids"
  for _ in $(seq 50); do grep -q ready "$W/capture.log" 2>/dev/null && break; sleep 0.1; done
  # -aa: the SRS answers callmask's in-dialog keep-alive OPTIONS (every keepalive_s, 10 s) with
  # 200, as a real SRS does; probe_s=0 below: sipp's -m 1 would count a probe as its one call.
  (cd "$W" && exec sipp -sf srs_uas.xml -i 127.0.0.1 -p "$SRSP" -m 1 -aa -set p1 "$SRS1" -set p2 "$SRS2" \
      -nostdin -timeout $(((dur + 60000) / 1000))s -timeout_error -trace_err -trace_logs \
      >"$W/srs.out" 2>&1) &
  srs=$!; echo "$srs" >>"$W/pids"
  local recorders="{kind=\"wav\",dir=\"$W/rec\"},{kind=\"rtp\",target=\"127.0.0.1:$RTP1\"}"
  recorders+=",{kind=\"siprec\",srs=[\"sip:srs@127.0.0.1:$SRSP\"],probe_s=0,bind=\"127.0.0.1:0\",fallback_dir=\"$W/siprec_fallback\"}"

  RUST_LOG=${RUST_LOG:-info} "$CALLMASK_BIN" run \
    --set "pbx.listen=127.0.0.1:$P1" --set "agents.listen=127.0.0.1:$P2" \
    --set "pbx.peer=127.0.0.1:$P3" --set "agents.peer=127.0.0.1:$P4" --set "http.listen=127.0.0.1:$P5" \
    --set "media.ports=$MA-$MB" --set "recorder=[$recorders]" \
    --set masking.lookahead_ms=80 --set masking.speech=false ${CALLMASK_SET:-} \
    >"$W/callmask.log" 2>&1 &
  cm=$!; echo "$cm" >>"$W/pids"
  # ready when the HTTP port answers (or 10 s)
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$P5") 2>/dev/null && break
    kill -0 "$cm" 2>/dev/null || { echo "callmask exited at start-up" >"$W/status"; return 1; }
    sleep 0.1
  done

  (cd "$W" && exec sipp -sf uas_answer.xml -i 127.0.0.1 -p "$P4" -mi 127.0.0.1 -mp "$UAS_MP" -m 1 \
      -nostdin -timeout $(((dur + 60000) / 1000))s -timeout_error -trace_err -trace_logs \
      >"$W/uas.out" 2>&1) &
  uas=$!; echo "$uas" >>"$W/pids"
  sleep 0.3
  (cd "$W" && exec sipp -sf uac_play.xml -i 127.0.0.1 -p "$P3" -mi 127.0.0.1 -mp "$UAC_MP" -m 1 \
      -d "$((dur + MARGIN_MS))" -nostdin -timeout $(((dur + 60000) / 1000))s -timeout_error \
      -trace_err -trace_logs "127.0.0.1:$P1" >"$W/uac.out" 2>&1) &
  uac=$!; echo "$uac" >>"$W/pids"
  wait "$uac" || rc=$?
  if [ "$rc" != 0 ]; then echo "sipp UAC failed (exit $rc, see $W/uac.out)" >"$W/status"; return 1; fi
  wait "$uas" || rc=$?
  if [ "$rc" != 0 ]; then echo "sipp UAS failed (exit $rc, see $W/uas.out)" >"$W/status"; return 1; fi
  # the recording is renamed into place when the call ends
  for _ in $(seq 100); do
    rec=$(ls "$W"/rec/*.wav 2>/dev/null | head -1 || true)
    [ -n "$rec" ] && [ -e "${rec%.wav}.json" ] && break
    sleep 0.1
  done
  if [ -z "$rec" ]; then echo "no recording in $W/rec after BYE" >"$W/status"; return 1; fi
  # The SRS exits once it has callmask's BYE; then the receiver writes its WAVs.
  for _ in $(seq 100); do kill -0 "$srs" 2>/dev/null || break; sleep 0.1; done
  wait "$srs" || echo "sipp SRS failed (exit $?, see $W/srs.out)" >"$W/srs_status"
  kill -TERM "$cap" 2>/dev/null || true
  wait "$cap" || true
  cp "$W/cap_$RTP1.wav" "$OUT/masked_rtp/call_$c.wav" 2>/dev/null || true
  cp "$W/cap_$SRS1.wav" "$OUT/masked_siprec/call_$c.wav" 2>/dev/null || true
  python3 - "$W" "$c" "$RTP1" "$RTP2" "$SRS1" "$SRS2" >"$W/capture.json" <<'PY'
import json, sys
w, c, ports = sys.argv[1], sys.argv[2], sys.argv[3:]
res = {}
for p in ports:
    try:
        res[p] = json.load(open(f"{w}/cap_{p}.json"))
    except OSError:
        res[p] = None
print(json.dumps(res))
PY
  python3 - "$rec" "$OUT/masked/call_$c.wav" <<'PY'
import sys
import soundfile as sf
x, fs = sf.read(sys.argv[1], dtype="int16", always_2d=True)
assert fs == 8000 and x.shape[1] == 2, (fs, x.shape)
sf.write(sys.argv[2], x[:, 0], fs, subtype="PCM_16")
PY
  ln -s "$DEV/call_$c.json" "$DEV/call_$c.wav" "$OUT/set/"
  echo ok >"$W/status"
}

i=0
CALL_PIDS=()
for c in $CALLS; do
  [ -e "$DEV/call_$c.json" ] || { echo "recorder-e2e: no dev call $c" >&2; exit 2; }
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  run_call "$c" "$i" &
  CALL_PIDS+=("$!"); PIDS+=("$!")
  i=$((i + 1))
done
echo "recorder-e2e: playing $i call(s) in real time: $(echo $CALLS)"
for p in "${CALL_PIDS[@]}"; do wait "$p" || true; done
t_play=$(date +%s)

n_ok=0
for c in $CALLS; do
  st=$(cat "$OUT/work/call_$c/status" 2>/dev/null || echo "no status")
  if [ "$st" = ok ]; then n_ok=$((n_ok + 1)); else echo "recorder-e2e: call_$c: $st"; fi
  if [ -e "$OUT/work/call_$c/srs_status" ]; then
    echo "recorder-e2e: call_$c: $(cat "$OUT/work/call_$c/srs_status")"
  fi
done
echo "recorder-e2e: recorded $n_ok/$i calls in $((t_play - t_start)) s"

# Score one sink's caller channels: $1 = sink name, $2 = masked dir, $3 = suffix of the
# decode/score files (wav: none, so $OUT/score.json keeps its name).
score_sink() {
  local sink=$1 dir=$2 sfx=$3
  [ -n "$(ls "$dir"/call_*.wav 2>/dev/null)" ] || return 0
  # Whole-channel decode: every digit spandsp / multimon-ng finds anywhere in the recorded
  # caller channel. spandsp's hits (with times) become call_NNN.events.json for the scorer's
  # RFC 4733 check (a labelled event "reached the recorder" if its digit is decoded near it).
  EVAL_DIR="$EVAL" python3 - "$OUT" "$dir" "$OUT/decode$sfx.json" <<'PY'
import glob, json, os, sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, os.environ["EVAL_DIR"])
import numpy as np
import score
from common import read_audio
out, masked, decode_json = sys.argv[1], sys.argv[2], sys.argv[3]
def one(p):
    base = os.path.basename(p)[:-4]
    x = read_audio(p)
    ev = [dict(digit=e[2], start_ms=round(e[1] * 1000 / 8000, 1), duration_ms=40)
          for e in score.run_spandsp(x) if e[0] == "ON"]
    with open(p[:-4] + ".events.json", "w") as f:
        json.dump(ev, f)
    sp, mm = "".join(e["digit"] for e in ev), score.multimon_digits(x)
    # What the detectors already find in the original outside the labelled in-band tones
    # (multimon-ng has some talk-off on speech): such digits are not leaks.
    o = read_audio(os.path.join(out, "set", base + ".wav")).astype(float)
    for t in score.load_json(os.path.join(out, "set", base + ".json"))["dtmf_inband"]:
        o[max(0, score.ms2s(t["start_ms"] - 50)):score.ms2s(t["end_ms"] + 50)] = 0
    osp, omm = score.spandsp_digits(o), score.multimon_digits(o)
    new = dict(spandsp="".join((Counter(sp) - Counter(osp)).elements()),
               multimon="".join((Counter(mm) - Counter(omm)).elements()))
    return base, dict(spandsp=sp, multimon=mm, original_without_labelled_dtmf=dict(spandsp=osp, multimon=omm), new=new)
with ThreadPoolExecutor(4) as ex:
    res = dict(ex.map(one, sorted(glob.glob(os.path.join(masked, "call_*.wav")))))
json.dump(res, open(decode_json, "w"), indent=1)
PY
  python3 "$EVAL/score.py" --set-dir "$OUT/set" --masked-dir "$dir" --json "$OUT/score$sfx.json" \
    >"$OUT/score$sfx.txt"
  echo "recorder-e2e: --- $sink sink ---"
  sed -n '1,/^$/p' "$OUT/score$sfx.txt"
  sed -n '/AGGREGATE/,$p' "$OUT/score$sfx.txt"
}

rc=0
for sink in $SINKS; do
  case $sink in
    wav) dir="$OUT/masked" sfx="" ;;
    rtp) dir="$OUT/masked_rtp" sfx="_rtp" ;;
    siprec) dir="$OUT/masked_siprec" sfx="_siprec" ;;
    *) echo "recorder-e2e: unknown sink $sink" >&2; exit 2 ;;
  esac
  if [ "$n_ok" -gt 0 ]; then score_sink "$sink" "$dir" "$sfx"; fi
  python3 - "$OUT" "$sink" "$dir" "$sfx" "$i" $CALLS <<'PY' || rc=1
import glob, json, os, sys
out, sink, masked, sfx, n_calls, calls = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6:]
recorded = len(glob.glob(os.path.join(masked, "call_*.wav")))
checks = [(f"every call recorded ({n_calls - recorded} missing)", recorded == n_calls)]
if sink != "wav":
    # What the receivers got: PCMU only (never an RFC 4733 event), one SSRC per stream.
    other, ssrcs = {}, {}
    for c in calls:
        try:
            cap = json.load(open(os.path.join(out, "work", f"call_{c}", "capture.json")))
        except (OSError, ValueError):
            continue
        ports = list(cap)
        mine = ports[:2] if sink == "rtp" else ports[2:]
        for p in mine[:1]:  # the caller leg / stream
            st = cap[p] or {}
            if st.get("other_pt"):
                other[c] = st["other_pt"]
            if st.get("packets") and st.get("ssrcs") != 1:
                ssrcs[c] = st.get("ssrcs")
    checks += [
        (f"non-PCMU packets (RFC 4733 events) received: {other or 'none'} (need none)", not other),
        (f"one SSRC per caller stream (calls with more: {ssrcs or 'none'})", not ssrcs),
    ]
if os.path.exists(os.path.join(out, f"score{sfx}.json")) and recorded:
    rep = json.load(open(os.path.join(out, f"score{sfx}.json")))
    a = rep["aggregate"]
    d, o, n, r = a["dtmf"], a["overmask"], a["negative_control"], a["rfc4733"]
    neg_muted = sum(v["falsely_muted"] for v in n.values())
    neg_total = sum(v["spans"] for v in n.values())
    dec = json.load(open(os.path.join(out, f"decode{sfx}.json")))
    heard = {k: v["new"] for k, v in dec.items() if v["new"]["spandsp"] or v["new"]["multimon"]}
    talkoff = {k: v["original_without_labelled_dtmf"] for k, v in dec.items()
               if v["original_without_labelled_dtmf"]["spandsp"] or v["original_without_labelled_dtmf"]["multimon"]}
    checks += [
        (f"in-band DTMF leaked {d['leaked']}/{d['spans']} (need 0)", d["leaked"] == 0),
        (f"still decodable: spandsp {d['still_detected_spandsp']}, multimon {d['still_detected_multimon']} (need 0)",
         d["still_detected_spandsp"] == 0 and d["still_detected_multimon"] == 0),
        (f"negative controls muted {neg_muted}/{neg_total} (need 0)", neg_muted == 0),
        (f"speech over-masked {o['speech_muted_pct']}% (need < 0.5%)", o["speech_muted_pct"] < 0.5),
        (f"alignment reliable (unreliable: {a['alignment']['unreliable_calls']}; delays {a['alignment']['delays_ms']} ms)",
         not a["alignment"]["unreliable_calls"]),
        (f"RFC 4733 events in the recording {r['leaked']}/{r['events']} (need 0)", r["leaked"] == 0),
        (f"digits decodable anywhere in the recorded caller channel beyond the original's own talk-off "
         f"{talkoff or '{}'}: {heard or 'none'} (need none)", not heard),
    ]
failed = 0
for text, ok in checks:
    print(("PASS " if ok else "FAIL ") + f"[{sink}] " + text)
    failed += not ok
print(f"recorder-e2e: [{sink}] {len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
done
echo "recorder-e2e: total $(($(date +%s) - t_start)) s"
exit $rc
