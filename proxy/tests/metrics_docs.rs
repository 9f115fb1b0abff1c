//! `docs/metrics.md` and the exported metrics agree: every documented family is exported with
//! the documented type and labels, and every exported family (except the standard `process_*`
//! ones) is documented.

use std::collections::{BTreeMap, BTreeSet};

use callmask::metrics::Metrics;

const DOC: &str = include_str!("../../docs/metrics.md");

#[derive(Debug, PartialEq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// Rows of the catalogue tables: `| `name` | type | unit | `label`, … | … |`.
fn documented() -> BTreeMap<String, Family> {
    let mut out = BTreeMap::new();
    for line in DOC.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", name, type, unit, labels, meaning, moves, ""]
        if cells.len() < 7 || !cells[1].starts_with("`callmask_") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[4]
            .split(',')
            .map(|l| l.trim().trim_matches('`'))
            .filter(|l| !l.is_empty() && *l != "—" && *l != "-")
            .map(str::to_owned)
            .collect();
        let prev = out.insert(
            name.clone(),
            Family {
                kind: cells[2].to_owned(),
                labels,
            },
        );
        assert!(prev.is_none(), "{name} documented twice");
    }
    out
}

/// Families in a text exposition, with their label names (histogram `le` left out).
fn exported(text: &str) -> BTreeMap<String, Family> {
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
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, labels)) = line.split_once('{') else {
            continue;
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                series
                    .strip_suffix(s)
                    .filter(|f| out.get(*f).is_some_and(|f| f.kind == "histogram"))
            })
            .unwrap_or(series);
        let fam = out
            .get_mut(family)
            .unwrap_or_else(|| panic!("series without TYPE: {line}"));
        for pair in labels.split("\",") {
            let name = pair.split('=').next().unwrap_or("").trim();
            if !name.is_empty() && name != "le" && !name.starts_with('}') {
                fam.labels.insert(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn every_documented_metric_is_exported_and_vice_versa() {
    let metrics = Metrics::new();
    let text = metrics.render();
    let exported = exported(&text);
    let documented = documented();
    assert!(documented.len() >= 30, "doc table not parsed");

    let mut problems = Vec::new();
    for (name, doc) in &documented {
        match exported.get(name) {
            None => problems.push(format!("{name}: documented but not exported")),
            Some(e) if e != doc => problems.push(format!(
                "{name}: documented as {} {:?}, exported as {} {:?}",
                doc.kind, doc.labels, e.kind, e.labels
            )),
            Some(_) => {}
        }
    }
    for name in exported.keys() {
        if !name.starts_with("process_") && !documented.contains_key(name) {
            problems.push(format!("{name}: exported but not in docs/metrics.md"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn naming_rules() {
    let text = Metrics::new().render();
    for (name, fam) in exported(&text) {
        if name.starts_with("process_") {
            continue;
        }
        assert!(name.starts_with("callmask_"), "{name}: prefix");
        match fam.kind.as_str() {
            "counter" => assert!(name.ends_with("_total"), "{name}: counters end in _total"),
            _ => assert!(
                !name.ends_with("_total"),
                "{name}: only counters end in _total"
            ),
        }
        for bad in ["_ms", "_milliseconds", "_kb", "_bits"] {
            assert!(!name.contains(bad), "{name}: use base units");
        }
    }
    #[cfg(target_os = "linux")]
    assert!(text.contains("process_cpu_seconds_total"));
}
