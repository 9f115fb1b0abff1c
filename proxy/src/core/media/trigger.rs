//! The secure-mode key trigger (`secure.dtmf_trigger` / `dtmf_release`): the caller's last
//! keys, matched against the configured sequences. Keys come from RFC 4733 events or, until
//! the first event is seen, from an in-band receiver fed the PCM the call already decoded.
//! Keys are never logged, counted or exposed: the `Debug` impls are redacted.

use config::types::DtmfSequence;
use dsp::dtmf::{Digit, DtmfConfig, DtmfDetector, ToneEvent};

/// Longest sequence (the config allows 1–16 keys).
const MAX_KEYS: usize = 16;

/// A configured key sequence as RFC 4733 event codes. Its `Debug` never shows the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySequence {
    codes: [u8; MAX_KEYS],
    len: usize,
}

impl KeySequence {
    /// From the validated config value (keys beyond the 16th are ignored).
    pub fn new(seq: &DtmfSequence) -> Self {
        let mut codes = [0u8; MAX_KEYS];
        let mut len = 0;
        for d in seq.as_str().chars().filter_map(Digit::from_char) {
            if len == MAX_KEYS {
                break;
            }
            codes[len] = d.event_code();
            len += 1;
        }
        KeySequence { codes, len }
    }

    fn keys(&self) -> &[u8] {
        &self.codes[..self.len]
    }
}

impl std::fmt::Debug for KeySequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySequence(<redacted>)")
    }
}

/// Which configured sequence the caller just completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// `secure.dtmf_trigger`: secure mode on.
    Trigger,
    /// `secure.dtmf_release`: secure mode off.
    Release,
}

/// The key matcher of one call.
pub(crate) struct KeyTrigger {
    trigger: Option<KeySequence>,
    release: Option<KeySequence>,
    ring: [u8; MAX_KEYS],
    len: usize,
    /// In-band receiver for callers that send tones instead of RFC 4733 events.
    detector: DtmfDetector,
    /// RFC 4733 events seen from the caller: in-band keys are ignored from then on (a sender
    /// doing both would otherwise count every key twice).
    rfc4733_seen: bool,
}

impl std::fmt::Debug for KeyTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyTrigger(<redacted>)")
    }
}

impl KeyTrigger {
    /// A matcher; `None` when neither sequence is configured.
    pub(crate) fn new(trigger: Option<KeySequence>, release: Option<KeySequence>) -> Option<Self> {
        if trigger.is_none() && release.is_none() {
            return None;
        }
        Some(KeyTrigger {
            trigger,
            release,
            ring: [0; MAX_KEYS],
            len: 0,
            detector: DtmfDetector::new(DtmfConfig::default()),
            rfc4733_seen: false,
        })
    }

    fn key(&mut self, d: Digit) -> Option<KeyMatch> {
        if self.len == MAX_KEYS {
            self.ring.copy_within(1.., 0);
            self.len -= 1;
        }
        self.ring[self.len] = d.event_code();
        self.len += 1;
        let recent = &self.ring[..self.len];
        let hit = |s: &Option<KeySequence>| s.as_ref().is_some_and(|s| recent.ends_with(s.keys()));
        let m = if hit(&self.trigger) {
            Some(KeyMatch::Trigger)
        } else if hit(&self.release) {
            Some(KeyMatch::Release)
        } else {
            None
        };
        if m.is_some() {
            self.len = 0;
            self.ring = [0; MAX_KEYS];
        }
        m
    }

    /// An RFC 4733 key began.
    pub(crate) fn rfc4733(&mut self, d: Digit) -> Option<KeyMatch> {
        self.rfc4733_seen = true;
        self.key(d)
    }

    /// The caller's next decoded audio (ignored once RFC 4733 events were seen).
    pub(crate) fn audio(&mut self, pcm: &[i16]) -> Option<KeyMatch> {
        if self.rfc4733_seen {
            return None;
        }
        self.detector.process(pcm);
        let mut m = None;
        while let Some(ev) = self.detector.poll_event() {
            if let ToneEvent::Started { digit, .. } = ev {
                m = self.key(digit).or(m);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> KeySequence {
        KeySequence::new(&DtmfSequence::try_from(s).unwrap())
    }

    fn keys(t: &mut KeyTrigger, s: &str) -> Option<KeyMatch> {
        let mut m = None;
        for d in s.chars().filter_map(Digit::from_char) {
            m = t.rfc4733(d).or(m);
        }
        m
    }

    #[test]
    fn matches_the_tail_of_the_key_history() {
        let mut t = KeyTrigger::new(Some(seq("*1")), Some(seq("*2"))).unwrap();
        assert_eq!(keys(&mut t, "555*1"), Some(KeyMatch::Trigger));
        assert_eq!(keys(&mut t, "1"), None, "history cleared after a match");
        assert_eq!(keys(&mut t, "*2"), Some(KeyMatch::Release));
        // 20 keys: the ring keeps the newest 16 and still matches.
        assert_eq!(
            keys(&mut t, "1234567890123456789*1"),
            Some(KeyMatch::Trigger)
        );
    }

    #[test]
    fn none_without_sequences_and_debug_is_redacted() {
        assert!(KeyTrigger::new(None, None).is_none());
        assert_eq!(format!("{:?}", seq("*9")), "KeySequence(<redacted>)");
    }
}
