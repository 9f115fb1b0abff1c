//! A scripted recognizer for tests and offline simulation. Not a speech recognizer.

use std::collections::VecDeque;

use super::{Recognizer, RecognizerError, Word};
use crate::{MediaTime, SampleRate};

/// One scripted answer.
#[derive(Clone)]
pub enum FakeReply {
    /// These words (offsets within the segment).
    Words(Vec<Word>),
    /// This error.
    Error(RecognizerError),
}

/// A recognizer that answers from a script, or from a timeline of words in stream time.
///
/// - Timeline mode ([`FakeRecognizer::timeline`]): each call returns the words overlapping the
///   segment announced by [`Recognizer::segment_hint`], clipped and shifted to segment offsets.
/// - Script mode ([`FakeRecognizer::scripted`]): each call pops the next reply; an empty
///   script answers no words.
///
/// Latency is simulated by the caller in media time: [`FakeRecognizer::delays_ms`] scripts a
/// delay per call (`None` = never answer), read back with [`FakeRecognizer::last_delay_ms`].
#[derive(Clone, Default)]
pub struct FakeRecognizer {
    timeline: Vec<Word>,
    script: VecDeque<FakeReply>,
    delays: VecDeque<Option<u32>>,
    fail_calls: Vec<usize>,
    seg: (MediaTime, MediaTime),
    calls: usize,
    last_delay: Option<u32>,
}

impl std::fmt::Debug for FakeRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRecognizer")
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl FakeRecognizer {
    /// Answers from `words` placed in stream time (start/end are absolute media times).
    pub fn timeline(words: Vec<Word>) -> Self {
        FakeRecognizer {
            timeline: words,
            ..Self::default()
        }
    }

    /// Answers the calls in order with `replies`.
    pub fn scripted(replies: Vec<FakeReply>) -> Self {
        FakeRecognizer {
            script: replies.into(),
            ..Self::default()
        }
    }

    /// Scripted latency per call, in order (`None`: never answer); later calls answer at
    /// once.
    pub fn delays_ms(mut self, delays: Vec<Option<u32>>) -> Self {
        self.delays = delays.into();
        self
    }

    /// Make these calls (0-based) fail with [`RecognizerError::Engine`].
    pub fn failing_calls(mut self, calls: Vec<usize>) -> Self {
        self.fail_calls = calls;
        self
    }

    /// Calls so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// The latency scripted for the last call (`Some(0)` by default, `None`: never answer).
    pub fn last_delay_ms(&self) -> Option<u32> {
        self.last_delay
    }
}

impl Recognizer for FakeRecognizer {
    fn segment_hint(&mut self, start: MediaTime, end: MediaTime) {
        self.seg = (start, end);
    }

    fn transcribe(
        &mut self,
        _pcm: &[i16],
        _rate: SampleRate,
    ) -> Result<Vec<Word>, RecognizerError> {
        let call = self.calls;
        self.calls += 1;
        self.last_delay = self.delays.pop_front().unwrap_or(Some(0));
        if self.fail_calls.contains(&call) {
            return Err(RecognizerError::Engine("injected failure"));
        }
        if !self.timeline.is_empty() {
            let (s, e) = self.seg;
            return Ok(self
                .timeline
                .iter()
                .filter(|w| w.end > s && w.start < e)
                .map(|w| Word {
                    text: w.text.clone(),
                    start: MediaTime(w.start.0.max(s.0) - s.0),
                    end: MediaTime(w.end.0.min(e.0) - s.0),
                    confidence: w.confidence,
                })
                .collect());
        }
        match self.script.pop_front() {
            Some(FakeReply::Words(w)) => Ok(w),
            Some(FakeReply::Error(e)) => Err(e),
            None => Ok(Vec::new()),
        }
    }
}
