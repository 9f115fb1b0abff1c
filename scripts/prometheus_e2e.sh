#!/usr/bin/env bash
# A real Prometheus scrapes a running callmask; its HTTP API must return the call counters
# after three sipp calls, the alert rules must load and evaluate cleanly, and every Grafana
# dashboard expression must be valid PromQL that Prometheus accepts.
#
# Needs (installs nothing; scripts/setup.sh or CI provides them):
#   apt-get install -y --no-install-recommends prometheus sip-tester curl python3
# Env: CALLMASK_BIN (default: cargo build -p callmask, then $CARGO_TARGET_DIR/debug/callmask).
# Prints `prometheus-e2e: N passed, M failed` last; exit status 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
finish() {
  echo "prometheus-e2e: $PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
  exit $?
}

for tool in prometheus promtool sipp curl python3; do
  command -v "$tool" >/dev/null || { bad "$tool not installed (apt-get install prometheus sip-tester curl python3)"; finish; }
done

if [ -z "${CALLMASK_BIN:-}" ]; then
  TGT=${CARGO_TARGET_DIR:-$ROOT/target}
  cargo build -q -p callmask || { bad "cargo build -p callmask"; finish; }
  CALLMASK_BIN=$TGT/debug/callmask
fi
[ -x "$CALLMASK_BIN" ] || { bad "no callmask binary at $CALLMASK_BIN"; finish; }

WORK=$(mktemp -d /tmp/callmask-prom-e2e.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ "$FAIL" -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
}
trap cleanup EXIT
trap 'bad "interrupted"; exit 130' INT TERM

# Free loopback ports: UDP+TCP for SIP, TCP for HTTP, and a media range.
read -r P_PBX P_AG P_PBXPEER P_AGPEER P_HTTP P_PROM MEDIA < <(python3 - <<'EOF'
import socket, random
def free(kind_both=True):
    while True:
        p = random.randint(20000, 59000)
        try:
            for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, t); s.bind(("127.0.0.1", p)); s.close()
            return p
        except OSError:
            pass
# The media range first, then the single ports outside it (callmask refuses a media range
# that holds one of its SIP ports).
m = random.randrange(40000, 59000, 100)
ps = set()
while len(ps) < 6:
    p = free()
    if not m <= p <= m + 99:
        ps.add(p)
print(*ps, m)
EOF
)
MEDIA_RANGE="$MEDIA-$((MEDIA + 99))"

wait_http() { # URL SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}
q() { # PromQL -> JSON result of /api/v1/query
  curl -sG "http://127.0.0.1:$P_PROM/api/v1/query" --data-urlencode "query=$1"
}
qval() { # PromQL -> first sample value, or "none"
  q "$1" | python3 -c 'import json,sys
r=json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "none")' 2>/dev/null || echo none
}

# 1. Static checks of the shipped files.
if promtool check rules deploy/prometheus/alerts.yml >"$WORK/promtool-rules.log" 2>&1; then
  ok "promtool check rules deploy/prometheus/alerts.yml ($(grep -o '[0-9]* rules found' "$WORK/promtool-rules.log"))"
else
  bad "promtool check rules: $(cat "$WORK/promtool-rules.log")"
fi
if promtool check config deploy/prometheus/prometheus.yml >"$WORK/promtool-config.log" 2>&1; then
  ok "promtool check config deploy/prometheus/prometheus.yml"
else
  bad "promtool check config: $(cat "$WORK/promtool-config.log")"
fi

# 2. The alert rules fire on synthetic series (promtool unit test).
# promtool compares annotations too: test a copy without them (labels and firing only).
python3 - deploy/prometheus/alerts.yml >"$WORK/alerts.yml" <<'EOF'
import sys
skip = None
for line in open(sys.argv[1]):
    ind = len(line) - len(line.lstrip())
    if skip is not None and (not line.strip() or ind > skip):
        continue
    skip = None
    if line.strip() == "annotations:":
        skip = ind
        continue
    sys.stdout.write(line)
EOF
cat >"$WORK/alerts_test.yml" <<'EOF'
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'callmask_fail_closed_muted_seconds_total{instance="a",job="callmask"}'
        values: '0 0 0.02 0.02 0.02'
      - series: 'callmask_media_ports_in_use{instance="a",job="callmask"}'
        values: '95x5'
      - series: 'callmask_media_ports_free{instance="a",job="callmask"}'
        values: '5x5'
      - series: 'callmask_siprec_failovers_total{instance="a",job="callmask"}'
        values: '0 1 1 1 1'
      - series: 'callmask_recorder_queue_dropped_frames_total{instance="a",job="callmask",sink="wav"}'
        values: '0 0 10 10 10'
      - series: 'up{instance="a",job="callmask"}'
        values: '0x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: CallmaskFailClosedAudio
        exp_alerts:
          - exp_labels: {severity: warning, instance: a, job: callmask}
      - eval_time: 3m
        alertname: CallmaskMediaPortsNearExhaustion
        exp_alerts:
          - exp_labels: {severity: warning, instance: a, job: callmask}
      - eval_time: 3m
        alertname: CallmaskSiprecFailover
        exp_alerts:
          - exp_labels: {severity: warning, instance: a, job: callmask}
      - eval_time: 3m
        alertname: CallmaskRecorderQueueDrops
        exp_alerts:
          - exp_labels: {severity: warning, instance: a, job: callmask, sink: wav}
      - eval_time: 3m
        alertname: CallmaskDown
        exp_alerts:
          - exp_labels: {severity: critical, instance: a, job: callmask}
      - eval_time: 3m
        alertname: CallmaskMediaPortsExhausted
        exp_alerts: []
EOF
if (cd "$WORK" && promtool test rules alerts_test.yml) >"$WORK/promtool-test.log" 2>&1; then
  ok "promtool test rules: alerts fire on synthetic fail-closed, port, SIPREC, queue-drop and down series"
else
  bad "promtool test rules: $(tail -20 "$WORK/promtool-test.log")"
fi

# 3. callmask in trunk mode: sipp UAC (PBX) -> P_PBX, callmask -> sipp UAS (agent) on P_AGPEER.
mkdir -p "$WORK/rec"
"$CALLMASK_BIN" run \
  --set "pbx.listen=\"127.0.0.1:$P_PBX\"" --set "agents.listen=\"127.0.0.1:$P_AG\"" \
  --set "pbx.peer=\"127.0.0.1:$P_PBXPEER\"" --set "agents.peer=\"127.0.0.1:$P_AGPEER\"" \
  --set "http.listen=\"127.0.0.1:$P_HTTP\"" --set "media.ports=\"$MEDIA_RANGE\"" \
  --set "recorder=[{kind=\"wav\",dir=\"$WORK/rec\"}]" \
  --set masking.lookahead_ms=80 --set masking.speech=false \
  >"$WORK/callmask.out" 2>"$WORK/callmask.err" &
PIDS+=($!)
if wait_http "http://127.0.0.1:$P_HTTP/metrics" 10; then
  ok "callmask serves /metrics on 127.0.0.1:$P_HTTP"
else
  bad "callmask did not start: $(tail -5 "$WORK/callmask.err")"
  finish
fi

# 4. Prometheus scraping it every second, with the shipped alert rules loaded.
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: callmask
    static_configs:
      - targets: ["127.0.0.1:$P_HTTP"]
EOF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$P_PROM" --log.level=warn \
  >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
if wait_http "http://127.0.0.1:$P_PROM/-/ready" 20; then
  ok "prometheus ready on 127.0.0.1:$P_PROM"
else
  bad "prometheus did not start: $(tail -5 "$WORK/prometheus.log")"
  finish
fi

# Wait for the first successful scrape (up == 1).
for ((i = 0; i < 100; i++)); do
  [ "$(qval 'up{job="callmask"}')" = "1" ] && break
  sleep 0.2
done
if [ "$(qval 'up{job="callmask"}')" = "1" ]; then ok "up{job=\"callmask\"} == 1"; else bad "target never up"; fi

# 5. Three calls through callmask.
sipp -sn uas -i 127.0.0.1 -p "$P_AGPEER" -nostdin >"$WORK/uas.log" 2>&1 &
PIDS+=($!)
sleep 0.5
if timeout 30 sipp -sn uac -i 127.0.0.1 -p "$P_PBXPEER" "127.0.0.1:$P_PBX" \
  -m 3 -r 5 -d 300 -nostdin >"$WORK/uac.log" 2>&1; then
  ok "sipp UAC: 3 calls succeeded"
else
  bad "sipp UAC failed (rc $?): $(tail -5 "$WORK/uac.log")"
fi

# 6. Prometheus' API returns the counters (after the next scrape).
want_completed=3
got=none
for ((i = 0; i < 50; i++)); do
  got=$(qval 'sum(callmask_calls_total{job="callmask",outcome="completed"})')
  [ "$got" = "$want_completed" ] && break
  sleep 0.2
done
if [ "$got" = "$want_completed" ]; then
  ok "Prometheus API: callmask_calls_total{outcome=\"completed\"} = 3"
else
  bad "Prometheus API: completed calls = $got, want 3 ($(q 'callmask_calls_total'))"
fi
got=$(qval 'sum(callmask_calls_total{job="callmask",outcome!="completed"})')
[ "$got" = "0" ] && ok "no call ended otherwise" || bad "other call outcomes = $got"
got=$(qval 'callmask_sip_requests_total{job="callmask",side="pbx",method="INVITE"}')
[ "$got" = "3" ] && ok "callmask_sip_requests_total{side=\"pbx\",method=\"INVITE\"} = 3" \
  || bad "INVITEs from the PBX side = $got, want 3"
got=$(qval 'callmask_recorder_sessions_total{job="callmask",sink="wav"}')
[ "$got" = "3" ] && ok "callmask_recorder_sessions_total{sink=\"wav\"} = 3" \
  || bad "WAV recorder sessions = $got, want 3"
got=$(qval 'count(callmask_build_info{job="callmask"})')
[ "$got" = "1" ] && ok "callmask_build_info scraped (the dashboard's \$instance source)" \
  || bad "callmask_build_info series = $got"

# 7. The shipped rules load and evaluate without error against real data; none fires.
sleep 1.5
rules=$(curl -s "http://127.0.0.1:$P_PROM/api/v1/rules")
verdict=$(python3 -c 'import json,sys
d=json.loads(sys.argv[1])["data"]["groups"]
rs=[r for g in d for r in g["rules"]]
bad=[r["name"]+": "+str(r.get("lastError")) for r in rs if r.get("health")!="ok"]
firing=[r["name"] for r in rs if r.get("state") not in (None,"inactive")]
print(len(rs), "|", "; ".join(bad), "|", ", ".join(firing))' "$rules" 2>&1)
IFS='|' read -r nrules errs firing <<<"$verdict"
nrules=${nrules// /}; errs=${errs# }; errs=${errs% }; firing=${firing# }; firing=${firing% }
if [ "${nrules:-0}" -ge 7 ] && [ -z "$errs" ]; then
  ok "Prometheus loaded $nrules alert rules, all evaluate with health ok"
else
  bad "alert rules: n=$nrules errors: $errs ($verdict)"
fi
[ -z "$firing" ] && ok "no alert pending or firing after clean calls" || bad "alerts active: $firing"

# 8. Every dashboard expression is valid PromQL and returns data from this callmask.
dash_report=$(python3 - "$ROOT/deploy/grafana/callmask.json" "$P_PROM" <<'EOF'
import json, sys, urllib.parse, urllib.request
dash = json.load(open(sys.argv[1]))
port = sys.argv[2]
def walk(ps):
    for p in ps:
        for t in p.get("targets", []):
            yield p.get("title", "?"), t["expr"]
        yield from walk(p.get("panels", []))
bad, empty, n = [], [], 0
for title, expr in walk(dash["panels"]):
    n += 1
    e = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": e})
    try:
        r = json.load(urllib.request.urlopen(url, timeout=5))
    except Exception as ex:  # 400 on a parse error
        body = getattr(ex, "read", lambda: b"")().decode(errors="replace")
        bad.append(f"{title}: {e}: {body or ex}")
        continue
    if r.get("status") != "success":
        bad.append(f"{title}: {e}: {r}")
    elif not r["data"]["result"]:
        empty.append(title)
print(n)
print(" || ".join(bad))
print(", ".join(sorted(set(empty))))
EOF
)
n_exprs=$(sed -n 1p <<<"$dash_report")
dash_bad=$(sed -n 2p <<<"$dash_report")
dash_empty=$(sed -n 3p <<<"$dash_report")
if [ -n "$n_exprs" ] && [ "$n_exprs" -gt 0 ] && [ -z "$dash_bad" ]; then
  ok "all $n_exprs dashboard expressions are valid PromQL for Prometheus"
else
  bad "dashboard expressions rejected: ${dash_bad:-$dash_report}"
fi
# Series exist at 0 from start-up, so a panel without data means a metric or label typo
# (histogram quantiles without observations are NaN but still return a series).
if [ -z "$dash_empty" ]; then
  ok "every dashboard query returns series from a live callmask"
else
  bad "dashboard panels without data: $dash_empty"
fi

finish
