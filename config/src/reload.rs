//! What a configuration reload (SIGHUP to `callmask run`) may change in a running process.
//!
//! A reload is all or nothing: the new file is validated like at start, then compared key by
//! key with the configuration in force. Keys in [`LIVE_KEYS`] are swapped in (for calls that
//! start afterwards, where they concern calls); any other key that changed needs a restart,
//! and the whole reload is refused naming it. A key added to the configuration later is
//! therefore restart-only until someone wires it and lists it here.

use std::collections::BTreeMap;

use crate::model::{Config, RecorderConfig};

/// Keys a running process takes on reload: a dotted key, or a section prefix ending in `.`.
pub const LIVE_KEYS: &[&str] = &[
    "pbx.allow",
    "agents.allow",
    "masking.dtmf",
    "masking.agent_dtmf",
    "masking.replacement",
    "secure.dtmf_trigger",
    "secure.dtmf_release",
    "media.inactivity_timeout_s",
    "limits.",
    "log.level",
    "shutdown.",
];

/// Whether `key` (dotted) is applied live on reload.
pub fn is_live(key: &str) -> bool {
    LIVE_KEYS.iter().any(|l| match l.strip_suffix('.') {
        Some(section) => key
            .strip_prefix(section)
            .is_some_and(|r| r.starts_with('.')),
        None => key == *l,
    })
}

/// Whether the `[[recorder]]` list may change from `old` to `new` live: the recorder path
/// stays on (sinks before and after) or off (none either time), and no new or changed
/// `siprec` sink binds a fixed SIP port that a replaced one holds (the replaced sink keeps
/// its socket until its calls in progress end). The sinks are then rebuilt for the calls
/// that start afterwards; a `siprec` sink whose settings did not change is kept as it is.
pub fn recorders_live(old: &[RecorderConfig], new: &[RecorderConfig]) -> bool {
    let siprec = |l: &[RecorderConfig]| -> Vec<crate::model::SiprecRecorder> {
        l.iter()
            .filter_map(|r| match r {
                RecorderConfig::Siprec(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    let (before, after) = (siprec(old), siprec(new));
    let replaced: Vec<_> = before.iter().filter(|s| !after.contains(s)).collect();
    let port_held = after
        .iter()
        .filter(|s| !before.contains(s) && s.bind.get().port() != 0)
        .any(|s| replaced.iter().any(|r| r.bind == s.bind));
    old.is_empty() == new.is_empty() && !port_held
}

impl Config {
    /// The keys whose value differs between `self` (in force) and `new` (reloaded) and that a
    /// running process cannot take: a restart is needed for them. Sorted; never values (some
    /// keys hold secrets). Arrays (`recorder`, `media.codecs`, allow-lists) compare whole.
    pub fn restart_keys(&self, new: &Config) -> Vec<String> {
        self.changed(new, false)
    }

    /// The live keys whose value differs between `self` and `new` (what a reload changes).
    pub fn live_changes(&self, new: &Config) -> Vec<String> {
        self.changed(new, true)
    }

    fn changed(&self, new_cfg: &Config, live: bool) -> Vec<String> {
        let (old, new) = (flatten(self), flatten(new_cfg));
        let recorders = recorders_live(&self.recorders, &new_cfg.recorders);
        let mut keys: Vec<String> = old
            .keys()
            .chain(new.keys())
            .filter(|k| old.get(*k) != new.get(*k))
            .filter(|k| (is_live(k) || (*k == "recorder" && recorders)) == live)
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Every key of the configuration (all written out, see [`Config::to_raw`]) to its value.
fn flatten(cfg: &Config) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    // Plain structs of strings, numbers, booleans and arrays always convert; an empty map
    // (every key "unchanged") would only make a reload refuse nothing that it should.
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(cfg.to_raw(false)) {
        walk(&mut out, String::new(), t);
    }
    out
}

fn walk(
    out: &mut BTreeMap<String, toml::Value>,
    prefix: String,
    table: toml::map::Map<String, toml::Value>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => walk(out, key, t),
            other => {
                out.insert(key, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml: &str) -> Config {
        crate::from_str(toml, "test").unwrap()
    }

    #[test]
    fn live_keys_match_sections_and_keys_exactly() {
        assert!(is_live("pbx.allow"));
        assert!(is_live("limits.calls"));
        assert!(is_live("shutdown.drain_timeout_s"));
        assert!(!is_live("pbx.listen"));
        assert!(!is_live("limitsx.calls"));
        assert!(!is_live("limits"));
        assert!(!is_live("log.format"));
    }

    #[test]
    fn unchanged_and_live_changes_need_no_restart() {
        let a = cfg("[pbx]\npeer = \"127.0.0.1:5070\"\n");
        assert!(a.restart_keys(&a.clone()).is_empty());
        let b = cfg(
            "[pbx]\npeer = \"127.0.0.1:5070\"\nallow = [\"10.0.0.0/8\"]\n[limits]\ncalls = 5\n\
             [log]\nlevel = \"debug\"\n[masking]\nreplacement = \"tone\"\n\
             [shutdown]\ndrain_timeout_s = 5\n",
        );
        assert!(a.restart_keys(&b).is_empty(), "{:?}", a.restart_keys(&b));
        assert_eq!(
            a.live_changes(&b),
            [
                "limits.calls",
                "log.level",
                "masking.replacement",
                "pbx.allow",
                "shutdown.drain_timeout_s"
            ]
        );
    }

    #[test]
    fn sinks_reload_but_the_tap_and_a_held_siprec_port_do_not() {
        let wav = |d: &str| format!("[[recorder]]\nkind = \"wav\"\ndir = \"{d}\"\n");
        let rtp = "[[recorder]]\nkind = \"rtp\"\ntarget = \"127.0.0.1:4000\"\n";
        let srs = "[[recorder]]\nkind = \"siprec\"\nsrs = [\"sip:srs@127.0.0.1:5090\"]\n";
        let a = cfg(&format!("{}{srs}", wav("/r1")));
        // Another folder and a new rtp sink, the siprec sink unchanged: live.
        let b = cfg(&format!("{}{rtp}{srs}", wav("/r2")));
        assert!(a.restart_keys(&b).is_empty(), "{:?}", a.restart_keys(&b));
        assert_eq!(a.live_changes(&b), ["recorder"]);
        // The siprec sink goes, or changes on an OS-chosen port: live.
        let c = cfg(&wav("/r1"));
        assert!(a.restart_keys(&c).is_empty());
        let srs2 = "[[recorder]]\nkind = \"siprec\"\nsrs = [\"sip:srs@127.0.0.1:5091\"]\n";
        assert!(a
            .restart_keys(&cfg(&format!("{}{srs2}", wav("/r1"))))
            .is_empty());
        // A changed sink on the fixed port the replaced one holds: restart.
        let fixed = |uri: &str| {
            format!(
                "[[recorder]]\nkind = \"siprec\"\nsrs = [\"{uri}\"]\nbind = \"127.0.0.1:5070\"\n"
            )
        };
        let d = cfg(&fixed("sip:srs@127.0.0.1:5090"));
        let e = cfg(&fixed("sip:srs@127.0.0.1:5091"));
        assert_eq!(d.restart_keys(&e), ["recorder"]);
        assert!(d.restart_keys(&d.clone()).is_empty());
        // No recorder before, one after (the recorder path is set up at start): restart.
        assert_eq!(cfg("").restart_keys(&cfg(&wav("/r1"))), ["recorder"]);
        assert_eq!(cfg(&wav("/r1")).restart_keys(&cfg("")), ["recorder"]);
    }

    #[test]
    fn listen_ports_sinks_and_secrets_need_a_restart() {
        let a = cfg("");
        let b = cfg(
            "[pbx]\nlisten = \"127.0.0.1:5070\"\n[media]\nports = \"20000-20100\"\n\
             [log]\nhash_key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n\
             [[recorder]]\nkind = \"wav\"\ndir = \"/tmp/r\"\n",
        );
        assert_eq!(
            a.restart_keys(&b),
            ["log.hash_key", "media.ports", "pbx.listen", "recorder"]
        );
        // An optional key that appears (absent before) counts as a change too.
        let c = cfg("[ng]\nlisten = \"127.0.0.1:2223\"\n");
        assert_eq!(a.restart_keys(&c), ["ng.listen"]);
    }
}
