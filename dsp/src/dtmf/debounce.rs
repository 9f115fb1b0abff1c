//! The hit-pattern state machine between the per-block tests and the reported events.
//!
//! Input: one verdict per 102-sample block, `H(d)` (the block passes the tests for digit `d`)
//! or `-` (it does not). Output: actions for the detector (assess a candidate, end a tone).
//!
//! ```text
//!   blocks:      -   H(d)  H(d)  H(d)  -   H(d)  -   -   -
//!   state:  Idle Cand  Assess Active ... (1 miss bridged) .. 3rd miss: End
//!                 │      └─ fine stage: frequency, twist, level, energy, duration
//!                 └─ pending_since = start of the block *before* the first hit
//!
//!   Cand ──H(d)──► Assess ──accept──► Active ──3 misses──► End ──► Idle
//!     │              ├──reject──► Rejected(d) ──miss──► Idle   (H(d) stays rejected)
//!     │              └──too early to tell──► Deferred ──next block──► Assess (final)
//!     └── miss ──► Idle
//! ```
//!
//! Why these numbers:
//! - Two agreeing blocks (25.5 ms) before the fine stage: a Q.24 tone of 40 ms covers at least
//!   two whole blocks wherever it starts (40 ms = 320 samples ≥ 2·102 + 101), while a
//!   single-block fluke in speech never raises more than one block of `pending`.
//! - Three misses to end: a bridge dropout of ≤ 10 ms (80 samples) spoils at most two blocks,
//!   so it never splits a tone (Q.24: one tone, not two).
//! - Rejection is sticky while the same pair keeps hitting, so a long off-frequency tone is
//!   judged once and never re-raises `pending` (that would mute it).

use super::Digit;

/// Consecutive missed blocks that end a confirmed tone (see the module docs).
pub(crate) const MISSES_TO_END: u32 = 3;

/// What the detector must do after a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing to do.
    None,
    /// Run the fine stage on a candidate whose first hit was block `first_hit`. If `last_chance`,
    /// the verdict must be final (accept or reject).
    Assess {
        digit: Digit,
        first_hit: u64,
        last_chance: bool,
    },
    /// The confirmed tone ended; `end_block` is the first block after its last sample
    /// (erring late).
    End { digit: Digit, end_block: u64 },
}

/// The outcome of an assessment, fed back with [`Debouncer::resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    Accept,
    Reject,
    Defer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Candidate {
        digit: Digit,
        first_hit: u64,
        deferred: bool,
    },
    Active {
        digit: Digit,
        misses: u32,
        first_miss: u64,
    },
    Rejected {
        digit: Digit,
    },
}

/// Hit-pattern state machine; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Debouncer {
    state: State,
}

impl Debouncer {
    pub(crate) fn new() -> Self {
        Debouncer { state: State::Idle }
    }

    /// Feed block `k`'s verdict (`Some(d)` = hit for `d`).
    pub(crate) fn on_block(&mut self, k: u64, hit: Option<Digit>) -> Action {
        match (self.state, hit) {
            (State::Idle, Some(d)) => {
                self.state = State::Candidate {
                    digit: d,
                    first_hit: k,
                    deferred: false,
                };
                Action::None
            }
            (State::Idle, None) => Action::None,
            (
                State::Candidate {
                    digit,
                    first_hit,
                    deferred: true,
                },
                _,
            ) => Action::Assess {
                digit,
                first_hit,
                last_chance: true,
            },
            (
                State::Candidate {
                    digit, first_hit, ..
                },
                Some(d),
            ) if d == digit => Action::Assess {
                digit,
                first_hit,
                last_chance: false,
            },
            (State::Candidate { .. }, Some(d)) => {
                self.state = State::Candidate {
                    digit: d,
                    first_hit: k,
                    deferred: false,
                };
                Action::None
            }
            (State::Candidate { .. }, None) => {
                self.state = State::Idle;
                Action::None
            }
            (State::Active { digit, .. }, Some(d)) if d == digit => {
                self.state = State::Active {
                    digit,
                    misses: 0,
                    first_miss: 0,
                };
                Action::None
            }
            (
                State::Active {
                    digit,
                    misses,
                    first_miss,
                },
                Some(d),
            ) => {
                // Another key took over: the old tone is over by this block at the latest.
                let end_block = if misses > 0 { first_miss + 1 } else { k + 1 };
                self.state = State::Candidate {
                    digit: d,
                    first_hit: k,
                    deferred: false,
                };
                Action::End { digit, end_block }
            }
            (
                State::Active {
                    digit,
                    misses,
                    first_miss,
                },
                None,
            ) => {
                let first_miss = if misses == 0 { k } else { first_miss };
                let misses = misses + 1;
                if misses >= MISSES_TO_END {
                    self.state = State::Idle;
                    Action::End {
                        digit,
                        end_block: first_miss + 1,
                    }
                } else {
                    self.state = State::Active {
                        digit,
                        misses,
                        first_miss,
                    };
                    Action::None
                }
            }
            (State::Rejected { digit }, Some(d)) if d == digit => Action::None,
            (State::Rejected { .. }, Some(d)) => {
                self.state = State::Candidate {
                    digit: d,
                    first_hit: k,
                    deferred: false,
                };
                Action::None
            }
            (State::Rejected { .. }, None) => {
                self.state = State::Idle;
                Action::None
            }
        }
    }

    /// The fine stage's verdict on the last [`Action::Assess`].
    pub(crate) fn resolve(&mut self, r: Resolution) {
        let State::Candidate {
            digit, first_hit, ..
        } = self.state
        else {
            return;
        };
        self.state = match r {
            Resolution::Accept => State::Active {
                digit,
                misses: 0,
                first_miss: 0,
            },
            Resolution::Reject => State::Rejected { digit },
            Resolution::Defer => State::Candidate {
                digit,
                first_hit,
                deferred: true,
            },
        };
    }

    /// First block that may hold the open candidate (the block before its first hit).
    pub(crate) fn pending_since_block(&self) -> Option<u64> {
        match self.state {
            State::Candidate { first_hit, .. } => Some(first_hit.saturating_sub(1)),
            _ => None,
        }
    }

    /// The confirmed tone, if one is sounding.
    pub(crate) fn active(&self) -> Option<Digit> {
        match self.state {
            State::Active { digit, .. } => Some(digit),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Option<Digit> {
        Digit::from_char(c)
    }

    #[test]
    fn two_hits_assess_then_three_misses_end() {
        let mut db = Debouncer::new();
        assert_eq!(db.on_block(10, d('5')), Action::None);
        assert_eq!(db.pending_since_block(), Some(9));
        let a = db.on_block(11, d('5'));
        assert!(matches!(
            a,
            Action::Assess {
                first_hit: 10,
                last_chance: false,
                ..
            }
        ));
        db.resolve(Resolution::Accept);
        assert_eq!(db.pending_since_block(), None);
        assert_eq!(db.on_block(12, None), Action::None);
        assert_eq!(db.on_block(13, d('5')), Action::None, "one miss is bridged");
        assert_eq!(db.on_block(14, None), Action::None);
        assert_eq!(db.on_block(15, None), Action::None);
        assert!(matches!(
            db.on_block(16, None),
            Action::End { end_block: 15, .. }
        ));
    }

    #[test]
    fn rejection_is_sticky_until_a_miss() {
        let mut db = Debouncer::new();
        db.on_block(0, d('1'));
        db.on_block(1, d('1'));
        db.resolve(Resolution::Reject);
        for k in 2..20 {
            assert_eq!(db.on_block(k, d('1')), Action::None);
            assert_eq!(db.pending_since_block(), None);
        }
        db.on_block(20, None);
        db.on_block(21, d('1'));
        assert_eq!(db.pending_since_block(), Some(20));
    }

    #[test]
    fn deferred_candidate_gets_a_final_assessment() {
        let mut db = Debouncer::new();
        db.on_block(0, d('#'));
        db.on_block(1, d('#'));
        db.resolve(Resolution::Defer);
        assert_eq!(db.pending_since_block(), Some(0));
        assert!(matches!(
            db.on_block(2, None),
            Action::Assess {
                first_hit: 0,
                last_chance: true,
                ..
            }
        ));
    }
}
