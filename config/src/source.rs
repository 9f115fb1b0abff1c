//! Sources of configuration text (a file, `--set` overrides), merged and located.
//!
//! Each source is parsed twice: by `toml_edit` for positions (so an error can name line and
//! column) and by `toml` for values. Unknown keys are found by walking every source against
//! the field lists of the raw structs, so all of them are reported at once; the values are
//! then deep-merged (later sources win, tables merge key by key, arrays are replaced whole),
//! deserialized section by section, and validated. An issue found after the merge is located
//! in the last source that holds its key path, which is the one that supplied the value.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, Key, Table as EditTable, Value as EditValue};

use crate::error::{ConfigError, ConfigErrors, ErrorKind};
use crate::model::Config;
use crate::raw::{fields_of, section_fields, RawConfig, RawRecorder};
use crate::validate::{validate, Issue, KeyPath, Seg};

/// One parsed piece of configuration text.
struct Source {
    origin: String,
    /// Overrides get no line/column: they are one short argument.
    is_override: bool,
    doc: ImDocument<String>,
}

/// Collects sources, then [`Loader::finish`] merges and validates them.
pub(crate) struct Loader {
    /// Origin used for problems that no source holds (a conflict between defaults).
    primary: String,
    sources: Vec<Source>,
    tables: Vec<toml::Table>,
    errors: Vec<(usize, ConfigError)>,
    syntax_failed: bool,
}

impl Loader {
    pub(crate) fn new(primary: &str) -> Self {
        Self {
            primary: primary.to_owned(),
            sources: Vec::new(),
            tables: Vec::new(),
            errors: Vec::new(),
            syntax_failed: false,
        }
    }

    /// Adds a whole document (a file, or a string given to [`crate::from_str`]).
    pub(crate) fn add_text(&mut self, origin: &str, text: String) {
        self.add(origin, text, false);
    }

    /// Adds one `--set KEY=VALUE` argument.
    pub(crate) fn add_override(&mut self, arg: &str) {
        let Some((key, value)) = arg.split_once('=') else {
            self.fail(ConfigError {
                kind: ErrorKind::BadOverride,
                origin: format!("--set {arg}"),
                key: String::new(),
                line: None,
                column: None,
                problem: "there is no `=` in this override".into(),
                fix: "write --set KEY=VALUE, e.g. --set masking.lookahead_ms=80".into(),
            });
            return;
        };
        let key = key.trim();
        let origin = format!("--set {key}");
        let key_ok = !key.is_empty()
            && key.split('.').all(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !key_ok {
            self.fail(ConfigError {
                kind: ErrorKind::BadOverride,
                origin,
                key: key.to_owned(),
                line: None,
                column: None,
                problem: "this is not a dotted key".into(),
                fix: "write the key as SECTION.NAME, e.g. masking.lookahead_ms".into(),
            });
            return;
        }
        // A secret on the command line is readable by every local user (`ps`, /proc) and
        // lands in shell history: the API token comes from a file or the environment only.
        if key == "http.token"
            || (key == "http" && value.contains("token") && !value.contains("token_file"))
        {
            self.fail(ConfigError {
                kind: ErrorKind::BadOverride,
                origin,
                key: "http.token".into(),
                line: None,
                column: None,
                problem: "the API token may not be given on the command line (every local user can read it in the process list)".into(),
                fix: "put it in a file named by http.token_file (mode 0600) or in the CALLMASK_HTTP_TOKEN environment variable".into(),
            });
            return;
        }
        // VALUE is TOML; a bare word that is not TOML (127.0.0.1:5070, debug) is taken as a
        // string, which is what a shell user means.
        let as_toml = format!("{key} = {value}");
        let text = match ImDocument::parse(as_toml.as_str()) {
            Ok(doc) if doc.as_table().len() == 1 => as_toml,
            _ => format!("{key} = {}", toml::Value::String(value.to_owned())),
        };
        self.add(&origin, text, true);
    }

    fn fail(&mut self, e: ConfigError) {
        self.syntax_failed = true;
        let at = self.sources.len();
        self.errors.push((at, e));
    }

    fn add(&mut self, origin: &str, text: String, is_override: bool) {
        let syntax = |problem: String, span: Option<Range<usize>>, text: &str| {
            let (line, column) = position(text, span, is_override);
            ConfigError {
                kind: ErrorKind::Syntax,
                origin: origin.to_owned(),
                key: String::new(),
                line,
                column,
                problem,
                fix: "correct the TOML syntax here (see https://toml.io/en/v1.0.0)".into(),
            }
        };
        let doc = match ImDocument::parse(text.clone()) {
            Ok(doc) => doc,
            Err(e) => {
                let err = syntax(one_line(e.message()), e.span(), &text);
                self.fail(err);
                return;
            }
        };
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let e: toml::de::Error = e;
                let err = syntax(one_line(e.message()), e.span(), &text);
                self.fail(err);
                return;
            }
        };
        let index = self.sources.len();
        self.sources.push(Source {
            origin: origin.to_owned(),
            is_override,
            doc,
        });
        let mut issues = Vec::new();
        strip_unknown(&mut table, &mut issues);
        for issue in issues {
            let err = self.locate_in(index, issue);
            self.errors.push((index, err));
        }
        self.tables.push(table);
    }

    /// Merges, deserializes and validates all sources.
    pub(crate) fn finish(mut self) -> Result<Config, ConfigErrors> {
        if self.syntax_failed {
            return Err(self.into_errors());
        }
        let mut merged = toml::Table::new();
        for t in std::mem::take(&mut self.tables) {
            merge(&mut merged, t);
        }
        let mut issues = Vec::new();
        let raw = deserialize(merged, &mut issues);
        let config = match validate(raw) {
            Ok(config) => Some(config),
            Err(more) => {
                for m in more {
                    // A key that failed to deserialize shows up again as missing; say it once.
                    if !issues.iter().any(|i: &Issue| i.path == m.path) {
                        issues.push(m);
                    }
                }
                None
            }
        };
        for issue in issues {
            let (index, err) = self.locate(issue);
            self.errors.push((index, err));
        }
        match config {
            Some(config) if self.errors.is_empty() => Ok(config),
            _ => Err(self.into_errors()),
        }
    }

    fn into_errors(mut self) -> ConfigErrors {
        // Source order, then position; errors with no position last within their source.
        self.errors.sort_by_key(|(i, e)| {
            (
                *i,
                e.line.unwrap_or(usize::MAX),
                e.column.unwrap_or(usize::MAX),
            )
        });
        ConfigErrors::new(self.errors.into_iter().map(|(_, e)| e).collect())
    }

    /// Finds the source that supplied `issue.path`: the last one holding the longest prefix.
    fn locate(&self, issue: Issue) -> (usize, ConfigError) {
        let mut best: Option<(usize, usize)> = None;
        for (i, s) in self.sources.iter().enumerate() {
            let depth = find(&s.doc, &issue.path, issue.at_key).0;
            if depth > 0 && best.is_none_or(|(d, _)| depth >= d) {
                best = Some((depth, i));
            }
        }
        match best {
            Some((_, i)) => (i, self.locate_in(i, issue)),
            None => (
                self.sources.len(),
                ConfigError {
                    kind: issue.kind,
                    origin: self.primary.clone(),
                    key: issue.path.to_string(),
                    line: None,
                    column: None,
                    problem: issue.problem,
                    fix: issue.fix,
                },
            ),
        }
    }

    fn locate_in(&self, index: usize, issue: Issue) -> ConfigError {
        let s = &self.sources[index];
        let span = find(&s.doc, &issue.path, issue.at_key).1;
        let (line, column) = position(s.doc.raw(), span, s.is_override);
        ConfigError {
            kind: issue.kind,
            origin: s.origin.clone(),
            key: issue.path.to_string(),
            line,
            column,
            problem: issue.problem,
            fix: issue.fix,
        }
    }
}

/// Parser messages span several lines; errors are displayed one per line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// 1-based line and column (in characters) of the start of `span`.
fn position(
    text: &str,
    span: Option<Range<usize>>,
    is_override: bool,
) -> (Option<usize>, Option<usize>) {
    if is_override {
        return (None, None);
    }
    let Some(span) = span else {
        return (None, None);
    };
    let Some(before) = text.get(..span.start) else {
        return (None, None);
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (Some(line), Some(column))
}

/// A node of a `toml_edit` document on the way down a key path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a EditTable),
    Value(&'a EditValue),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn key(self, k: &str) -> Option<(&'a Key, Node<'a>)> {
        let found = match self {
            Node::Item(i) => i.as_table_like()?.get_key_value(k),
            Node::Table(t) => t.get_key_value(k),
            Node::Value(v) => v.as_inline_table()?.get_key_value(k),
        };
        found.map(|(key, item)| (key, Node::Item(item)))
    }

    fn index(self, n: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(a)) => a.get(n).map(Node::Table),
            Node::Item(Item::Value(EditValue::Array(a))) | Node::Value(EditValue::Array(a)) => {
                a.get(n).map(Node::Value)
            }
            _ => None,
        }
    }
}

/// How many steps of `path` exist in `doc`, and the best span found on the way: the last
/// step's value (or key, for `at_key`), else the nearest ancestor that has one.
fn find(doc: &ImDocument<String>, path: &KeyPath, at_key: bool) -> (usize, Option<Range<usize>>) {
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    let mut depth = 0;
    for (i, seg) in path.0.iter().enumerate() {
        let last = i + 1 == path.0.len();
        let (key_span, next) = match seg {
            Seg::Key(k) => match node.key(k) {
                Some((key, n)) => (key.span(), n),
                None => break,
            },
            Seg::Index(n) => match node.index(*n) {
                Some(n) => (None, n),
                None => break,
            },
        };
        depth += 1;
        node = next;
        let span = if last && at_key {
            key_span.or_else(|| node.span())
        } else {
            node.span().or(key_span)
        };
        best = span.or(best);
    }
    (depth, best)
}

/// Removes keys the raw structs do not know, recording an issue for each.
fn strip_unknown(table: &mut toml::Table, issues: &mut Vec<Issue>) {
    let top = fields_of::<RawConfig>();
    let unknown: Vec<String> = table
        .keys()
        .filter(|k| !top.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in unknown {
        table.remove(&k);
        issues.push(unknown_issue(KeyPath::default(), &k, top));
    }
    for (section, value) in table.iter_mut() {
        let Some(fields) = section_fields(section) else {
            continue;
        };
        let base = KeyPath::default().key(section);
        match value {
            toml::Value::Table(t) => {
                strip_section(t, &base, fields, issues);
                // One level of nesting: `[pbx.tls]`, `[agents.tls]`.
                for (sub, v) in t.iter_mut() {
                    let (Some(fields), toml::Value::Table(st)) =
                        (section_fields(&format!("{section}.{sub}")), v)
                    else {
                        continue;
                    };
                    strip_section(st, &base.key(sub), fields, issues);
                }
            }
            toml::Value::Array(items) if section == "recorder" => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(t) = item {
                        strip_section(t, &base.index(i), fields, issues);
                    }
                }
            }
            _ => {}
        }
    }
}

fn strip_section(t: &mut toml::Table, base: &KeyPath, fields: &[&str], issues: &mut Vec<Issue>) {
    let unknown: Vec<String> = t
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in unknown {
        t.remove(&k);
        issues.push(unknown_issue(base.clone(), &k, fields));
    }
}

fn unknown_issue(base: KeyPath, key: &str, allowed: &[&str]) -> Issue {
    let place = if base.0.is_empty() {
        "at the top level".to_owned()
    } else {
        let keys: Vec<&str> = base
            .0
            .iter()
            .filter_map(|s| match s {
                Seg::Key(k) => Some(k.as_str()),
                Seg::Index(_) => None,
            })
            .collect();
        format!("in [{}]", keys.join("."))
    };
    let hint = closest(key, allowed)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default();
    Issue {
        kind: ErrorKind::UnknownKey,
        path: base.key(key),
        at_key: true,
        problem: format!("unknown key `{}`", key.escape_debug()),
        fix: format!("{hint}allowed {place}: {}", allowed.join(", ")),
    }
}

/// The allowed key nearest to a typo, if it is near enough to be a likely intent.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Deep merge: tables merge key by key, anything else (arrays included) is replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Deserializes the merged table section by section, so one wrong type does not hide others.
fn deserialize(merged: toml::Table, issues: &mut Vec<Issue>) -> RawConfig {
    let mut raw = RawConfig::default();
    for (section, value) in merged {
        let path = KeyPath::default().key(&section);
        if section == "recorder" {
            let toml::Value::Array(items) = value else {
                issues.push(type_issue(
                    path,
                    &value,
                    "a list of tables ([[recorder]])",
                    "write each sink as a [[recorder]] table",
                ));
                continue;
            };
            let mut list = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    toml::Value::Table(t) => {
                        list.push(section_de::<RawRecorder>(t, &path.index(i), issues))
                    }
                    other => issues.push(type_issue(
                        path.index(i),
                        &other,
                        "a table",
                        "write each sink as a [[recorder]] table or {kind = \"wav\", …}",
                    )),
                }
            }
            raw.recorder = Some(list);
            continue;
        }
        let toml::Value::Table(t) = value else {
            issues.push(type_issue(
                path,
                &value,
                "a table",
                &format!("write the settings under a [{section}] header"),
            ));
            continue;
        };
        match section.as_str() {
            "pbx" => raw.pbx = Some(section_de(t, &path, issues)),
            "agents" => raw.agents = Some(section_de(t, &path, issues)),
            "media" => raw.media = Some(section_de(t, &path, issues)),
            "masking" => raw.masking = Some(section_de(t, &path, issues)),
            "speech" => raw.speech = Some(section_de(t, &path, issues)),
            "secure" => raw.secure = Some(section_de(t, &path, issues)),
            "http" => raw.http = Some(section_de(t, &path, issues)),
            "log" => raw.log = Some(section_de(t, &path, issues)),
            "sip" => raw.sip = Some(section_de(t, &path, issues)),
            "ng" => raw.ng = Some(section_de(t, &path, issues)),
            "limits" => raw.limits = Some(section_de(t, &path, issues)),
            "shutdown" => raw.shutdown = Some(section_de(t, &path, issues)),
            // Unknown sections were stripped before the merge.
            _ => {}
        }
    }
    raw
}

/// Deserializes one section; on failure, tries each key alone to name every bad one.
fn section_de<T: DeserializeOwned + Default>(
    t: toml::Table,
    path: &KeyPath,
    issues: &mut Vec<Issue>,
) -> T {
    if let Ok(v) = T::deserialize(toml::Value::Table(t.clone())) {
        return v;
    }
    let mut good = toml::Table::new();
    for (k, v) in t {
        let alone = |v: toml::Value| {
            let mut one = toml::Table::new();
            one.insert(k.clone(), v);
            T::deserialize(toml::Value::Table(one)).is_ok()
        };
        if alone(v.clone()) {
            good.insert(k, v);
            continue;
        }
        // Find what the field takes by trying one sample of each TOML type.
        let probes = [
            (
                toml::Value::Boolean(true),
                "true or false",
                "write true or false, without quotes",
            ),
            (
                toml::Value::Integer(0),
                "a whole number",
                "write a whole number without quotes, e.g. 3000",
            ),
            (
                toml::Value::String(String::new()),
                "a quoted string",
                "put the value in double quotes, e.g. \"…\"",
            ),
            (
                toml::Value::Array(vec![toml::Value::String(String::new())]),
                "a list of quoted strings",
                "write a list, e.g. [\"first\", \"second\"]",
            ),
        ];
        let (expected, fix) = probes
            .into_iter()
            .find(|(p, _, _)| alone(p.clone()))
            .map_or(
                ("another type", "check the documented type of this key"),
                |(_, e, f)| (e, f),
            );
        issues.push(type_issue(path.key(&k), &v, expected, fix));
    }
    T::deserialize(toml::Value::Table(good)).unwrap_or_default()
}

fn type_issue(path: KeyPath, found: &toml::Value, expected: &str, fix: &str) -> Issue {
    Issue {
        kind: ErrorKind::WrongType,
        path,
        at_key: false,
        problem: format!("expected {expected}, found {}", describe(found)),
        fix: fix.to_owned(),
    }
}

fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            let more = if short.len() < s.len() { "…" } else { "" };
            format!("the string {:?}", format!("{short}{more}"))
        }
        toml::Value::Integer(i) => format!("the number {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Datetime(_) => "a date/time".into(),
        toml::Value::Array(a) if a.iter().any(|x| !x.is_str()) => {
            "a list holding non-strings".into()
        }
        toml::Value::Array(_) => "a list".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_suggests() {
        assert_eq!(
            closest("lookahed_ms", &["dtmf", "lookahead_ms"]),
            Some("lookahead_ms")
        );
        assert_eq!(closest("zzzz", &["dtmf", "lookahead_ms"]), None);
    }

    #[test]
    fn position_counts_chars() {
        let text = "a = 1\nbé = 2\n";
        let off = text.find('2').unwrap();
        assert_eq!(
            position(text, Some(off..off + 1), false),
            (Some(2), Some(6))
        );
        assert_eq!(position(text, Some(off..off + 1), true), (None, None));
    }
}
