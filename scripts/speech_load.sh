#!/usr/bin/env bash
# Speech masking under load through the live proxy (issue 11: "lateness at the default worker
# count with 1, 10 and N concurrent calls"). For each N given, a fresh `callmask run` carries
# N simultaneous copies of one dev-corpus call, and the run is measured from /metrics and /proc.
#
#   scripts/speech_load.sh [N...]        # default: 1 10; e.g. scripts/speech_load.sh 1 10 20
#
# Per N (one after the other, nothing shared between them but the binary and the pcap):
#   make_pcap.py -> call.pcap (once per script run: PCMU PT 0 + the call's RFC 4733 packets)
#   callmask run: trunk mode on 127.0.0.1, speech masking on (`masking.speech=true`) with the
#     default `speech.workers` and default `masking.lookahead_ms` (neither is set here), one
#     `wav` recorder into OUT/nN/rec; started when /readyz says every worker loaded its model
#   sipp UAS (the agent, uas_answer.xml, sends no audio) answering N calls; sipp UAC (the PBX,
#     uac_play.xml) starting all N calls within 100 ms (`-l N -m N -r N -rp 100`), each playing
#     the pcap in real time and sending BYE after the call length + MARGIN_MS
#   after both sipps exit and the N recordings are on disk: scrape /metrics, read the
#     process's CPU time (/proc/PID/stat, from ready to last recording) and peak RSS (VmHWM),
#     stop callmask
# One table row per N (also OUT/table.md; every figure as JSON in OUT/results.jsonl):
#   calls      calls sipp's UAC completed / N (callmask's callmask_calls_total{outcome=
#              "completed"} in OUT/nN/metrics.txt)
#   recs       recordings written (WAV + sidecar) in OUT/nN/rec
#   late muted callmask_fail_closed_muted_seconds_total (recorder audio muted because its
#              verdict was late) as a share of the recorded audio (sum of the WAVs' lengths:
#              only the caller leg carries audio, the agent UAS sends none); the sidecars'
#              `fail_closed` spans give the same per recording (results.jsonl: total, worst)
#   segments   callmask_recognizer_segments_total late+dropped / all (late and dropped segments
#              are muted whole)
#   p50/p95    callmask_mask_decision_latency_seconds{reason="spoken_id"} quantiles,
#              interpolated in the histogram's buckets like PromQL's histogram_quantile
#              (">5" when it falls in the +Inf bucket: the buckets stop at 5 s, the default
#              look-ahead is 8 s), and the exact mean (_sum / _count), with the verdict count
#   CPU/aud-s  callmask's user+system CPU seconds over the calls / audio seconds played
#              (completed calls x the call's length): the whole process (relay and DTMF DSP
#              included), not the recognizer threads alone
#   peak RSS   VmHWM of callmask at the end of the run (model load included)
#   load       1-minute load average before the run: the figures depend on what else runs
# Exit status 1 if a call failed, a recording is missing (callmask_recorder_errors_total is in
# results.jsonl: a full disk abandons recordings) or callmask did not become ready;
# no threshold is gated on (a measurement, not a test).
#
# Env: CALLMASK_BIN (default: scripts/speech_bin.sh builds `callmask` release with the engine
# into $CARGO_TARGET_DIR, default /var/tmp/callmask-target), CALLMASK_SHARED (../shared), CALL
# (dev call played, default 003: 71 s, 6 spoken identifiers, DTMF and RFC 4733), OUT (default
# /tmp/callmask-speech-load, emptied first), PORT_BASE (default 25000: SIP/HTTP on BASE..+4,
# sipp media on +10 and +20, callmask media from +100; all below the ephemeral range 32768),
# MARGIN_MS (2500), READY_TIMEOUT_S (180), CALLMASK_SET (extra `--set K=V` arguments, e.g.
# "--set speech.workers=2" to compare with the default).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SHARED=${CALLMASK_SHARED:-$(cd .. && pwd)/shared}
EVAL="$SHARED/eval"
CALL=${CALL:-003}
CALL=$(printf '%03d' "$((10#${CALL#call_}))")
SRC="$EVAL/data/dev/call_$CALL"
OUT=${OUT:-/tmp/callmask-speech-load}
PORT_BASE=${PORT_BASE:-25000}
MARGIN_MS=${MARGIN_MS:-2500}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-180}
NS=${*:-1 10}
# shellcheck source=scripts/procs.sh
source scripts/procs.sh

for tool in sipp python3 curl; do
  command -v "$tool" >/dev/null || { echo "speech-load: $tool not found (scripts/setup.sh)" >&2; exit 2; }
done
[ -e "$SRC.json" ] || { echo "speech-load: no dev call $SRC (set CALLMASK_SHARED)" >&2; exit 2; }
for n in $NS; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "speech-load: N must be a positive integer, not '$n'" >&2; exit 2; }
  # media: 2 legs x RTP+RTCP per call, with room to spare
  [ $((PORT_BASE + 100 + 8 * n + 100)) -lt 32768 ] ||
    { echo "speech-load: N=$n needs ports past 32767 (lower PORT_BASE)" >&2; exit 2; }
done
if [ -z "${CALLMASK_BIN:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/callmask-target}
  # shellcheck source=scripts/speech_bin.sh
  source scripts/speech_bin.sh
  CALLMASK_BIN=$BIN
fi
[ -x "$CALLMASK_BIN" ] || { echo "speech-load: no callmask binary at $CALLMASK_BIN" >&2; exit 2; }

rm -rf "$OUT" && mkdir -p "$OUT"
PIDS=()
# Ignores further INT/TERM while it runs: `timeout` signals the script and then its whole
# process group, and a second TERM inside the trap would exit before the KILLs.
cleanup() {
  trap '' INT TERM
  [ "${#PIDS[@]}" -gt 0 ] && kill_list "${PIDS[@]}"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$EVAL/rtp/make_pcap.py" "$SRC" -o "$OUT/call.pcap" >"$OUT/make_pcap.log"
cp "$EVAL/rtp/uac_play.xml" "$EVAL/rtp/uas_answer.xml" "$OUT/"
DUR_MS=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['meta']['duration_ms'])" "$SRC.json")
SIPP_TIMEOUT=$(((DUR_MS + MARGIN_MS) / 1000 + 120))s

P_PBX=$PORT_BASE P_AG=$((PORT_BASE + 1)) P_UAC=$((PORT_BASE + 2)) P_UAS=$((PORT_BASE + 3))
P_HTTP=$((PORT_BASE + 4)) UAC_MP=$((PORT_BASE + 10)) UAS_MP=$((PORT_BASE + 20))
MEDIA_LO=$((PORT_BASE + 100))

# run_n N: one measurement; writes OUT/nN/result.json (or returns 1 with a reason on stderr).
run_n() {
  local n=$1 w="$OUT/n$1" cm uas uac rc=0 cpu0 cpu1 t0 t1 rss load recs=0 i
  mkdir -p "$w/rec"
  load=$(cut -d' ' -f1 /proc/loadavg)
  # shellcheck disable=SC2086
  RUST_LOG=${RUST_LOG:-info} "$CALLMASK_BIN" run \
    --set "pbx.listen=\"127.0.0.1:$P_PBX\"" --set "agents.listen=\"127.0.0.1:$P_AG\"" \
    --set "pbx.peer=\"127.0.0.1:$P_UAC\"" --set "agents.peer=\"127.0.0.1:$P_UAS\"" \
    --set "http.listen=\"127.0.0.1:$P_HTTP\"" \
    --set "media.ports=\"$MEDIA_LO-$((MEDIA_LO + 8 * n + 99))\"" \
    --set "recorder=[{kind=\"wav\",dir=\"$w/rec\"}]" --set masking.speech=true ${CALLMASK_SET:-} \
    >"$w/callmask.log" 2>&1 &
  cm=$!; PIDS+=("$cm")
  if ! wait_http "http://127.0.0.1:$P_HTTP/readyz" "$cm" "$READY_TIMEOUT_S"; then
    echo "speech-load: N=$n: callmask not ready after ${READY_TIMEOUT_S} s (see $w/callmask.log;" \
      "$(curl -s "http://127.0.0.1:$P_HTTP/readyz" 2>/dev/null | head -c 200))" >&2
    return 1
  fi
  cpu0=$(proc_cpu_s "$cm") t0=$(date +%s.%N)

  (cd "$OUT" && exec sipp -sf uas_answer.xml -i 127.0.0.1 -p "$P_UAS" -mi 127.0.0.1 -mp "$UAS_MP" \
      -m "$n" -nostdin -timeout "$SIPP_TIMEOUT" -timeout_error >"$w/uas.out" 2>&1) &
  uas=$!; PIDS+=("$uas")
  sleep 0.3
  (cd "$OUT" && exec sipp -sf uac_play.xml -i 127.0.0.1 -p "$P_UAC" -mi 127.0.0.1 -mp "$UAC_MP" \
      -l "$n" -m "$n" -r "$n" -rp 100 -d "$((DUR_MS + MARGIN_MS))" -nostdin \
      -timeout "$SIPP_TIMEOUT" -timeout_error "127.0.0.1:$P_PBX" >"$w/uac.out" 2>&1) &
  uac=$!; PIDS+=("$uac")
  wait "$uac" || rc=$?
  [ "$rc" = 0 ] || echo "speech-load: N=$n: sipp UAC exit $rc (see $w/uac.out)" >&2
  wait "$uas" || { rc=$?; echo "speech-load: N=$n: sipp UAS exit $rc (see $w/uas.out)" >&2; }

  # Recordings are renamed into place (WAV, then its sidecar) once the delayed recorder path
  # has drained: up to one look-ahead after BYE, plus the last verdicts. Stop waiting early
  # once callmask has no call and no recording open (the wav sink closes its session after
  # the rename; a recording it abandoned, e.g. on a full disk, never appears and is counted in
  # callmask_recorder_errors_total).
  for ((i = 0; i < 1200; i++)); do
    recs=$(find "$w/rec" -maxdepth 1 -name '*.json' | wc -l)
    [ "$recs" -ge "$n" ] && break
    kill -0 "$cm" 2>/dev/null || break
    if ((i % 10 == 9)) && curl -sf "http://127.0.0.1:$P_HTTP/metrics" |
      awk '/^callmask_(calls_active|recorder_sessions_active)[{ ]/ { open += $NF } END { exit open > 0 }'; then
      recs=$(find "$w/rec" -maxdepth 1 -name '*.json' | wc -l)
      break
    fi
    sleep 0.1
  done
  # (nan / 0 if callmask died during the run)
  cpu1=$(proc_cpu_s "$cm" 2>/dev/null || echo nan) t1=$(date +%s.%N)
  rss=$(proc_peak_rss_kib "$cm" 2>/dev/null || echo 0)
  curl -sf "http://127.0.0.1:$P_HTTP/metrics" >"$w/metrics.txt" ||
    echo "speech-load: N=$n: /metrics scrape failed" >&2
  kill_list "$cm"
  wait "$cm" 2>/dev/null || true

  python3 - "$w" "$n" "$DUR_MS" "$cpu0" "$cpu1" "$t0" "$t1" "$rss" "$load" "$CALL" <<'PY'
import glob, json, math, os, re, sys, wave
w, n, dur_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cpu0, cpu1, t0, t1 = map(float, sys.argv[4:8])
rss_kib, load, call = int(sys.argv[8] or 0), float(sys.argv[9]), sys.argv[10]

def samples(text):
    """Prometheus text exposition -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out

def pick(s, name, **labels):
    want = set(labels.items())
    return sum(v for (k, l), v in s.items() if k == name and want <= l)

def quantile(q, buckets):
    """PromQL histogram_quantile over [(le, cumulative count)]."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return f">{prev_le:g}"
            return round(prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12), 3)
        prev_le, prev_c = le, c
    return None

try:
    s = samples(open(os.path.join(w, "metrics.txt")).read())
except OSError:
    s = {}
uac = open(os.path.join(w, "uac.out"), errors="replace").read()
ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", uac)
calls_ok = int(ok[-1]) if ok else 0
rec_s = 0.0
wavs = sorted(glob.glob(os.path.join(w, "rec", "*.wav")))
for f in wavs:
    with wave.open(f) as x:
        rec_s += x.getnframes() / x.getframerate()
recs = sum(os.path.exists(f[:-4] + ".json") for f in wavs)
# The sidecars' fail_closed spans: the same lateness, per recording (a cross-check).
side_late_ms = []
for f in wavs:
    try:
        spans = json.load(open(f[:-4] + ".json")).get("spans", [])
    except (OSError, ValueError):
        continue
    side_late_ms.append(sum(x["end_ms"] - x["start_ms"] for x in spans if x.get("reason") == "fail_closed"))
buckets = [(float(dict(l)["le"]), v) for (k, l), v in s.items()
           if k == "callmask_mask_decision_latency_seconds_bucket" and ("reason", "spoken_id") in l]
seg = {o: pick(s, "callmask_recognizer_segments_total", outcome=o)
       for o in ("ok", "late", "failed", "dropped")}
late_s = pick(s, "callmask_fail_closed_muted_seconds_total")
audio_s = calls_ok * dur_ms / 1000
r = dict(
    n=n, call=f"call_{call}", call_s=dur_ms / 1000, calls_ok=calls_ok,
    calls_completed_callmask=int(pick(s, "callmask_calls_total", outcome="completed")),
    recordings=recs, recorded_s=round(rec_s, 1),
    fail_closed_s=round(late_s, 2),
    fail_closed_pct=round(100 * late_s / rec_s, 2) if rec_s else None,
    fail_closed_s_sidecars=round(sum(side_late_ms) / 1000, 2),
    fail_closed_s_worst_recording=round(max(side_late_ms, default=0) / 1000, 2),
    segments=seg,
    spoken_id_verdicts=int(pick(s, "callmask_mask_decision_latency_seconds_count", reason="spoken_id")),
    spoken_id_latency_p50_s=quantile(0.5, buckets), spoken_id_latency_p95_s=quantile(0.95, buckets),
    spoken_id_latency_mean_s=round(pick(s, "callmask_mask_decision_latency_seconds_sum", reason="spoken_id")
                                   / max(pick(s, "callmask_mask_decision_latency_seconds_count", reason="spoken_id"), 1), 2),
    recorder_errors=int(pick(s, "callmask_recorder_errors_total")),
    recognizer_audio_s=round(pick(s, "callmask_recognizer_audio_seconds_total"), 1),
    recognizer_busy_s=round(pick(s, "callmask_recognizer_busy_seconds_total"), 1),
    cpu_s=round(cpu1 - cpu0, 2), wall_s=round(t1 - t0, 1),
    cpu_per_audio_s=round((cpu1 - cpu0) / audio_s, 4) if audio_s else None,
    peak_rss_mib=round(rss_kib / 1024, 1), load1_before=load,
)
json.dump(r, open(os.path.join(w, "result.json"), "w"), indent=1)
PY
  [ "$rc" = 0 ] && [ "$recs" -ge "$n" ]
}

{
  echo "speech-load: call_$CALL ($((DUR_MS / 1000)) s) x N through one fresh callmask per N," \
    "speech on, default workers and look-ahead${CALLMASK_SET:+, plus $CALLMASK_SET}"
  echo "speech-load: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u +%FT%TZ)"
  echo
  echo "| N | calls ok | recordings | late-muted s (% of recorded) | segments late+dropped / all | spoken_id verdict s p50 / p95 / mean (count) | CPU-s per audio-s | peak RSS MiB | load (1 min) |"
  echo "|---|---|---|---|---|---|---|---|---|"
} | tee "$OUT/table.md"
status=0
for n in $NS; do
  run_n "$n" || status=1
  if [ -e "$OUT/n$n/result.json" ]; then
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' <"$OUT/n$n/result.json" \
      >>"$OUT/results.jsonl"
    python3 - "$OUT/n$n/result.json" <<'PY' | tee -a "$OUT/table.md"
import json, sys
r = json.load(open(sys.argv[1]))
g = r["segments"]
pct = "n/a" if r["fail_closed_pct"] is None else f"{r['fail_closed_pct']} %"
p50, p95 = (r[k] if r[k] is not None else "n/a" for k in ("spoken_id_latency_p50_s", "spoken_id_latency_p95_s"))
mean = r["spoken_id_latency_mean_s"] if r["spoken_id_verdicts"] else "n/a"
cpu = "n/a" if r["cpu_per_audio_s"] is None else f"{r['cpu_per_audio_s']:.3f}"
print(f"| {r['n']} | {r['calls_ok']}/{r['n']} | {r['recordings']} | {r['fail_closed_s']} ({pct}) | "
      f"{int(g['late'] + g['dropped'])} / {int(sum(g.values()))} | {p50} / {p95} / {mean} ({r['spoken_id_verdicts']}) | "
      f"{cpu} | {r['peak_rss_mib']} | {r['load1_before']} |")
PY
  else
    echo "| $n | (no result, see $OUT/n$n) |" | tee -a "$OUT/table.md"
  fi
done
echo "speech-load: per-N logs, recordings and metrics in $OUT/nN/; JSON lines in $OUT/results.jsonl"
exit $status
