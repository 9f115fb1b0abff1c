//! The ops artefacts in `deploy/` agree with the code:
//! - every `callmask_*` metric that the Grafana dashboard (`deploy/grafana/callmask.json`) or
//!   the alert rules (`deploy/prometheus/alerts.yml`) reference is exported by
//!   `Metrics::new().render()`, and the label names they match on or aggregate by exist;
//! - the dashboard has the `$datasource` / `$instance` variables and every panel query uses them;
//! - the systemd unit (`deploy/systemd/callmask.service`) carries the hardening directives.

use std::collections::{BTreeMap, BTreeSet};

use callmask::metrics::Metrics;
use serde_json::Value;

const DASHBOARD: &str = include_str!("../../deploy/grafana/callmask.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");
const UNIT: &str = include_str!("../../deploy/systemd/callmask.service");

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

#[derive(Debug)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// Families in the text exposition with their label names (`le` kept for histograms).
fn exported() -> BTreeMap<String, Family> {
    let text = Metrics::new().render();
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a type");
            out.insert(
                name.to_owned(),
                Family {
                    kind: kind.to_owned(),
                    labels: BTreeSet::new(),
                },
            );
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let series = line.split_once(' ').map_or(line, |(s, _)| s);
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = family_of(name, &out).unwrap_or_else(|| panic!("sample {name} has no TYPE"));
        let entry = out.get_mut(&family).expect("family exists");
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, _) = pair.split_once('=').expect("label pair");
            entry.labels.insert(k.to_owned());
        }
    }
    assert!(
        out.len() > 20,
        "exposition looks empty: {} families",
        out.len()
    );
    out
}

/// The family a series or metric name belongs to: itself, or for a histogram/summary its
/// `_bucket`/`_sum`/`_count` series.
fn family_of(name: &str, families: &BTreeMap<String, Family>) -> Option<String> {
    if families.contains_key(name) {
        return Some(name.to_owned());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(f) = families.get(base) {
                if f.kind == "histogram" || (f.kind == "summary" && suffix != "_bucket") {
                    return Some(base.to_owned());
                }
            }
        }
    }
    None
}

/// `callmask_[a-z0-9_]+` tokens of `expr`, each with the label names of the `{…}` matcher
/// written right after it (if any).
fn metric_refs(expr: &str) -> Vec<(String, Vec<String>)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("callmask_") {
        let start = i + pos;
        // Part of a longer identifier (e.g. `my_callmask_x`)? Skip.
        let glued = start > 0 && {
            let c = bytes[start - 1];
            c.is_ascii_alphanumeric() || c == b'_' || c == b':'
        };
        let mut end = start + "callmask_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        // `callmask_*` in prose is no metric name.
        if !glued && end > start + "callmask_".len() {
            let mut labels = Vec::new();
            if bytes.get(end) == Some(&b'{') {
                let close = expr[end..].find('}').expect("unclosed matcher") + end;
                labels = matcher_labels(&expr[end + 1..close]);
            }
            out.push((expr[start..end].to_owned(), labels));
        }
        i = end;
    }
    out
}

/// Label names in a matcher body such as `instance=~"$instance", outcome!="completed"`.
fn matcher_labels(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\n']);
        if rest.is_empty() {
            return out;
        }
        let op = rest.find(['=', '!']).expect("matcher has an operator");
        out.push(rest[..op].trim().to_owned());
        // Skip the operator and the quoted value.
        let q1 = rest.find('"').expect("quoted matcher value");
        let q2 = rest[q1 + 1..].find('"').expect("closing quote") + q1 + 1;
        rest = &rest[q2 + 1..];
    }
}

/// Label names in `by (…)` / `without (…)` / `on (…)` / `ignoring (…)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kw in [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ] {
        let mut rest = expr;
        let pat = format!("{kw} (");
        while let Some(p) = rest.find(&pat) {
            let before_ok = p == 0
                || !(rest.as_bytes()[p - 1].is_ascii_alphanumeric()
                    || rest.as_bytes()[p - 1] == b'_');
            let body_start = p + pat.len();
            let close = rest[body_start..].find(')').expect("unclosed grouping") + body_start;
            if before_ok {
                out.extend(
                    rest[body_start..close]
                        .split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            rest = &rest[close..];
        }
    }
    out
}

/// Checks one PromQL expression against the exposition; returns problems found.
fn check_expr(where_: &str, expr: &str, families: &BTreeMap<String, Family>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut known_labels: BTreeSet<String> =
        TARGET_LABELS.iter().map(|s| (*s).to_owned()).collect();
    for (name, matchers) in metric_refs(expr) {
        let Some(family) = family_of(&name, families) else {
            problems.push(format!("{where_}: `{name}` is not exported by callmask"));
            continue;
        };
        let labels = &families[&family].labels;
        known_labels.extend(labels.iter().cloned());
        for m in matchers {
            if m != "__name__" && !TARGET_LABELS.contains(&m.as_str()) && !labels.contains(&m) {
                problems.push(format!(
                    "{where_}: `{name}` has no label `{m}` (has {labels:?})"
                ));
            }
        }
    }
    for l in grouping_labels(expr) {
        if !known_labels.contains(&l) {
            problems.push(format!(
                "{where_}: grouping label `{l}` is on none of the metrics in `{expr}`"
            ));
        }
    }
    problems
}

/// Every `targets[].expr` of every panel (rows' nested panels included), with the panel title.
fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            if let Some(targets) = p["targets"].as_array() {
                for t in targets {
                    let expr = t["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("panel {title:?}: target without expr"));
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            if let Some(nested) = p["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        dash["panels"].as_array().expect("dashboard has panels"),
        &mut out,
    );
    out
}

#[test]
fn token_extraction() {
    let refs = metric_refs(
        r#"sum by (le) (rate(callmask_rtp_jitter_seconds_bucket{instance=~"$i", side="pbx"}[5m])) / my_callmask_x"#,
    );
    assert_eq!(
        refs,
        vec![(
            "callmask_rtp_jitter_seconds_bucket".to_owned(),
            vec!["instance".to_owned(), "side".to_owned()]
        )]
    );
    assert_eq!(
        grouping_labels("sum by (a, b) (x) and on (c) y"),
        ["a", "b", "c"]
    );
    let fams = exported();
    assert_eq!(
        family_of("callmask_rtp_jitter_seconds_bucket", &fams).as_deref(),
        Some("callmask_rtp_jitter_seconds")
    );
    // A counter has no `_count` series.
    assert_eq!(family_of("callmask_calls_count", &fams), None);
    // A wrong metric or label is caught.
    assert!(!check_expr("t", "rate(callmask_call_total[5m])", &fams).is_empty());
    assert!(!check_expr("t", r#"callmask_calls_total{status="x"}"#, &fams).is_empty());
    assert!(!check_expr("t", "sum by (sink) (callmask_calls_total)", &fams).is_empty());
    assert!(check_expr("t", "sum by (outcome) (callmask_calls_total)", &fams).is_empty());
}

#[test]
fn dashboard_references_only_exported_metrics() {
    let dash: Value = serde_json::from_str(DASHBOARD).expect("dashboard is valid JSON");
    let families = exported();
    let exprs = dashboard_exprs(&dash);
    assert!(exprs.len() >= 20, "only {} panel queries", exprs.len());

    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        problems.extend(check_expr(&format!("panel {title:?}"), expr, &families));
        for (name, _) in metric_refs(expr) {
            if let Some(f) = family_of(&name, &families) {
                used.insert(f);
            }
        }
        if !expr.contains("$instance") {
            problems.push(format!("panel {title:?}: `{expr}` ignores $instance"));
        }
    }
    // Variables: queries there must reference exported metrics too.
    for var in dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
    {
        let q = match &var["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o["query"].as_str().unwrap_or("").to_owned(),
            _ => String::new(),
        };
        if var["type"] == "query" {
            problems.extend(check_expr("variable", &q, &families));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );

    // The areas the dashboard must cover.
    for m in [
        "callmask_calls_active",
        "callmask_calls_total",
        "callmask_sip_requests_total",
        "callmask_sip_responses_total",
        "callmask_sip_messages_rejected_total",
        "callmask_rtp_packets_total",
        "callmask_rtp_lost_packets_total",
        "callmask_rtp_jitter_seconds",
        "callmask_media_ports_in_use",
        "callmask_media_ports_free",
        "callmask_dtmf_detected_total",
        "callmask_masked_spans_total",
        "callmask_masked_seconds_total",
        "callmask_fail_closed_muted_seconds_total",
        "callmask_recorder_sessions_active",
        "callmask_recorder_bytes_total",
        "callmask_recorder_errors_total",
        "callmask_recorder_queue_dropped_frames_total",
        "callmask_siprec_failovers_total",
        "callmask_recognizer_real_time_factor",
        "callmask_recognizer_backlog_seconds",
    ] {
        assert!(used.contains(m), "dashboard has no panel for {m}");
    }
}

#[test]
fn dashboard_structure() {
    let dash: Value = serde_json::from_str(DASHBOARD).expect("dashboard is valid JSON");
    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("$datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let inst = vars
        .iter()
        .find(|v| v["name"] == "instance")
        .expect("$instance");
    assert_eq!(inst["type"], "query");
    assert_eq!(
        inst["definition"],
        "label_values(callmask_build_info, instance)"
    );
    assert_eq!(inst["datasource"]["uid"], "${datasource}");

    let mut ids = BTreeSet::new();
    fn all(panels: &Value, out: &mut Vec<Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p.clone());
            all(&p["panels"], out);
        }
    }
    let mut panels = Vec::new();
    all(&dash["panels"], &mut panels);
    for p in &panels {
        let title = p["title"].as_str().expect("panel title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id at {title}"
        );
        let g = &p["gridPos"];
        assert!(
            g["w"].as_u64().is_some_and(|w| (1..=24).contains(&w)),
            "{title}: gridPos.w"
        );
        assert!(
            g["x"].as_u64().unwrap_or(99) + g["w"].as_u64().unwrap_or(0) <= 24,
            "{title}: x+w"
        );
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{title}: datasource"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{title}: no targets");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(
                    refs.insert(t["refId"].as_str().expect("refId")),
                    "{title}: refId"
                );
            }
        }
    }
    // The fail-closed panel is alarm-coloured.
    let fc = panels
        .iter()
        .find(|p| {
            p["type"] == "timeseries"
                && p["targets"][0]["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("callmask_fail_closed_muted_seconds_total"))
        })
        .expect("fail-closed time series panel");
    assert_eq!(fc["fieldConfig"]["defaults"]["color"]["fixedColor"], "red");
}

#[test]
fn alert_rules_reference_only_exported_metrics() {
    let families = exported();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    // `expr:` values, single-line or `|` blocks (the lines indented deeper than `expr:`).
    let lines: Vec<&str> = ALERTS.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(p) = line.find("expr:") {
            let inline = line[p + 5..].trim();
            if inline == "|" || inline == ">" || inline.is_empty() {
                let mut block = String::new();
                i += 1;
                while i < lines.len()
                    && (lines[i].trim().is_empty()
                        || lines[i].len() - lines[i].trim_start().len() > p)
                {
                    block.push_str(lines[i].trim());
                    block.push(' ');
                    i += 1;
                }
                exprs.push(block);
                continue;
            }
            exprs.push(inline.to_owned());
        }
        i += 1;
    }
    assert!(exprs.len() >= 7, "only {} alert expressions", exprs.len());
    for e in &exprs {
        problems.extend(check_expr("alert", e, &families));
    }
    // Every token anywhere in the file (annotations too) must exist.
    for (name, _) in metric_refs(ALERTS) {
        match family_of(&name, &families) {
            Some(f) => {
                used.insert(f);
            }
            None => problems.push(format!("alerts.yml: `{name}` is not exported")),
        }
    }
    assert!(
        problems.is_empty(),
        "alert problems:\n{}",
        problems.join("\n")
    );
    for m in [
        "callmask_recorder_errors_total",
        "callmask_fail_closed_muted_seconds_total",
        "callmask_siprec_failovers_total",
        "callmask_media_ports_in_use",
        "callmask_media_ports_free",
        "callmask_recorder_queue_dropped_frames_total",
    ] {
        assert!(used.contains(m), "no alert on {m}");
    }
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("up{") && e.contains("== 0")),
        "no `up == 0` alert"
    );
}

#[test]
fn systemd_unit_is_hardened() {
    let directives: Vec<(&str, &str)> = UNIT
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let has = |k: &str, v: &str| directives.iter().any(|&(dk, dv)| dk == k && dv == v);
    for (k, v) in [
        ("User", "callmask"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/callmask/recordings"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LimitNOFILE", "65536"),
        (
            "ExecStart",
            "/usr/local/bin/callmask run --config /etc/callmask/callmask.toml",
        ),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert!(has(k, v), "callmask.service lacks {k}={v}");
    }
    // systemd's stop timeout leaves the SIGTERM drain its time, and then some to close the
    // recordings (issue 13).
    let stop_s: u32 = directives
        .iter()
        .find(|(k, _)| *k == "TimeoutStopSec")
        .and_then(|(_, v)| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec=<seconds>s");
    let drain_s = config::ShutdownConfig::default().drain_timeout_s.get();
    assert!(
        stop_s >= drain_s + 10,
        "TimeoutStopSec={stop_s}s cuts the {drain_s} s drain short"
    );
    // Only the recording folder is writable.
    let rw: Vec<_> = directives
        .iter()
        .filter(|(k, _)| *k == "ReadWritePaths")
        .collect();
    assert_eq!(rw.len(), 1, "one ReadWritePaths line: {rw:?}");
    assert!(
        !directives.iter().any(|&(k, v)| k == "User" && v == "root"),
        "runs as root"
    );
    assert!(UNIT.starts_with('#'), "install steps header comment");
    assert!(
        UNIT.contains("useradd") && UNIT.contains("systemctl"),
        "install steps"
    );
    assert!(UNIT.contains("[Install]") && UNIT.contains("WantedBy=multi-user.target"));
}
