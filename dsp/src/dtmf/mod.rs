//! In-band DTMF: the receiver and its public types.
//!
//! The receiver is spandsp-shaped (Goertzel bins over fixed blocks, level / twist / relative
//! peak / energy-ratio / second-harmonic tests, then a debounce state machine), with one
//! difference that matters for recording: it reports each tone's **onset**, the first sample of
//! the tone, not only the time it was confirmed. The recorder path sits behind a look-ahead
//! delay line, so a late decision can still mute the tone from its first sample.
//!
//! Calling rules (sans-IO):
//! 1. `process(samples)` with the stream's samples in order, any chunk size.
//! 2. drain `poll_event()` until `None`.
//! 3. `pending_since()` tells the earliest sample whose verdict is still open (a candidate
//!    tone neither confirmed nor rejected). Audio from there on must not leave the delay line
//!    unmuted until the verdict is in (fail closed).

mod debounce;
mod detector;
mod verify;

use std::fmt;

pub use detector::{
    BlockVerdict, CandidateMeasurement, CandidateVerdict, DtmfConfig, DtmfDetector, BLOCK,
};

use crate::MediaTime;

/// A DTMF key. `Debug` does not print which key, so a stray `{:?}` cannot put a digit in a log
/// (PHI rule); tests compare values or call [`Digit::to_char_unredacted`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    /// All sixteen keys, in RFC 4733 event-code order: 0-9, *, #, A-D.
    pub const ALL: [Digit; 16] = {
        let mut a = [Digit(0); 16];
        let mut i = 0;
        while i < 16 {
            a[i] = Digit(i as u8);
            i += 1;
        }
        a
    };

    /// From an RFC 4733 event code (0-9 digits, 10 `*`, 11 `#`, 12-15 `A`-`D`).
    pub fn from_event_code(code: u8) -> Option<Digit> {
        (code < 16).then_some(Digit(code))
    }

    /// The RFC 4733 event code.
    pub fn event_code(self) -> u8 {
        self.0
    }

    /// From a keypad character (`0-9 * # A-D`, case-insensitive letters).
    pub fn from_char(c: char) -> Option<Digit> {
        let code = match c {
            '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => c as u8 - b'A' + 12,
            'a'..='d' => c as u8 - b'a' + 12,
            _ => return None,
        };
        Some(Digit(code))
    }

    /// The keypad character. Named so that a reviewer sees every place a digit is revealed;
    /// never pass its result to a log, metric or error.
    pub fn to_char_unredacted(self) -> char {
        b"0123456789*#ABCD"[usize::from(self.0 & 0x0f)] as char
    }

    /// (row, column) on the keypad: the row selects the low-group tone, the column the high.
    pub fn keypad_position(self) -> (usize, usize) {
        const POS: [(usize, usize); 16] = [
            (3, 1), // 0
            (0, 0),
            (0, 1),
            (0, 2), // 1 2 3
            (1, 0),
            (1, 1),
            (1, 2), // 4 5 6
            (2, 0),
            (2, 1),
            (2, 2), // 7 8 9
            (3, 0), // *
            (3, 2), // #
            (0, 3),
            (1, 3),
            (2, 3),
            (3, 3), // A B C D
        ];
        POS[usize::from(self.0 & 0x0f)]
    }

    /// The key at (row, column) of the keypad.
    pub fn from_keypad(row: usize, col: usize) -> Option<Digit> {
        Digit::ALL
            .into_iter()
            .find(|d| d.keypad_position() == (row, col))
    }

    /// Nominal (low, high) frequencies in Hz (ITU-T Q.23).
    pub fn frequencies(self) -> (f32, f32) {
        let (r, c) = self.keypad_position();
        (LOW_GROUP_HZ[r], HIGH_GROUP_HZ[c])
    }
}

impl fmt::Debug for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digit(<redacted>)")
    }
}

/// Low-group frequencies (rows), ITU-T Q.23.
pub const LOW_GROUP_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group frequencies (columns), ITU-T Q.23.
pub const HIGH_GROUP_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// What the receiver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToneEvent {
    /// A tone was confirmed. `onset` is the receiver's estimate of the tone's first sample,
    /// erring early; it may lie before samples already passed to `process`.
    Started {
        /// Which key.
        digit: Digit,
        /// First sample of the tone (estimate, never later than the real onset by design).
        onset: MediaTime,
    },
    /// The confirmed tone ended. `end` is one past its last sample (estimate, erring late).
    Ended {
        /// Which key.
        digit: Digit,
        /// One past the tone's last sample.
        end: MediaTime,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_round_trips() {
        for d in Digit::ALL {
            assert_eq!(Digit::from_char(d.to_char_unredacted()), Some(d));
            assert_eq!(Digit::from_event_code(d.event_code()), Some(d));
            let (r, c) = d.keypad_position();
            assert_eq!(Digit::from_keypad(r, c), Some(d));
        }
        assert_eq!(
            Digit::from_char('5').map(Digit::frequencies),
            Some((770.0, 1336.0))
        );
        assert_eq!(
            format!("{:?}", Digit::from_char('7')),
            "Some(Digit(<redacted>))"
        );
    }
}
