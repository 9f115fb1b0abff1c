#!/usr/bin/env bash
# PHI leak check: calls whose SIP carries known phone numbers (caller +15551234567, callee
# +15559876543 in Request-URI, From, To, Contact, P-Asserted-Identity) and known DTMF keys
# (SIP INFO application/dtmf-relay Signal=7 and application/dtmf 3; in-band tones 7, 3 and an
# RFC 4733 event 9 in the RTP) run through callmask at log.level=debug with JSON logs. Then
# callmask's stdout/stderr, every file it wrote (recordings, JSON sidecars), /api/calls and
# /metrics are searched for the numbers and the keys; none may appear.
# One more call offers SDES-SRTP (issue 14): neither its key nor callmask's own answer key may
# appear either.
# Positive controls make the check meaningful: the numbers must be on the wire (sipp trace),
# callmask must have logged about the calls, and counted DTMF from INFO (and RTP).
#
# Needs (installs nothing): sip-tester curl python3. Env: CALLMASK_BIN (default: cargo build).
# Prints `phi-log-check: N passed, M failed` last; exit status 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
finish() {
  echo "phi-log-check: $PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
  exit $?
}

for tool in sipp curl python3; do
  command -v "$tool" >/dev/null || { bad "$tool not installed"; finish; }
done
if [ -z "${CALLMASK_BIN:-}" ]; then
  cargo build -q -p callmask || { bad "cargo build -p callmask"; finish; }
  CALLMASK_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/callmask
fi
[ -x "$CALLMASK_BIN" ] || { bad "no callmask binary at $CALLMASK_BIN"; finish; }

CALLS=${CALLS:-2}
WORK=$(mktemp -d /tmp/callmask-phi.XXXXXX)
OUT=$WORK/callmask   # everything callmask writes: its cwd, logs, recordings
SIPP=$WORK/sipp      # sipp's own files (they contain the PHI on purpose)
mkdir -p "$OUT/rec" "$OUT/cwd" "$SIPP"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ "$FAIL" -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "files kept in $WORK"; fi
}
trap cleanup EXIT
trap 'bad "interrupted"; exit 130' INT TERM

read -r P_PBX P_AG P_PBXPEER P_AGPEER P_HTTP P_UACM P_UASM MEDIA < <(python3 - <<'EOF'
import socket, random
def free():
    while True:
        p = random.randrange(20000, 39000, 2)
        try:
            for port in (p, p + 1):
                for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, t); s.bind(("127.0.0.1", port)); s.close()
            return p
        except OSError:
            pass
ps = []
while len(ps) < 7:
    p = free()
    if p not in ps:
        ps.append(p)
print(*ps, random.randrange(40000, 59000, 100))
EOF
)

# RTP for the caller leg: PCMU with in-band 7 and 3, then an RFC 4733 event 9 (PT 101).
python3 - "$SIPP/phi_dtmf.pcap" <<'EOF'
import math, struct, sys
def ulaw(x):  # G.711 mu-law
    v = int(x * 32767)
    sign = 0x80 if v < 0 else 0
    v = min(abs(v), 32635) + 0x84
    exp = v.bit_length() - 8
    mant = (v >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF
TONES = {"7": (852, 1209), "3": (697, 1477)}
def frames(digit, ms):
    n = 8 * ms
    if digit is None:
        return [bytes([0xFF]) * 160 for _ in range(ms // 20)]
    lo, hi = TONES[digit]
    pcm = [0.3 * math.sin(2 * math.pi * lo * i / 8000) + 0.3 * math.sin(2 * math.pi * hi * i / 8000) for i in range(n)]
    b = bytes(ulaw(v) for v in pcm)
    return [b[i:i + 160] for i in range(0, n, 160)]
pkts = []  # (pt, marker, ts, payload)
ts = 0
def audio(fs):
    global ts
    for f in fs:
        pkts.append((0, 0, ts, f)); ts += 160
audio(frames(None, 600)); audio(frames("7", 120)); audio(frames(None, 200))
audio(frames("3", 120)); audio(frames(None, 200))
ev_ts = ts
for k in range(1, 7):  # event 9, volume 10, 120 ms, then 2 extra end packets
    pkts.append((101, 1 if k == 1 else 0, ev_ts, struct.pack("!BBH", 9, 10, 160 * k))); ts += 160
for _ in range(2):
    pkts.append((101, 0, ev_ts, struct.pack("!BBH", 9, 0x80 | 10, 960)))
audio(frames(None, 400))
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
t = 0.0
for seq, (pt, m, ts_, pay) in enumerate(pkts):
    rtp = struct.pack("!BBHII", 0x80, (m << 7) | pt, seq, ts_, 0x1234ABCD) + pay
    udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
    eth = b"\x00" * 12 + b"\x08\x00" + ip
    out.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(eth), len(eth)) + eth)
    t += 0.02
EOF
cp scripts/phi_uac.xml "$SIPP/"

# The agent side: answers, accepts the two INFOs, answers the BYE.
cat >"$SIPP/phi_uas.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callmask phi uas">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Length: 0
  ]]></send>
  <send retrans="500"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 2 2 IN IP4 [media_ip]
      s=agent
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendrecv
  ]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="INFO"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
  ]]></send>
  <recv request="INFO"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
  ]]></send>
  <recv request="BYE"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
  ]]></send>
  <timewait milliseconds="500"/>
</scenario>
EOF

# callmask: debug level, JSON logs, numbers hashed (the default), a WAV recorder.
# The HTTP API is closed without a token (issue 13): give one through the environment.
API_TOKEN="phi-check-$RANDOM$RANDOM$RANDOM"
# An `rtp` recorder over SRTP (issue 14) with a random key in a file outside $OUT (the file
# itself is where the key belongs); its key is searched for like the calls' SDES keys. The
# fork goes to a port nobody listens on: what matters is that callmask loaded and used it.
REC_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(30)).decode())')
printf 'AES_CM_128_HMAC_SHA1_80 inline:%s\n' "$REC_KEY" >"$WORK/recorder-srtp.key"
chmod 0600 "$WORK/recorder-srtp.key"
P_RTPREC=$((MEDIA + 200))
(cd "$OUT/cwd" && CALLMASK_HTTP_TOKEN="$API_TOKEN" exec "$CALLMASK_BIN" run \
  --set "pbx.listen=\"127.0.0.1:$P_PBX\"" --set "agents.listen=\"127.0.0.1:$P_AG\"" \
  --set "pbx.peer=\"127.0.0.1:$P_PBXPEER\"" --set "agents.peer=\"127.0.0.1:$P_AGPEER\"" \
  --set "http.listen=\"127.0.0.1:$P_HTTP\"" --set "media.ports=\"$MEDIA-$((MEDIA + 99))\"" \
  --set "recorder=[{kind=\"wav\",dir=\"$OUT/rec\"},{kind=\"rtp\",target=\"127.0.0.1:$P_RTPREC\",srtp_key_file=\"$WORK/recorder-srtp.key\"}]" \
  --set masking.lookahead_ms=80 --set masking.speech=false --set 'agents.srtp="optional"' \
  --set 'log.level="debug"' --set 'log.format="json"' \
  >"$OUT/stdout.log" 2>"$OUT/stderr.log") &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do
  curl -sf -o /dev/null "http://127.0.0.1:$P_HTTP/healthz" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$P_HTTP/healthz" && ok "callmask up (debug, JSON logs)" \
  || { bad "callmask did not start: $(tail -3 "$OUT/stderr.log")"; finish; }

(cd "$SIPP" && exec sipp -sf phi_uas.xml -i 127.0.0.1 -p "$P_AGPEER" -mi 127.0.0.1 -mp "$P_UASM" \
  -nostdin -trace_msg -message_file uas_msg.log >uas.out 2>&1) &
PIDS+=($!)
sleep 0.5
# Poll /api/calls while the calls are up.
(for ((i = 0; i < 40; i++)); do
  curl -s -H "Authorization: Bearer $API_TOKEN" "http://127.0.0.1:$P_HTTP/api/calls" >>"$OUT/api_calls.json"; echo >>"$OUT/api_calls.json"
  sleep 0.2
done) &
POLL=$!
PIDS+=($POLL)
if (cd "$SIPP" && timeout 40 sipp -sf phi_uac.xml -i 127.0.0.1 -p "$P_PBXPEER" -mi 127.0.0.1 \
  -mp "$P_UACM" "127.0.0.1:$P_PBX" -m "$CALLS" -l 1 -d 2500 -nostdin -trace_msg \
  -message_file uac_msg.log >uac.out 2>&1); then
  ok "sipp: $CALLS calls with numbers, INFO keys and DTMF RTP completed"
else
  bad "sipp UAC failed: $(grep -iE 'error|unexpected|aborted' "$SIPP"/*.out "$SIPP"/*errors* 2>/dev/null | tail -3)"
fi
wait "$POLL" 2>/dev/null
# One more call offering SDES-SRTP with a known key (issue 14): callmask terminates it and
# answers with a key of its own (plain RTP toward the agent: agents.srtp = "optional"). Neither
# key may appear anywhere callmask writes.
SDES_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(30)).decode())')
python3 - "$SIPP/phi_uac.xml" "$SIPP/phi_uac_srtp.xml" "$SDES_KEY" <<'EOF'
import sys
s = open(sys.argv[1]).read()
assert "RTP/AVP 0 101" in s and "a=sendrecv" in s
s = s.replace("RTP/AVP 0 101", "RTP/SAVP 0 101").replace(
    "a=sendrecv", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + sys.argv[3] + "\n      a=sendrecv", 1)
open(sys.argv[2], "w").write(s)
EOF
if (cd "$SIPP" && timeout 40 sipp -sf phi_uac_srtp.xml -i 127.0.0.1 -p "$P_PBXPEER" -mi 127.0.0.1 \
  -mp "$P_UACM" "127.0.0.1:$P_PBX" -m 1 -l 1 -d 1500 -nostdin -trace_msg \
  -message_file uac_srtp_msg.log >uac_srtp.out 2>&1); then
  ok "sipp: 1 call offering SDES-SRTP completed"
else
  bad "sipp SRTP UAC failed: $(tail -3 "$SIPP/uac_srtp.out")"
fi
# callmask's own key, from its answer to the SRTP offer (in sipp's trace of what it received).
CM_KEY=$(grep -aoE 'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:[A-Za-z0-9+/=]+' "$SIPP/uac_srtp_msg.log" \
  | sed 's/.*inline://' | grep -vxF "$SDES_KEY" | head -1)
# Malformed requests carrying the numbers and an INFO body: callmask refuses them and logs
# that at debug level (this also proves debug lines are being written).
python3 - "$P_PBX" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for m in (b"INVITE sip:+15559876543@127.0.0.1 SIP/2.0\r\nFrom: <sip:+15551234567@127.0.0.1>\r\n\r\n",
          b"INFO sip:+15559876543@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKphi\r\n"
          b"From: <sip:+15551234567@127.0.0.1>;tag=1\r\nTo: <sip:+15559876543@127.0.0.1>\r\n"
          b"Call-ID: phi-5551234567\r\nCSeq: 1 INFO\r\nMax-Forwards: 0\r\n"
          b"Content-Type: application/dtmf-relay\r\nContent-Length: 22\r\n\r\nSignal=7\r\nDuration=160\r\n"):
    s.sendto(m, ("127.0.0.1", int(sys.argv[1])))
EOF
sleep 0.5
curl -s "http://127.0.0.1:$P_HTTP/metrics" >"$OUT/metrics.txt"
# Stop callmask so that it flushes logs and closes recordings before the search.
kill "${PIDS[0]}" 2>/dev/null
wait "${PIDS[0]}" 2>/dev/null

# Positive controls.
grep -q '5551234567' "$SIPP/uac_msg.log" && grep -q 'Signal=7' "$SIPP/uas_msg.log" \
  && ok "control: numbers and INFO keys were on the wire through callmask (sipp traces)" \
  || bad "control: PHI not seen on the wire; the check would prove nothing"
nlines=$(cat "$OUT/stdout.log" "$OUT/stderr.log" | grep -c '^{')
if [ "$nlines" -ge 5 ] && cat "$OUT/stdout.log" "$OUT/stderr.log" | grep -qiE 'INVITE|call'; then
  ok "control: callmask wrote $nlines JSON log lines about the calls"
else
  bad "control: only $nlines JSON log lines, none about calls"
fi
metric() { awk -v k="$1" '$1 == k { print $2 }' "$OUT/metrics.txt"; }
info=$(metric 'callmask_dtmf_detected_total{source="info"}')
inband=$(metric 'callmask_dtmf_detected_total{source="inband"}')
rfc=$(metric 'callmask_dtmf_detected_total{source="rfc4733"}')
[ "${info:-0}" -ge $((2 * CALLS)) ] 2>/dev/null && ok "control: callmask saw the INFO keys (dtmf_detected{info}=$info)" \
  || bad "control: dtmf_detected{info}=${info:-?}, want >= $((2 * CALLS))"
[ "${inband:-0}" -ge "$CALLS" ] 2>/dev/null && [ "${rfc:-0}" -ge "$CALLS" ] 2>/dev/null \
  && ok "control: callmask detected the RTP keys (dtmf_detected{inband}=$inband, {rfc4733}=$rfc)" \
  || bad "control: RTP DTMF not detected (inband=${inband:-?} rfc4733=${rfc:-?}, want >= $CALLS each)"
rtp_bytes=$(metric 'callmask_recorder_bytes_total{sink="rtp"}')
[ "${rtp_bytes:-0}" -gt 0 ] 2>/dev/null \
  && ok "control: the rtp recorder sent SRTP under the key file (recorder_bytes{rtp}=$rtp_bytes)" \
  || bad "control: recorder_bytes{rtp}=${rtp_bytes:-?}: the SRTP rtp recorder sent nothing"
grep -qF "$SDES_KEY" "$SIPP/uac_srtp_msg.log" && [ -n "$CM_KEY" ] \
  && ok "control: the offered SDES key and callmask's own answer key were on the wire" \
  || bad "control: SDES keys not seen on the wire (callmask's answer key: ${CM_KEY:-none})"
# The SRTP call's RTP is the plain pcap: callmask, terminating SRTP on that leg, must drop it.
srtp_auth=$(metric 'callmask_srtp_packets_dropped_total{reason="auth",side="pbx"}')
[ "${srtp_auth:-0}" -gt 0 ] 2>/dev/null \
  && ok "control: callmask terminated SRTP on the PBX leg (srtp_packets_dropped{auth}=$srtp_auth)" \
  || bad "control: srtp_packets_dropped{auth,pbx}=${srtp_auth:-?}: SRTP not terminated?"
grep -q '"level":"DEBUG"' "$OUT/stdout.log" "$OUT/stderr.log" \
  && ok "control: debug lines present (refused malformed requests are logged)" \
  || bad "control: no DEBUG line in the logs; log.level=debug not in effect?"
nrec=$(find "$OUT/rec" -type f | wc -l)
[ "$nrec" -ge $((2 * CALLS)) ] && ok "control: $nrec recording files to search" \
  || bad "control: only $nrec files in the recording folder"
grep -qi 'h:[0-9a-f]\{12\}' "$OUT/stdout.log" "$OUT/stderr.log" "$OUT"/rec/*.json 2>/dev/null \
  && echo "     (hashed numbers h:… present in logs/sidecars)"

# The search: every file callmask wrote or served (logs, recordings, sidecars, API, metrics).
mapfile -t FILES < <(find "$OUT" -type f)
search() { # DESCRIPTION REGEX (extended, case-insensitive)
  local hits
  hits=$(grep -aiEn -- "$2" "${FILES[@]}" 2>/dev/null | cut -c1-300 | head -5)
  if [ -z "$hits" ]; then ok "no $1 in ${#FILES[@]} files"; else bad "$1 found:"$'\n'"$hits"; fi
}
search "caller number" '5551234567|555[^0-9a-z]?123[^0-9a-z]?4567'
search "callee number" '5559876543|555[^0-9a-z]?987[^0-9a-z]?6543'
search "number prefix in a URI" 'sip:\+1555'
search "dtmf-relay body" 'Signal *= *[0-9*#A-D]|Duration *= *160'
# A digit as the value of a DTMF-ish field: "digit":"7", key=3, signal: 9, event=…
search "DTMF key as a field value" \
  '"?(digit|digits|dtmf_digit|key|keys|signal|tone|event_code|dtmf)"? *[:=] *"?[0-9*#A-D]([^0-9a-z]|$)'
search "raw SIP INFO body or SDP from the call" 'application/dtmf[^-]|m=audio [0-9]+ RTP'
search_key() { # DESCRIPTION KEY (fixed string)
  local hits
  [ -n "$2" ] || { bad "$1: no key to search for"; return; }
  hits=$(grep -aFn -- "$2" "${FILES[@]}" 2>/dev/null | cut -c1-120 | head -3)
  if [ -z "$hits" ]; then ok "no $1 in ${#FILES[@]} files"; else bad "$1 found:"$'\n'"$hits"; fi
}
search_key "SDES key offered by the PBX" "$SDES_KEY"
search_key "SDES key of callmask's own answer" "$CM_KEY"
search "SDES attribute" 'a=crypto|inline:'
search_key "SRTP key of the rtp recorder (srtp_key_file)" "$REC_KEY"

finish
