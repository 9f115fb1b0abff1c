#!/usr/bin/env bash
# The Debian package, installed and run as an admin would (issue 17). Needs root: it installs
# the package on this machine and purges it again at the end.
#
#   sudo scripts/deb_e2e.sh
#
# 1. scripts/build_deb.sh builds the .deb; its contents are checked: every file root-owned,
#    nothing world-writable, no path under /usr/local or /var/tmp, the binary's RUNPATH is
#    /usr/lib/callmask only, the model and the unit are in it.
# 2. `dpkg -i`: the postinst made the `callmask` system user, /var/lib/callmask/recordings
#    (callmask, 0750) and /etc/callmask/callmask.toml (root:callmask, 0640); the binary
#    resolves the engine library from /usr/lib/callmask; `callmask check-config` accepts the
#    installed config; under systemd the unit is enabled.
# 3. The service as the unit runs it: the unit's ExecStart command line, as the unit's User,
#    with the installed config (plus `--set` for loopback addresses and the test's sipp peers,
#    which is what an admin edits). /readyz must turn ready (the packaged speech model loaded
#    by the packaged library). sipp plays dev call 018 (RFC 4733 keys, in-band keys over
#    noise, off-frequency pairs) PBX -> callmask -> agent; the call must leave a recording in
#    /var/lib/callmask/recordings, owned by callmask, whose caller channel spandsp decodes
#    no key from (the original: several). SIGTERM: exit 0.
# 4. `dpkg --purge`: binary, library, model, unit and /etc/callmask gone; the dev set-up's
#    own engine files (/usr/local/lib/callmask, /var/lib/callmask/models) untouched.
# Refuses to run when a callmask package is already installed (it would be purged).
#
# Env: CARGO_TARGET_DIR, CALLMASK_DEB_BIN (as build_deb.sh), CALLMASK_SHARED (default ../shared),
# PORT_BASE (default 24600; uses +0..+39), OUT (default /tmp/callmask-deb-e2e),
# CALLMASK_ALLOW_SKIP=1 (not root or no dpkg: skip instead of fail).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SHARED=${CALLMASK_SHARED:-$(cd .. && pwd)/shared}
EVAL="$SHARED/eval"
export SPANDSP_DTMF_BIN=${SPANDSP_DTMF_BIN:-/tmp/callmask-eval/spandsp_dtmf}
OUT=${OUT:-/tmp/callmask-deb-e2e}
PB=${PORT_BASE:-24600}
REC=/var/lib/callmask/recordings
pass=0 fail=0
check() { # check "what" CONDITION-RESULT(0/1)
  if [ "$2" = 0 ]; then echo "deb-e2e: ok   $1"; pass=$((pass + 1)); else echo "deb-e2e: FAIL $1"; fail=$((fail + 1)); fi
}
skip_or_fail() {
  if [ "${CALLMASK_ALLOW_SKIP:-0}" = 1 ]; then echo "deb-e2e: SKIP: $*"; exit 0; fi
  echo "deb-e2e: $* (CALLMASK_ALLOW_SKIP=1 to skip)" >&2; exit 1
}
[ "$(id -u)" = 0 ] || skip_or_fail "needs root (installs the package)"
for tool in dpkg sipp setpriv python3 curl; do command -v "$tool" >/dev/null || skip_or_fail "$tool not found"; done
[ -d "$EVAL/data/dev" ] || skip_or_fail "no dev corpus at $EVAL/data/dev (set CALLMASK_SHARED)"
if dpkg-query -W -f='${Status}' callmask 2>/dev/null | grep -q "ok installed"; then
  echo "deb-e2e: a callmask package is already installed; this test would purge it. Remove it first (dpkg --purge callmask)." >&2
  exit 1
fi
[ -x "$SPANDSP_DTMF_BIN" ] || SPANDSP_DTMF_BIN="$SPANDSP_DTMF_BIN" bash "$EVAL/tools/build.sh" >/dev/null

rm -rf "$OUT" && mkdir -p "$OUT"
DEB=$(scripts/build_deb.sh | tail -1)
echo "deb-e2e: built $DEB ($(du -h "$DEB" | cut -f1))"

# ------------------------------------------------------------------ 1. contents
dpkg-deb --contents "$DEB" >"$OUT/contents.txt"
[ -z "$(awk '$2 != "root/root"' "$OUT/contents.txt")" ] && r=0 || r=1
check "every file in the package is root:root" $r
[ -z "$(awk 'substr($1,9,1) == "w"' "$OUT/contents.txt")" ] && r=0 || r=1
check "nothing in the package is world-writable" $r
grep -Eq '\./(usr/local|var/tmp|tmp)/' "$OUT/contents.txt" && r=1 || r=0
check "no path under /usr/local, /var/tmp or /tmp" $r
for f in ./usr/bin/callmask ./usr/share/callmask/models/whisper-tiny.en/model.bin \
  ./lib/systemd/system/callmask.service ./etc/callmask/callmask.toml; do
  grep -q " $f\$" "$OUT/contents.txt" && r=0 || r=1
  check "ships $f" $r
done
grep -q ' ./usr/lib/callmask/libctranslate2-' "$OUT/contents.txt" && r=0 || r=1
check "ships the engine library in /usr/lib/callmask" $r

# ------------------------------------------------------------------ 2. install
PIDS=()
source scripts/procs.sh  # kill_list, wait_http
installed=0
rec=""
cleanup() {
  [ "${#PIDS[@]}" -gt 0 ] && kill_list "${PIDS[@]}"
  if [ -n "$rec" ]; then rm -f "$REC/$rec" "$REC/${rec%.wav}.json"; fi
  if [ "$installed" = 1 ]; then dpkg --purge callmask >"$OUT/purge.log" 2>&1 || true; fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
before=$(ls "$REC" 2>/dev/null | sort || true)
dpkg -i "$DEB" >"$OUT/install.log" 2>&1 && r=0 || r=1
installed=1
check "dpkg -i installs it (log: $OUT/install.log)" $r
[ "$r" = 0 ] || exit 1
getent passwd callmask | grep -q ':/usr/sbin/nologin$' && r=0 || r=1
check "postinst made the callmask system user (no login shell)" $r
[ "$(stat -c '%U:%G %a' "$REC")" = "callmask:callmask 750" ] && r=0 || r=1
check "$REC is callmask:callmask 0750 ($(stat -c '%U:%G %a' "$REC"))" $r
[ "$(stat -c '%U:%G %a' /etc/callmask/callmask.toml)" = "root:callmask 640" ] && r=0 || r=1
check "/etc/callmask/callmask.toml is root:callmask 0640" $r
# (outputs to files first: `grep -q` closing a pipe early fails the pipeline under pipefail)
readelf -d /usr/bin/callmask >"$OUT/readelf.txt"
ldd /usr/bin/callmask >"$OUT/ldd.txt"
grep -q 'RUNPATH.*\[/usr/lib/callmask\]' "$OUT/readelf.txt" && r=0 || r=1
check "/usr/bin/callmask RUNPATH is /usr/lib/callmask" $r
grep -q 'libctranslate2.* => /usr/lib/callmask/' "$OUT/ldd.txt" && r=0 || r=1
check "the binary loads libctranslate2 from /usr/lib/callmask" $r
grep -q 'not found' "$OUT/ldd.txt" && r=1 || r=0
check "every shared library of the binary resolves" $r
setpriv --reuid=callmask --regid=callmask --init-groups -- /usr/bin/callmask check-config \
  /etc/callmask/callmask.toml >"$OUT/check-config.log" 2>&1 && r=0 || r=1
check "callmask check-config accepts the installed config (as user callmask)" $r
if [ -d /run/systemd/system ]; then
  [ "$(systemctl is-enabled callmask.service 2>/dev/null)" = enabled ] && r=0 || r=1
  check "systemd: the unit is enabled" $r
fi

# ------------------------------------------------------------------ 3. run it as the unit does
UNIT=/lib/systemd/system/callmask.service
EXEC=$(sed -n 's/^ExecStart=//p' "$UNIT")
UNIT_USER=$(sed -n 's/^User=//p' "$UNIT")
[ "$EXEC" = "/usr/bin/callmask run --config /etc/callmask/callmask.toml" ] && r=0 || r=1
check "unit ExecStart is the installed binary with the installed config" $r
P1=$PB P2=$((PB + 1)) P3=$((PB + 2)) P4=$((PB + 3)) HTTP=$((PB + 4))
UAC_MP=$((PB + 6)) UAS_MP=$((PB + 10)) MA=$((PB + 20)) MB=$((PB + 39))
python3 "$EVAL/rtp/make_pcap.py" "$EVAL/data/dev/call_018" -o "$OUT/call.pcap" >"$OUT/make_pcap.log"
dur=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['meta']['duration_ms'])" "$EVAL/data/dev/call_018.json")
cp "$EVAL/rtp/uac_play.xml" "$EVAL/rtp/uas_answer.xml" "$OUT/"
# shellcheck disable=SC2086  # EXEC is the unit's command line, split as systemd splits it here
setpriv --reuid="$UNIT_USER" --regid="$UNIT_USER" --init-groups -- $EXEC \
  --set "pbx.listen=127.0.0.1:$P1" --set "agents.listen=127.0.0.1:$P2" \
  --set "pbx.peer=127.0.0.1:$P3" --set "agents.peer=127.0.0.1:$P4" \
  --set "http.listen=127.0.0.1:$HTTP" --set "media.ports=$MA-$MB" >"$OUT/callmask.log" 2>&1 &
cm=$!; PIDS+=("$cm")
wait_http "http://127.0.0.1:$HTTP/readyz" "$cm" 120 && r=0 || r=1
check "the service turns ready: packaged model loaded by the packaged library (/readyz)" $r
curl -s "http://127.0.0.1:$HTTP/readyz" >"$OUT/readyz.json" || true
[ "$(ps -o user= -p "$cm")" = callmask ] && r=0 || r=1
check "it runs as user callmask" $r
grep -q '/usr/lib/callmask/libctranslate2' "/proc/$cm/maps" && r=0 || r=1
check "the running process mapped /usr/lib/callmask/libctranslate2" $r

(cd "$OUT" && exec sipp -sf uas_answer.xml -i 127.0.0.1 -p "$P4" -mi 127.0.0.1 -mp "$UAS_MP" -m 1 \
  -nostdin -timeout $(((dur + 60000) / 1000))s -timeout_error -trace_err >"$OUT/uas.out" 2>&1) &
uas=$!; PIDS+=("$uas")
sleep 0.3
(cd "$OUT" && exec sipp -sf uac_play.xml -i 127.0.0.1 -p "$P3" -mi 127.0.0.1 -mp "$UAC_MP" -m 1 \
  -d "$((dur + 2500))" -nostdin -timeout $(((dur + 60000) / 1000))s -timeout_error -trace_err \
  "127.0.0.1:$P1" >"$OUT/uac.out" 2>&1) && r=0 || r=1
check "sipp call PBX -> callmask -> agent completes ($(((dur + 999) / 1000)) s of dev call 018)" $r
wait "$uas" && r=0 || r=1
check "sipp agent saw the whole call" $r
for _ in $(seq 200); do  # the recording is renamed into place once the look-ahead drained
  rec=$(comm -13 <(echo "$before") <(ls "$REC" | sort) | grep '\.wav$' | head -1 || true)
  [ -n "$rec" ] && [ -e "$REC/${rec%.wav}.json" ] && break
  sleep 0.1
done
[ -n "$rec" ] && r=0 || r=1
check "a recording appeared in $REC" $r
if [ -n "$rec" ]; then
  [ "$(stat -c %U "$REC/$rec")" = callmask ] && r=0 || r=1
  check "the recording is owned by callmask" $r
  python3 - "$EVAL" "$REC/$rec" "$EVAL/data/dev/call_018.wav" >"$OUT/digits.txt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import score
from common import read_audio
import soundfile as sf
x, fs = sf.read(sys.argv[2], dtype="int16", always_2d=True)
o = read_audio(sys.argv[3])
print(len(score.spandsp_digits(x[:, 0])), len(score.spandsp_digits(o)))
PY
  read -r got orig <"$OUT/digits.txt"
  [ "$got" = 0 ] && [ "$orig" -gt 0 ] && r=0 || r=1
  check "spandsp decodes $got keys in the recorded caller channel (the original: $orig)" $r
fi
kill -TERM "$cm" 2>/dev/null || true
wait "$cm" && r=0 || r=1
check "SIGTERM: callmask exits 0" $r
PIDS=()
if [ -n "$rec" ]; then rm -f "$REC/$rec" "$REC/${rec%.wav}.json"; fi
rec=""

# ------------------------------------------------------------------ 4. purge
dpkg --purge callmask >"$OUT/purge.log" 2>&1 && r=0 || r=1
installed=0
check "dpkg --purge removes it" $r
gone=0
for p in /usr/bin/callmask /usr/lib/callmask /usr/share/callmask "$UNIT" /etc/callmask; do
  [ -e "$p" ] && { echo "deb-e2e: still there after purge: $p"; gone=1; }
done
check "binary, library, model, unit and /etc/callmask are gone" $gone
echo "deb-e2e: $pass passed, $fail failed"
[ "$fail" = 0 ]
