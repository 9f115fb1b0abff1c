//! The identifier span policy: recognised words in, mask spans out.
//!
//! The recognizer's word times are not trusted (ends run ~240 ms late) and neither is its
//! recall (~0.77 of number words at 15 dB SNR), so the policy is deliberately wide:
//!
//! - every token holding a digit, a number word, an ordinal or a month is muted, padded
//!   ([`PolicyConfig::pad_before_ms`], [`PolicyConfig::pad_after_ms`]), and spans closer
//!   than [`PolicyConfig::merge_gap_ms`] are merged;
//! - weak tokens ("oh", "first", "second", "may", "march", single letters) are muted only next
//!   to other numbers, before "as in", or inside an ask context;
//! - a single harmless count stays audible when the policy can tell: a lone number followed by
//!   a unit noun ("two times", "a hundred dollars", "one moment", "five to seven business
//!   days"), "three of them", "this one", "number three in the queue", "the last four of";
//!   never inside an ask context;
//! - everyday numbers whose grammar says what they are stay audible outside an ask context:
//!   a position ("the third floor": a determiner, an ordinal, a noun other than "of"), a place
//!   ("room 204", "gate twelve": a locator noun, at most four digits), a time of day or a range
//!   of them ("at 7:45", "after five", "between nine and one"; a bare "745" only before "am",
//!   "pm" or a part of the day), and an amount ("$3.50");
//! - a count before "digit(s)" ("a sixteen digit number", "your 4-digit PIN") is an
//!   identifier's length, a plain word, in its own context too;
//! - the recognizer's word timing splits a written token at punctuation ("$3" ".50", "16"
//!   "-digit"); such pieces are joined back before anything is judged;
//! - an **ask context** (someone on either leg mentions a card, social, date of birth,
//!   account/member number, security code, expiry, phone number …) widens the mask over the
//!   answer: harmless exceptions are off, weak tokens and the recognizer's usual renderings of
//!   digits it missed ("free", "fine", "for") count, letters and words below
//!   [`PolicyConfig::low_confidence`] are muted, each muted word extends over the unexplained
//!   audio around it up to the neighbouring plain words (and through the segment's end when
//!   only [`PolicyConfig::context_tail_words`] follow), spans merge over
//!   [`PolicyConfig::context_merge_gap_ms`], and long unexplained gaps are muted;
//! - the words up to the last ask keyword of a segment are the question, never an answer;
//!   after it, a lead-in terminator ("my social **is**", "born **on**") starts the answer;
//! - [`PolicyConfig::answer_numbers`] numbers in one segment (or one digit group of three or
//!   more) make it an answer even when the ask was not recognised;
//! - a decode of tones, music or noise ("Thank you." at near-zero confidence, "beep beep",
//!   words the alignment gives no time) mutes nothing, even inside an ask context;
//! - Whisper's loop on a short window (the opening words again) is an echo: an ask keyword
//!   in it does not turn the answer before it into a question;
//! - a question or prompt without a number ("can I get the …?", "please enter your …") is
//!   not an answer, in a context or not; an elliptical follow-up ("and your …?", "and the
//!   …?", at most six words) asks even when its keyword was misheard;
//! - in an answer, the word just before a number is its misheard start ("so too, one" for
//!   "oh two, one"), muted however confident the recognizer was;
//! - "the last four of", "the last 4 digits" name an identifier: plain words, in its own
//!   context too;
//! - a lead-in heard on its own (three words or more, no number-like word — a lone
//!   homophone is not one —, nothing after a terminator) neither mutes nor answers: the
//!   digits come in the next segment; inside an open ask context only when every word was
//!   heard with at least [`PolicyConfig::low_confidence`] (garbled, it may be the answer);
//! - a turn that ends on a dangling copula ("okay, it's", "that would be") announces a value:
//!   [`Verdict::announces`] opens an ask context over the next turn (only that one: the
//!   copula's complement is the very next phrase, where an ask's answer may take two turns);
//! - only a muted number-like word answers an ask ([`Verdict::numbers`]): a turn muted for
//!   its garbled words alone leaves the context open for the digits still to come; with words after a terminator ("on the back is | not
//!   a late"), the words up to it stay audible and the rest is the answer;
//! - an answer begins at the first pause (≥ [`PolicyConfig::pause_ms`], found in the audio
//!   by [`super::segmenter::pauses`]) that comes after the turn's first word and before its
//!   first number-like word: the lead-in before it ("okay, the number is") stays audible,
//!   however garbled, and neither the padding nor the context widening reaches back over it.
//!   Only the first such pause is trusted (a later one may sit inside a misheard first digit
//!   group), except the one after a turn-opening "okay," with more lead-in words after it;
//!   and only when every lead-in word before it was heard with at least
//!   [`PolicyConfig::trust_confidence`]: a garbled lead-in may hold the first digits, so it is
//!   muted with the answer (fail closed).
//!
//! Tones and whistles never reach the policy: [`super::SpeechMasker`] takes a segment whose
//! audio is one sinusoid frame after frame ([`super::segmenter::tonal_fraction`]) for a tone,
//! not speech, before any recognizer hears it.
//!
//! PHI: the policy reads the words during [`SpanPolicy::evaluate`] and keeps nothing; its
//! output holds media times only. No type here prints word text.

use super::numbers::{
    classify, digit_count, is_digit_word, is_homophone, is_non_speech_word, Norm, TokenClass,
    ASK_KEYWORDS, OF_PRONOUNS, ONE_DETERMINERS, UNIT_MODIFIERS, UNIT_NOUNS,
};
use super::Word;
use crate::MediaTime;

const SAMPLES_PER_MS: u64 = 8;

/// Words that end an answer's lead-in after an ask keyword ("my social is", "born on").
const LEAD_IN_ENDS: &[&str] = &["is", "are", "on", "at", "expires", "back"];

/// Policy settings (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyConfig {
    /// Muted before each sensitive word's start (start-time error).
    pub pad_before_ms: u32,
    /// Muted after each sensitive word's end (end-time error).
    pub pad_after_ms: u32,
    /// Spans closer than this are merged into one.
    pub merge_gap_ms: u32,
    /// Merge distance for spans inside an ask context.
    pub context_merge_gap_ms: u32,
    /// Inside an ask context, a stretch of segment audio this long with no word in it is
    /// assumed to be a missed identifier and muted.
    pub context_unexplained_ms: u32,
    /// Inside an ask context, words with a confidence below this are muted.
    pub low_confidence: f32,
    /// Let harmless counts ("two times") through outside ask contexts.
    pub harmless_exceptions: bool,
    /// A decode without numbers whose words' mean confidence is below this is taken for
    /// non-speech (tones, music, noise) and mutes nothing, even inside an ask context.
    pub non_speech_confidence: f32,
    /// Inside an ask context, a muted word followed by at most this many words up to the
    /// segment's end is muted through the end (the answer's misheard tail).
    pub context_tail_words: usize,
    /// This many non-harmless numbers in one segment make it an answer: it is judged as if
    /// inside an ask context (the recognizer garbles the digits between the ones it gets).
    pub answer_numbers: usize,
    /// A pause inside a segment is at least this long (see [`super::segmenter::pauses`]).
    pub pause_ms: u32,
    /// … and this far below the segment's speech level.
    pub pause_below_db: f32,
    /// An answer's lead-in is kept audible only when each of its words was heard with at
    /// least this confidence: below it a word may be the identifier's first digits, misheard
    /// (fail closed).
    pub trust_confidence: f32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            pad_before_ms: 300,
            pad_after_ms: 150,
            merge_gap_ms: 400,
            context_merge_gap_ms: 1500,
            context_unexplained_ms: 800,
            low_confidence: 0.7,
            harmless_exceptions: true,
            non_speech_confidence: 0.2,
            answer_numbers: 2,
            context_tail_words: 2,
            pause_ms: 80,
            pause_below_db: 25.0,
            trust_confidence: 0.3,
        }
    }
}

/// What the audio says about a segment, beside its words.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentCues<'a> {
    /// Pauses inside the segment (absolute times; [`super::segmenter::pauses`]).
    pub pauses: &'a [(MediaTime, MediaTime)],
    /// The segment continues a force-cut one: its first words are that turn's tail.
    pub continuation: bool,
}

/// The outcome for one segment: spans to mute (absolute media time, sorted, disjoint) and
/// whether the segment asks for an identifier. Holds no words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// `[start, end)` spans to mute, sorted and merged.
    pub spans: Vec<(MediaTime, MediaTime)>,
    /// Start of the first ask keyword in the segment, if any (opens an ask context).
    pub ask: Option<MediaTime>,
    /// A number-like word (digit, number word, ordinal, month, letter or a digit's homophone)
    /// was muted: evidence that the segment gave an identifier, so it answers the open ask.
    /// Garbled words muted for their low confidence alone are not: the answer may still come.
    pub numbers: bool,
    /// The segment ends on a dangling copula ("okay, it's", "that would be", "the number on
    /// it is"): an unfinished sentence whose complement — an announced value — comes in the
    /// next turn. The time of that last word; it opens an ask context on this leg.
    pub announces: Option<MediaTime>,
}

/// Turn openers that a pause may follow before the lead-in proper ("okay, the number is").
const DISCOURSE_MARKERS: &[&str] = &[
    "okay", "ok", "sure", "yes", "yeah", "so", "well", "um", "uh", "right", "alright",
];

/// How a question or a prompt starts.
const QUESTION_OPENERS: &[&str] = &[
    "what", "can", "could", "would", "do", "does", "please", "how", "which", "where", "using",
    "enter",
];

/// Index where the decode starts repeating itself (Whisper's loop on a short window: the
/// same three words again), or `n`: words from there on are an echo, not new speech.
fn repetition_start<'a>(text: &impl Fn(usize) -> &'a str, n: usize) -> usize {
    (1..n.saturating_sub(2))
        .find(|&p| {
            (0..p).any(|q| (0..3).all(|k| text(q + k) == text(p + k)) && !text(p).is_empty())
        })
        .unwrap_or(n)
}

/// A sentence ending on one of these is unfinished: its complement comes next ("it's | …").
const DANGLING_COPULAS: &[&str] = &["is", "it's", "its", "are", "was", "were", "be", "that's"];

/// Words before an ordinal that make it a position ("the third floor").
const POSITION_DETERMINERS: &[&str] = &[
    "the", "a", "my", "our", "your", "his", "her", "their", "this", "that", "every", "each",
];

/// Nouns whose following short number names a place, not a person ("room 204").
const LOCATOR_NOUNS: &[&str] = &[
    "room", "floor", "suite", "gate", "platform", "aisle", "ward", "bed", "bay", "level",
    "building", "page", "chapter", "window", "counter", "desk", "door", "exit", "terminal",
];

/// Prepositions before a time of day ("at five", "until 6:30").
const TIME_PREPOSITIONS: &[&str] = &[
    "at", "by", "until", "till", "til", "after", "before", "around", "from", "past", "between",
];

/// The length (in tokens) and digit count of a short number starting `toks`: one digit token,
/// or up to three number words ("two oh four": three digits; "twenty": two).
fn digit_len<'a>(toks: &[Tok], text: &impl Fn(usize) -> &'a str) -> Option<(usize, usize)> {
    match toks.first()?.class {
        TokenClass::Digits => {
            let w = text(0);
            w.bytes()
                .all(|b| b.is_ascii_digit())
                .then_some((1, w.len()))
        }
        TokenClass::NumberWord | TokenClass::WeakNumber => {
            let n = toks
                .iter()
                .take(4)
                .take_while(|t| matches!(t.class, TokenClass::NumberWord | TokenClass::WeakNumber))
                .count();
            (n <= 3
                && !(0..n).any(|k| {
                    matches!(
                        text(k),
                        "double" | "triple" | "hundred" | "thousand" | "million"
                    )
                }))
            .then(|| {
                (
                    n,
                    (0..n)
                        .map(|k| if is_digit_word(text(k)) { 1 } else { 2 })
                        .sum(),
                )
            })
        }
        _ => None,
    }
}

/// A time of day at the start of `toks`: its length in tokens. An hour ("5", "five",
/// "twelve"), an hour and minutes ("7:45", "7.45", "eight thirty", "ten fifteen"), with
/// "am"/"pm"/"o'clock" after it counted in. A bare three- or four-digit group ("745") is a
/// time only when "am", "pm", "o'clock" or a part of the day follows ("745 tomorrow").
fn clock_time<'a>(
    toks: &[Tok],
    text: &impl Fn(usize) -> &'a str,
    raw: &impl Fn(usize) -> &'a str,
) -> Option<usize> {
    const SUFFIXES: &[&str] = &["am", "pm", "oclock", "o'clock"];
    const DAY_PARTS: &[&str] = &[
        "today",
        "tomorrow",
        "tonight",
        "morning",
        "afternoon",
        "evening",
        "sharp",
    ];
    let hour = |w: &str| match w {
        "one" | "two" | "three" | "four" | "five" | "six" | "seven" | "eight" | "nine" | "ten"
        | "eleven" | "twelve" => true,
        _ => w.parse::<u32>().is_ok_and(|h| (1..=12).contains(&h)),
    };
    let minute = |w: &str| {
        matches!(
            w,
            "ten" | "fifteen" | "twenty" | "thirty" | "forty" | "fifty"
        ) || w.split_once('-').is_some_and(|(t, o)| {
            matches!(t, "twenty" | "thirty" | "forty" | "fifty")
                && classify(o) == TokenClass::NumberWord
        })
    };
    let n = match toks.first()?.class {
        TokenClass::Digits => {
            let w = raw(0).trim_end_matches(['.', ',', '?', '!']);
            if !w
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
            {
                return None;
            }
            let valid = match w.split_once([':', '.']) {
                Some((h, m)) => hour(h) && m.len() == 2 && m.parse::<u32>().is_ok_and(|m| m < 60),
                None if (3..=4).contains(&w.len()) => {
                    let (h, m) = w.split_at(w.len() - 2);
                    hour(h)
                        && m.parse::<u32>().is_ok_and(|m| m < 60)
                        && (SUFFIXES.contains(&text(1)) || DAY_PARTS.contains(&text(1)))
                }
                None => hour(w),
            };
            if !valid {
                return None;
            }
            1
        }
        TokenClass::NumberWord if hour(text(0)) => {
            if toks
                .get(1)
                .is_some_and(|t| t.class == TokenClass::NumberWord)
                && minute(text(1))
            {
                2
            } else {
                1
            }
        }
        _ => return None,
    };
    Some(
        if SUFFIXES.contains(&text(n)) {
            n + 1
        } else {
            n
        }
        .min(toks.len()),
    )
}

/// `word` (normalised) is a length descriptor: a count of at most two digits or a cardinal
/// word, followed by "digit(s)" (as the next word or hyphenated: "16-digit").
fn is_length(word: &str, next: &str) -> bool {
    let (count, rest) = match word.split_once('-') {
        Some((n, r)) => (n, r),
        None => (word, next),
    };
    let count_ok =
        (!count.is_empty() && count.len() <= 2 && count.bytes().all(|b| b.is_ascii_digit()))
            || classify(count) == TokenClass::NumberWord && !matches!(count, "double" | "triple");
    count_ok && matches!(rest, "digit" | "digits")
}

/// A piece of the previous written token, split off by the recognizer's word timing: Whisper
/// (and faster-whisper) start a new "word" at a punctuation sub-token, so "$3.50" arrives as
/// "$3" + ".50", "4,000" as "4" + ",000" and "16-digit" as "16" + "-digit". No spoken word
/// starts with `.`, `,`, `-` or `:` followed by a letter or digit.
fn is_continuation(w: &Word) -> bool {
    let mut b = w.text.bytes();
    matches!(b.next(), Some(b'.' | b',' | b'-' | b':'))
        && b.next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// `words` with every continuation piece glued to the word before it (the whole written
/// token, from the first piece's start to the last one's end, at the lower confidence).
fn join_continuations(words: &[Word]) -> Vec<Word> {
    let mut out: Vec<Word> = Vec::with_capacity(words.len());
    for w in words {
        match out.last_mut() {
            Some(prev) if is_continuation(w) => {
                prev.text.push_str(&w.text);
                prev.end = prev.end.max(w.end);
                prev.confidence = match (prev.confidence, w.confidence) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            _ => out.push(w.clone()),
        }
    }
    out
}

/// Turns words into mask spans. Stateless apart from its settings; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanPolicy {
    config: PolicyConfig,
}

/// Per-word working state (no text).
#[derive(Debug, Clone, Copy)]
struct Tok {
    class: TokenClass,
    ctx: bool,
    /// After an ask keyword in the same segment: no harmless exceptions, but not an answer
    /// context either (the rest of a question, or a lead-in) unless numbers follow.
    asked: bool,
    harmless: bool,
    sensitive: bool,
    /// Names the identifier ("the last **four** of my social"): a plain word, never muted
    /// for its own sake.
    label: bool,
}

impl SpanPolicy {
    /// A policy with these settings.
    pub fn new(config: PolicyConfig) -> Self {
        SpanPolicy { config }
    }

    /// The settings in use.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Evaluate one segment `[seg_start, seg_end)` whose words carry offsets from
    /// `seg_start` (8 kHz samples). `context(t)` says whether an ask context (opened earlier,
    /// on either leg) covers absolute time `t`; asks inside this segment are added here.
    pub fn evaluate(
        &self,
        words: &[Word],
        seg_start: MediaTime,
        seg_end: MediaTime,
        context: impl Fn(MediaTime) -> bool,
    ) -> Verdict {
        self.evaluate_cut(
            words,
            seg_start,
            seg_end,
            None,
            SegmentCues::default(),
            context,
        )
    }

    /// [`SpanPolicy::evaluate`] for a force-cut segment whose continuation re-hears the audio
    /// from `defer_from` on: words starting there are judged by the continuation (they are
    /// still used as neighbours here), so a count cut from its unit ("two | times") is not
    /// muted for lack of the unit.
    pub fn evaluate_cut(
        &self,
        words: &[Word],
        seg_start: MediaTime,
        seg_end: MediaTime,
        defer_from: Option<MediaTime>,
        cues: SegmentCues<'_>,
        context: impl Fn(MediaTime) -> bool,
    ) -> Verdict {
        let c = &self.config;
        let joined;
        let words = if words.iter().skip(1).any(is_continuation) {
            joined = join_continuations(words);
            &joined[..]
        } else {
            words
        };
        let abs = |off: MediaTime| MediaTime(seg_start.0 + off.0);
        let norm: Vec<Norm> = words.iter().map(|w| Norm::new(&w.text)).collect();
        let text = |i: usize| norm.get(i).map_or("", Norm::as_str);
        let mut toks: Vec<Tok> = words
            .iter()
            .map(|w| Tok {
                class: classify(&w.text),
                ctx: context(abs(w.start)),
                asked: false,
                harmless: false,
                sensitive: false,
                label: false,
            })
            .collect();
        for (i, t) in toks.iter_mut().enumerate().skip(1) {
            // "the last four of my social", "the last 4 digits": the name of the
            // identifier, in its own context too; judged as a plain word.
            if text(i - 1) == "last"
                && matches!(text(i), "four" | "4" | "two" | "2")
                && matches!(text(i + 1), "of" | "on" | "digits")
            {
                t.class = TokenClass::Plain;
                t.label = true;
            }
        }
        for (i, t) in toks.iter_mut().enumerate() {
            // "a sixteen digit number", "your 4-digit PIN", "the three digits on the back":
            // a count before "digit(s)" gives an identifier's length, never its value.
            if is_length(text(i), text(i + 1)) {
                t.class = TokenClass::Plain;
                t.label = true;
            }
        }

        let in_context = context(seg_start) || context(seg_end.saturating_sub(1));
        if self.non_speech(words, &norm, &toks) {
            // Tones, music, noise: nothing to mute, nothing asked.
            return Verdict::default();
        }

        // Asks inside this segment open a context for the rest of it; the words up to the
        // last keyword are the question (or a lead-in), not an answer.
        let mut ask = None;
        let mut ask_idx = None;
        let content = repetition_start(&text, words.len());
        for (i, word) in words.iter().enumerate().take(content) {
            let w = text(i);
            // "let me read that back" (often heard as "read that mark", "read my mind")
            let read_back = w == "read";
            let keyword = ASK_KEYWORDS.contains(&w)
                || read_back
                || (w == "number" && !toks.get(i + 1).is_some_and(|t| t.class.is_numeric_like()));
            if keyword {
                ask.get_or_insert(abs(word.start));
                ask_idx = Some(i);
            }
        }
        let strong_any = toks.iter().any(|t| t.class.is_strong());
        // An elliptical follow-up question ("and your date of birth?", "and the security
        // code?") asks for the next identifier even when its keyword was misheard.
        if ask_idx.is_none()
            && !strong_any
            && (2..=6).contains(&content)
            && text(0) == "and"
            && matches!(text(1), "your" | "the")
        {
            ask = Some(abs(words[0].start));
            ask_idx = Some(content - 1);
        }
        // A question ("can I get the …?", "please enter your …") is not an answer.
        let question = !strong_any
            && content > 0
            && (words[content - 1].text.trim_end().ends_with('?')
                || QUESTION_OPENERS.contains(&text(0)));
        let mut answer_from = ask_idx.map_or(0, |k| k + 1);
        let answering = context(seg_start);
        if let Some(k) = ask_idx {
            // A lead-in ("my phone number is", "born on", "it expires", "read that back")
            // ends at its last terminator: what follows is the answer.
            let own = answering && (0..k).any(|j| text(j) == "my");
            let lead_end = (k..content)
                .rev()
                .find(|&j| LEAD_IN_ENDS.contains(&text(j)));
            for (i, t) in toks.iter_mut().enumerate() {
                // Already answering an earlier ask ("my social is …"): the rest is the answer.
                // The terminator ends the lead-in ("my phone is | …") when there is one.
                t.ctx = lead_end.map_or(own && i > k, |j| i > j);
                t.asked = i > k;
            }
            answer_from = answer_from.max(lead_end.map_or(0, |j| j + 1));
        }
        let mut seg_ctx = ask.is_none() && in_context;
        // No number-like word; a lone homophone ("going to do it") is not one, a pair ("so
        // too", "for to") is.
        let heard = |i: usize| toks[i].class != TokenClass::Plain || is_homophone(text(i));
        let numberless = !(0..toks.len()).any(|i| {
            toks[i].class != TokenClass::Plain
                || (is_homophone(text(i))
                    && (i.checked_sub(1).is_some_and(heard)
                        || (i + 1 < toks.len() && heard(i + 1))))
        });
        let open_lead = (0..content.saturating_sub(1)).any(|j| LEAD_IN_ENDS.contains(&text(j)));
        let announces = content
            .checked_sub(1)
            .filter(|&j| {
                DANGLING_COPULAS.contains(&text(j)) && !words[j].text.trim_end().ends_with('?')
            })
            .map(|j| abs(words[j].start));
        // A turn's lead-in heard on its own ("the last four of my social are", misheard
        // without a number): not the answer yet, which comes in the next segment. Three
        // words at least, and nothing after a terminator ("… is not a late" may be the digits).
        let lead_only =
            !cues.continuation && ask.is_none() && numberless && !open_lead && content >= 3;
        // Inside an open ask context a lead-in is released only when clearly heard: a garbled
        // numberless turn there is what a misheard answer looks like (fail closed). A question
        // is known by its form (opener or question mark), not by its words.
        let clear = words[..content]
            .iter()
            .all(|w| w.confidence.is_none_or(|p| p >= c.low_confidence));
        if question || (lead_only && (clear || !in_context)) {
            // Neither mutes anything of its own, and neither answers the open context.
            seg_ctx = false;
            for t in toks.iter_mut() {
                t.ctx = false;
            }
        }
        if ask.is_none() {
            // An answer's lead-in ("I was born on", "okay, the number is") before its first
            // number-like word stays audible up to its terminator.
            let first = (0..toks.len())
                .find(|&i| toks[i].class != TokenClass::Plain || is_homophone(text(i)));
            // (No number at all: "the security code on the back is | not a late" — the
            // terminator still ends the lead-in, and the words after it are the answer.)
            let before = first.unwrap_or(content.saturating_sub(1));
            let lead_end = (0..before)
                .rev()
                .find(|&j| LEAD_IN_ENDS.contains(&text(j)))
                .filter(|&j| first.is_some() || j >= 2);
            if let Some(j) = lead_end {
                for t in &mut toks[..=j] {
                    t.ctx = false;
                }
                answer_from = j + 1;
            }
        }

        if c.harmless_exceptions {
            self.mark_harmless(&mut toks, &text, words);
        }
        // Several numbers: an answer even without a recognised ask.
        // A digit group of three or more ("29340") counts as a whole answer on its own.
        // Homophones ("free", "too") count when next to a number ("so too, one time").
        let strong = |j: Option<usize>| {
            j.and_then(|j| toks.get(j))
                .is_some_and(|t| t.class.is_strong() && !t.harmless)
        };
        let numbers: usize = (answer_from.min(toks.len())..toks.len())
            .filter(|&i| {
                let t = &toks[i];
                let number = t.class.is_strong() || t.class == TokenClass::WeakNumber;
                let heard_as =
                    is_homophone(text(i)) && (strong(i.checked_sub(1)) || strong(Some(i + 1)));
                (number || heard_as) && !t.harmless
            })
            .map(|i| {
                if digit_count(&words[i].text) >= 3 {
                    c.answer_numbers
                } else {
                    1
                }
            })
            .sum();
        let answer = c.answer_numbers > 0 && numbers >= c.answer_numbers;
        if answer {
            for t in toks.iter_mut().skip(answer_from).filter(|t| !t.harmless) {
                t.ctx = true;
            }
        }

        // Sensitivity.
        let numeric_neighbour = |toks: &[Tok], i: usize| {
            let near = |j: Option<usize>| {
                j.and_then(|j| toks.get(j))
                    .is_some_and(|t| t.class.is_numeric_like() && !t.harmless)
            };
            near(i.checked_sub(1)) || near(Some(i + 1))
        };
        for i in 0..toks.len() {
            let t = toks[i];
            let s = match t.class {
                TokenClass::Digits
                | TokenClass::NumberWord
                | TokenClass::Ordinal
                | TokenClass::Month => !t.harmless || t.ctx,
                TokenClass::WeakNumber | TokenClass::WeakOrdinal | TokenClass::WeakMonth => {
                    t.ctx || (!t.harmless && numeric_neighbour(&toks, i))
                }
                TokenClass::Letter => {
                    let spelled = text(i + 1) == "as" && text(i + 2) == "in";
                    if spelled {
                        // "K as in king": the spelling words are part of the identifier.
                        for k in i + 1..(i + 4).min(toks.len()) {
                            toks[k].sensitive = true;
                        }
                    }
                    t.ctx || spelled || numeric_neighbour(&toks, i)
                }
                TokenClass::Plain if is_homophone(text(i)) => {
                    t.ctx || (!t.harmless && numeric_neighbour(&toks, i))
                }
                TokenClass::Plain => {
                    // In an answer, the word just before a number is its misheard start ("so
                    // too, one" for "oh two, one"), however confident.
                    let leads = i >= answer_from
                        && (toks.get(i + 1).is_some_and(|n| n.class.is_numeric_like())
                            || (i + 1 < toks.len() && is_homophone(text(i + 1))));
                    t.ctx
                        && !t.label
                        && (leads || words[i].confidence.is_some_and(|p| p < c.low_confidence))
                }
            };
            toks[i].sensitive |= s;
        }
        let deferred = |i: usize| defer_from.is_some_and(|d| abs(words[i].start) >= d);

        // Spans.
        let ms = |v: u32| u64::from(v) * SAMPLES_PER_MS;
        let mut spans: Vec<(u64, u64, bool)> = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            if !t.sensitive || deferred(i) {
                continue;
            }
            let (ws, we) = (
                abs(words[i].start).0,
                abs(words[i].end).0.max(abs(words[i].start).0),
            );
            let mut s = ws.saturating_sub(ms(c.pad_before_ms));
            let mut e = we + ms(c.pad_after_ms);
            if t.ctx {
                // Cover unexplained audio up to the neighbouring plain words.
                let prev_plain = (0..i).rev().find(|&j| !toks[j].sensitive);
                let next_plain = (i + 1..toks.len()).find(|&j| !toks[j].sensitive);
                let back = prev_plain.map_or(seg_start.0, |j| abs(words[j].end).0);
                // A word or two left after it: the tail of the same answer, misheard.
                let fwd = match next_plain {
                    Some(j) if toks.len() - j > c.context_tail_words => abs(words[j].start).0,
                    _ => seg_end.0,
                };
                s = s.min(back.saturating_sub(ms(c.pad_before_ms) / 2));
                e = e.max(fwd);
            }
            spans.push((s, e, t.ctx));
        }
        if seg_ctx || toks.iter().any(|t| t.ctx) {
            // Missed words: long stretches with no word at all inside the context.
            let gap = ms(c.context_unexplained_ms);
            let mut at = seg_start.0;
            let mut edges: Vec<(u64, u64)> = words
                .iter()
                .map(|w| (abs(w.start).0, abs(w.end).0))
                .collect();
            edges.push((seg_end.0, seg_end.0));
            for (i, &(ws, we)) in edges.iter().enumerate() {
                let in_ctx = toks
                    .get(i)
                    .map_or(seg_ctx || toks.iter().any(|t| t.ctx), |t| t.ctx || seg_ctx);
                let before_defer = defer_from.is_none_or(|d| at < d.0);
                if ws > at && ws - at >= gap && in_ctx && before_defer {
                    spans.push((at.saturating_sub(ms(c.pad_before_ms)), ws, true));
                }
                at = at.max(we);
            }
        }
        let onset = if cues.continuation {
            None
        } else {
            self.answer_onset(words, &toks, &text, seg_start, cues.pauses)
        };
        if let Some(onset) = onset {
            // The lead-in before the pause that precedes the first number stays audible.
            spans.retain(|&(_, e, _)| e > onset);
            for sp in &mut spans {
                sp.0 = sp.0.max(onset);
            }
        }
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64, bool)> = Vec::with_capacity(spans.len());
        for (s, e, x) in spans {
            if let Some(last) = merged.last_mut() {
                let gap = if x && last.2 {
                    ms(c.context_merge_gap_ms)
                } else {
                    ms(c.merge_gap_ms)
                };
                if s <= last.1 + gap {
                    last.1 = last.1.max(e);
                    last.2 |= x;
                    continue;
                }
            }
            merged.push((s, e, x));
        }
        let numbers = toks.iter().enumerate().any(|(i, t)| {
            t.sensitive && !deferred(i) && (t.class != TokenClass::Plain || is_homophone(text(i)))
        });
        Verdict {
            spans: merged
                .into_iter()
                .map(|(s, e, _)| (MediaTime(s), MediaTime(e)))
                .collect(),
            ask,
            numbers,
            announces,
        }
    }

    /// Where an answer begins after its lead-in ("okay, the number is | 4992 …"): the pause
    /// before the segment's first number-like word, when plain words come before it. Word
    /// times are off by a few hundred ms (the reason for the padding); a pause in the audio
    /// is not, so the padding and the widening over a misheard lead-in stop there.
    fn answer_onset<'a>(
        &self,
        words: &[Word],
        toks: &[Tok],
        text: &impl Fn(usize) -> &'a str,
        seg_start: MediaTime,
        pauses: &[(MediaTime, MediaTime)],
    ) -> Option<u64> {
        let abs = |off: MediaTime| seg_start.0 + off.0;
        let first = (0..toks.len())
            .find(|&i| toks[i].class != TokenClass::Plain || is_homophone(text(i)))?;
        if first == 0 {
            return None;
        }
        let mut lead_from = abs(words[0].start) + 200 * SAMPLES_PER_MS;
        // The pause after a turn-opening "okay," / "sure," is not the lead-in's end (when
        // two more plain words follow before the first number).
        if first > 2 && DISCOURSE_MARKERS.contains(&text(0)) {
            lead_from = lead_from.max(abs(words[1].start));
        }
        let until = abs(words[first].start) + 100 * SAMPLES_PER_MS;
        let pause = pauses
            .iter()
            .find(|&&(s, e)| s.0 >= lead_from && e.0 <= until)
            .map(|&(s, _)| s.0)?;
        // Fail closed: the lead-in is kept only when every word before the pause was heard
        // clearly; a garbled one may be the identifier's first digits.
        let clear = words.iter().take_while(|w| abs(w.start) < pause).all(|w| {
            w.confidence
                .is_none_or(|p| p >= self.config.trust_confidence)
        });
        clear.then_some(pause)
    }

    /// A decode of tones, music or noise: no number-like token, and nothing but punctuation,
    /// non-speech renderings ("beep beep", "ahhh"), or words of very low mean confidence, or
    /// the "Thank you." Whisper writes for music (first word near zero confidence), or mostly
    /// words the alignment gives no duration (a sentence made up over noise).
    fn non_speech(&self, words: &[Word], norm: &[Norm], toks: &[Tok]) -> bool {
        let timeless = |i: usize| words[i].end <= words[i].start;
        let timed_numbers = (0..toks.len()).any(|i| {
            (toks[i].class.is_numeric_like() || toks[i].class == TokenClass::Letter) && !timeless(i)
        });
        let spoken: Vec<usize> = (0..words.len())
            .filter(|&i| !norm[i].as_str().is_empty())
            .collect();
        // Made up over noise: the alignment finds no time for most words (numbers included).
        let untimed = spoken.iter().filter(|&&i| timeless(i)).count();
        if !timed_numbers && spoken.len() >= 3 && untimed * 2 > spoken.len() {
            return true;
        }
        if toks
            .iter()
            .any(|t| t.class.is_numeric_like() || t.class == TokenClass::Letter)
        {
            return false;
        }
        if spoken.iter().all(|&i| is_non_speech_word(norm[i].as_str())) {
            return true;
        }
        let confs: Vec<f32> = spoken.iter().filter_map(|&i| words[i].confidence).collect();
        if confs.len() != spoken.len() {
            return false;
        }
        let mean = confs.iter().sum::<f32>() / confs.len() as f32;
        let hallucinated_start = confs.first().is_some_and(|&p| p < 0.05) && confs.len() <= 3;
        mean < self.config.non_speech_confidence || hallucinated_start
    }

    /// Mark lone harmless counts and their unit words (outside ask contexts).
    fn mark_harmless<'a>(
        &self,
        toks: &mut [Tok],
        text: &impl Fn(usize) -> &'a str,
        words: &[Word],
    ) {
        let n = toks.len();
        let numeric = |toks: &[Tok], j: Option<usize>| {
            j.and_then(|j| toks.get(j))
                .is_some_and(|t| t.class.is_numeric_like())
        };
        // A "count": a cardinal word (not double/triple) or a short digit group.
        let is_count = |toks: &[Tok], i: usize| match toks[i].class {
            TokenClass::NumberWord => !matches!(text(i), "double" | "triple"),
            TokenClass::Digits => {
                let w = words[i]
                    .text
                    .trim_matches(|ch: char| ch.is_ascii_punctuation());
                digit_count(&words[i].text) <= 3
                    && !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
            }
            _ => false,
        };
        let amount = |toks: &[Tok], i: usize| {
            let w = words[i].text.as_str();
            toks[i].class == TokenClass::Digits
                && (w.starts_with('$') || w.trim_end_matches(['.', ',']).ends_with('%'))
                && digit_count(w) <= 6
        };
        // Unit noun at j, or after one modifier; returns the unit's index.
        let unit_at = |j: usize| -> Option<usize> {
            if UNIT_NOUNS.contains(&text(j)) {
                return Some(j);
            }
            if UNIT_MODIFIERS.contains(&text(j)) && UNIT_NOUNS.contains(&text(j + 1)) {
                return Some(j + 1);
            }
            None
        };
        for i in 0..n {
            if toks[i].ctx || toks[i].asked {
                continue;
            }
            if amount(toks, i) && !numeric(toks, i.checked_sub(1)) && !numeric(toks, Some(i + 1)) {
                toks[i].harmless = true;
                continue;
            }
            let prev = i.checked_sub(1).map_or("", text);
            // A position: "the third floor", "my second call", "a fifth person". A date's
            // ordinal is followed by "of", a month or a number ("the third of May").
            if matches!(toks[i].class, TokenClass::Ordinal | TokenClass::WeakOrdinal)
                && POSITION_DETERMINERS.contains(&prev)
                && toks
                    .get(i + 1)
                    .is_some_and(|t| t.class == TokenClass::Plain)
                && !matches!(text(i + 1), "of" | "")
                && !is_homophone(text(i + 1))
            {
                toks[i].harmless = true;
                continue;
            }
            // A place: "room 204", "floor three", "gate twelve": a short number after a
            // locator noun (at most four digits, and nothing numeric after it).
            let place = LOCATOR_NOUNS
                .contains(&prev)
                .then(|| digit_len(&toks[i..], &|k| text(i + k)))
                .flatten()
                .filter(|&(n, d)| d <= 4 && !numeric(toks, Some(i + n)));
            if let Some((n, _)) = place {
                for t in &mut toks[i..i + n] {
                    t.harmless = true;
                }
                continue;
            }
            // A time of day: "at 7:45", "by five", "after eight thirty", "at 10 am".
            // A range of times: "between nine and one", "from 8 to 5".
            if TIME_PREPOSITIONS.contains(&prev) {
                let time = |at: usize| {
                    clock_time(&toks[at..], &|k| text(at + k), &|k| {
                        words[at + k].text.as_str()
                    })
                };
                if let Some(n) = time(i) {
                    let joined = matches!((prev, text(i + n)), ("between", "and") | ("from", "to"))
                        && i + n + 1 < toks.len();
                    let second = if joined {
                        time(i + n + 1).map(|m| n + 1 + m)
                    } else {
                        None
                    };
                    let len = second.unwrap_or(n);
                    if !numeric(toks, Some(i + len)) && (second.is_some() || !joined) {
                        for t in &mut toks[i..i + len] {
                            t.harmless = true;
                        }
                        continue;
                    }
                }
            }
            if !is_count(toks, i) || numeric(toks, i.checked_sub(1)) {
                continue;
            }
            let next = text(i + 1);
            // Range: "five to seven business days".
            if matches!(next, "to" | "or") && i + 2 < n && is_count(toks, i + 2) {
                if !numeric(toks, Some(i + 3)) {
                    if let Some(u) = unit_at(i + 3) {
                        for k in [i, i + 2, u] {
                            toks[k].harmless = true;
                        }
                    }
                }
                continue;
            }
            if numeric(toks, Some(i + 1)) && unit_at(i + 1).is_none() {
                continue;
            }
            // ("on them": how the recognizer often hears "of them")
            let count_word = (matches!(next, "of" | "on") && OF_PRONOUNS.contains(&text(i + 2)))
                || (text(i) == "one" && (ONE_DETERMINERS.contains(&prev) || next == "of"))
                || (prev == "number" && next == "in")
                || (prev == "last" && matches!(text(i), "four" | "4" | "two" | "2"));
            let ok = match unit_at(i + 1) {
                Some(u) => Some(Some(u)),
                None if count_word => Some(None),
                None => None,
            };
            if let Some(unit) = ok {
                toks[i].harmless = true;
                if let Some(u) = unit {
                    toks[u].harmless = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Word> {
        text.split_whitespace()
            .enumerate()
            .map(|(i, t)| Word {
                text: t.to_string(),
                start: MediaTime(i as u64 * 3200),
                end: MediaTime(i as u64 * 3200 + 2400),
                confidence: None,
            })
            .collect()
    }

    fn spans(text: &str, ctx: bool) -> Vec<(MediaTime, MediaTime)> {
        let w = words(text);
        let end = MediaTime(w.len() as u64 * 3200 + 800);
        SpanPolicy::default()
            .evaluate(&w, MediaTime(8000), MediaTime(8000) + end.0, |_| ctx)
            .spans
    }

    /// Words with confidences `(text, conf)`, 400 ms apart, 300 ms long.
    fn scored(ws: &[(&str, f32)]) -> Vec<Word> {
        ws.iter()
            .enumerate()
            .map(|(i, &(t, p))| Word {
                text: t.to_string(),
                start: MediaTime(i as u64 * 3200),
                end: MediaTime(i as u64 * 3200 + 2400),
                confidence: Some(p),
            })
            .collect()
    }

    fn muted(v: &Verdict, word: usize) -> bool {
        let mid = 8000 + word as u64 * 3200 + 1200;
        v.spans.iter().any(|&(s, e)| s.0 <= mid && mid < e.0)
    }

    fn eval(w: &[Word], ctx: bool) -> Verdict {
        let end = MediaTime(8000 + w.len() as u64 * 3200 + 800);
        SpanPolicy::default().evaluate(w, MediaTime(8000), end, |_| ctx)
    }

    #[test]
    fn non_speech_decodes_mute_nothing_even_in_context() {
        for w in [
            scored(&[("Thank", 0.01), ("you.", 0.97)]),
            scored(&[("Beep", 0.4), ("beep", 0.8), ("beep", 0.9)]),
            scored(&[("Aaaaaaaaa", 0.7)]),
            scored(&[(".", 0.01)]),
            scored(&[("I'm", 0.1), ("not", 0.1), ("going", 0.2)]),
            Vec::new(),
        ] {
            assert_eq!(eval(&w, true), Verdict::default(), "{} words", w.len());
        }
        // Words the alignment gives no time: made up over noise, even with a number in it.
        let mut w = scored(&[
            ("So,", 0.1),
            ("I", 0.9),
            ("am", 0.9),
            ("next", 0.9),
            ("one.", 0.9),
        ]);
        for x in &mut w[1..] {
            x.start = MediaTime(3200);
            x.end = MediaTime(3200);
        }
        assert!(eval(&w, true).spans.is_empty());
        // A confident decode with a number is speech.
        let w = scored(&[("it's", 0.9), ("five", 0.9)]);
        assert!(!eval(&w, true).spans.is_empty());
    }

    fn eval_with_pauses(w: &[Word], ctx: bool, pauses: &[(u64, u64)]) -> Verdict {
        let end = MediaTime(8000 + w.len() as u64 * 3200 + 800);
        let p: Vec<(MediaTime, MediaTime)> = pauses
            .iter()
            .map(|&(s, e)| (MediaTime(8000 + s), MediaTime(8000 + e)))
            .collect();
        let cues = SegmentCues {
            pauses: &p,
            continuation: false,
        };
        SpanPolicy::default().evaluate_cut(w, MediaTime(8000), end, None, cues, |_| ctx)
    }

    #[test]
    fn a_looping_decode_does_not_turn_the_answer_into_a_question() {
        // "My member ID is K, 5 …" then Whisper's echo of the opening words: the echoed
        // keyword is not the last ask, so the answer after "is" stays an answer.
        let w = scored(&[
            ("My", 0.6),
            ("member", 0.8),
            ("I", 0.7),
            ("need", 0.5),
            ("is", 0.6),
            ("Canadian", 0.1),
            ("King,", 0.6),
            ("so", 0.9),
            ("5,", 0.3),
            ("My", 0.9),
            ("member", 0.9),
            ("I", 0.9),
            ("need", 0.9),
        ]);
        let v = eval(&w, true);
        assert!(muted(&v, 5) && muted(&v, 6) && muted(&v, 7), "{v:?}");
        assert_eq!(
            repetition_start(&|i| ["a", "b", "c", "a", "b", "c"][i], 6),
            3
        );
        assert_eq!(repetition_start(&|i| ["a", "b", "c", "d"][i], 4), 4);
    }

    #[test]
    fn a_question_in_an_open_context_mutes_nothing() {
        // The agent's next question, misheard ("can I get the cart and we're clean?"), after
        // an answer whose context is still open.
        let w = scored(&[
            ("Can", 0.6),
            ("I", 0.6),
            ("get", 0.9),
            ("to", 0.5),
            ("the", 0.7),
            ("cart", 0.5),
            ("and", 0.3),
            ("clean?", 0.2),
        ]);
        assert!(eval(&w, true).spans.is_empty());
        // "Please enter your BIN."
        let w = scored(&[
            ("Please", 0.2),
            ("enter", 0.6),
            ("your", 0.9),
            ("BIN.", 0.3),
        ]);
        assert!(eval(&w, true).spans.is_empty());
        // A question with a number in it is still judged word by word.
        let w = scored(&[("Is", 0.6), ("it", 0.6), ("4532?", 0.9)]);
        assert!(muted(&eval(&w, true), 2));
    }

    #[test]
    fn a_lead_in_heard_alone_is_not_the_answer() {
        // "the last four of my social are", misheard with no number: nothing muted.
        let w = scored(&[
            ("The", 0.8),
            ("last", 0.9),
            ("fall", 0.7),
            ("of", 0.9),
            ("my", 0.9),
            ("own", 0.8),
            ("shoulder.", 0.7),
        ]);
        assert!(eval(&w, true).spans.is_empty());
        // Garbled (words below low_confidence) inside an open context, the same turn may be
        // the answer itself: muted (fail closed). Outside a context it is released.
        let mut garbled = w.clone();
        garbled[0].confidence = Some(0.1);
        garbled[5].confidence = Some(0.5);
        assert!(!eval(&garbled, true).spans.is_empty());
        assert!(eval(&garbled, false).spans.is_empty());
        // The tail of a force-cut answer is judged as an answer.
        let end = MediaTime(8000 + w.len() as u64 * 3200 + 800);
        let cues = SegmentCues {
            pauses: &[],
            continuation: true,
        };
        let v =
            SpanPolicy::default()
                .evaluate_cut(&garbled, MediaTime(8000), end, None, cues, |_| true);
        assert!(muted(&v, 0) && muted(&v, 5), "{v:?}");
        // Words after a terminator may be the digits, misheard: still an answer; the
        // lead-in up to the terminator stays audible.
        let w = scored(&[
            ("but", 0.2),
            ("the", 0.2),
            ("jury", 0.1),
            ("called", 0.1),
            ("on", 0.8),
            ("the", 0.9),
            ("back", 0.3),
            ("is", 0.5),
            ("not", 0.6),
            ("a", 0.1),
            ("late", 0.8),
        ]);
        let v = eval(&w, true);
        assert!(muted(&v, 8) && muted(&v, 9), "{v:?}");
        assert!(!muted(&v, 2) && !muted(&v, 5), "{v:?}");
    }

    #[test]
    fn the_word_before_an_answers_first_number_is_its_misheard_start() {
        // Context open; "my date of birth is | oh two, one …" heard "… is so too, one time".
        let w = scored(&[
            ("My", 0.4),
            ("gay", 0.2),
            ("talk", 0.5),
            ("is", 0.3),
            ("so", 0.9),
            ("too,", 0.4),
            ("one", 0.8),
            ("time.", 0.9),
        ]);
        let v = eval(&w, true);
        // Muted from before "so" starts (not only from the padding before "too").
        assert!(v.spans[0].0 <= MediaTime(8000 + 4 * 3200), "{v:?}");
        assert!(muted(&v, 5) && muted(&v, 6), "{v:?}");
        assert!(!muted(&v, 1) && !muted(&v, 2), "{v:?}");
    }

    #[test]
    fn the_last_four_of_names_the_identifier() {
        // In context: "the last 4 on my own shall are 8 4 3 1" (…of my social are …).
        let w = scored(&[
            ("The", 0.3),
            ("last", 0.7),
            ("4", 0.4),
            ("on", 0.4),
            ("my", 0.9),
            ("own", 0.2),
            ("shall", 0.3),
            ("are", 0.7),
            ("8", 0.8),
            ("4", 0.5),
            ("3", 0.9),
            ("1.", 0.8),
        ]);
        let v = eval(&w, true);
        assert!((0..=5).all(|i| !muted(&v, i)), "{v:?}");
        assert!((8..=11).all(|i| muted(&v, i)), "{v:?}");
    }

    #[test]
    fn an_elliptical_follow_up_asks() {
        // "And your date of birth?" heard as "and your Nathan": still an ask.
        let w = scored(&[("and", 0.5), ("your", 0.8), ("Nathan", 0.1)]);
        let v = eval(&w, false);
        assert_eq!(v.ask, Some(MediaTime(8000)));
        assert!(v.spans.is_empty());
        // Longer turns or numbers: not this rule.
        let w = scored(&[("and", 0.5), ("the", 0.8), ("5", 0.9)]);
        assert_eq!(eval(&w, false).ask, None);
    }

    #[test]
    fn an_answer_starts_at_the_pause_before_its_first_number() {
        // In context: "okay the number is | 4 9 …", the lead-in misheard but heard clearly
        // enough to be trusted.
        let w = scored(&[
            ("Okay,", 0.5),
            ("let's", 0.4),
            ("hum,", 0.35),
            ("maybe", 0.6),
            ("49", 0.5),
            ("92", 0.9),
        ]);
        // Without a pause the widening reaches back over the lead-in.
        assert!(muted(&eval(&w, true), 1));
        // A 150 ms pause just before "49" (word 4 starts at 12800 samples).
        let v = eval_with_pauses(&w, true, &[(11_400, 12_600)]);
        assert!(!muted(&v, 0) && !muted(&v, 1) && !muted(&v, 2), "{v:?}");
        assert!(muted(&v, 4) && muted(&v, 5), "{v:?}");
        assert_eq!(v.spans[0].0, MediaTime(8000 + 11_400));
        // Only the first pause counts: a later one (inside a misheard first group) does not
        // move the start past it.
        let v = eval_with_pauses(&w, true, &[(4_000, 4_800), (11_400, 12_600)]);
        assert!(muted(&v, 2) && muted(&v, 3), "{v:?}");
        // A pause before the first word's start + 200 ms is the turn's onset, not a lead-in.
        let v = eval_with_pauses(&w, true, &[(0, 1_000)]);
        assert!(muted(&v, 1));
        // The pause after a turn-opening "okay," is not the end of the lead-in: the next one is.
        let v = eval_with_pauses(&w, true, &[(2_500, 3_100), (11_400, 12_600)]);
        assert_eq!(v.spans[0].0, MediaTime(8000 + 11_400), "{v:?}");
        // … unless the number follows at once ("okay, | so 49 …").
        let w2 = scored(&[("Okay,", 0.5), ("so", 0.4), ("49", 0.5), ("92", 0.9)]);
        let v = eval_with_pauses(&w2, true, &[(2_500, 3_100)]);
        assert_eq!(v.spans[0].0, MediaTime(8000 + 2_500), "{v:?}");
        // A garbled lead-in (a word below the trust confidence) may hold the first digits:
        // the pause is not trusted and the lead-in is muted with the answer (fail closed).
        let mut garbled = w.clone();
        garbled[2].confidence = Some(0.1);
        let v = eval_with_pauses(&garbled, true, &[(11_400, 12_600)]);
        assert!(muted(&v, 1) && muted(&v, 2), "{v:?}");
    }

    #[test]
    fn question_words_are_not_an_answer() {
        // The agent's question: an earlier context does not mute its garbled words.
        let w = scored(&[
            ("Please", 0.2),
            ("enter", 0.9),
            ("your", 0.9),
            ("account", 0.9),
            ("and", 0.3),
            ("follow", 0.9),
            ("by", 0.3),
        ]);
        let v = eval(&w, true);
        assert!(v.spans.is_empty(), "{v:?}");
        assert_eq!(v.ask, Some(MediaTime(8000 + 3 * 3200)));
        // A caller's lead-in ends at "is": what follows is the answer, garbled or not.
        let w = scored(&[
            ("the", 0.9),
            ("security", 0.9),
            ("code", 0.9),
            ("on", 0.9),
            ("the", 0.9),
            ("back", 0.9),
            ("is", 0.9),
            ("market", 0.5),
            ("him", 0.3),
        ]);
        let v = eval(&w, false);
        assert!(!muted(&v, 2) && muted(&v, 7) && muted(&v, 8), "{v:?}");
    }

    #[test]
    fn an_answers_lead_in_stays_audible() {
        // In context (the question came in an earlier segment): "I am going on December 23".
        let w = scored(&[
            ("I", 0.1),
            ("am", 0.2),
            ("going", 0.1),
            ("on", 0.8),
            ("December", 0.6),
            ("23,", 0.6),
            ("1758.", 0.3),
        ]);
        let v = eval(&w, true);
        assert!(v.spans[0].0 > MediaTime(8000 + 2 * 3200 + 2400), "{v:?}");
        assert!((4..7).all(|i| muted(&v, i)), "{v:?}");
    }

    #[test]
    fn my_keyword_inside_an_answer_keeps_the_answer() {
        // Answering an earlier ask: "but that's what my social ado either three".
        let w = scored(&[
            ("that's", 0.6),
            ("my", 0.4),
            ("social", 0.3),
            ("ado", 0.1),
            ("either", 0.1),
            ("three", 0.5),
        ]);
        let v = eval(&w, true);
        assert!((3..6).all(|i| muted(&v, i)), "{v:?}");
        // Not answering: the rest of the segment is not taken for an answer.
        let v = eval(&w, false);
        assert!(!muted(&v, 3), "{v:?}");
    }

    #[test]
    fn several_numbers_make_an_answer() {
        // "So fine. 22. 10.": the misheard words around the numbers go too.
        let w = scored(&[
            ("okay", 0.95),
            ("so", 0.5),
            ("fine.", 0.5),
            ("22.", 0.8),
            ("10.", 0.2),
        ]);
        let v = eval(&w, false);
        assert!(v.spans[0].0 > MediaTime(8000), "{v:?}");
        assert!((1..5).all(|i| muted(&v, i)), "{v:?}");
        // One long digit group is an answer on its own: muted through the segment end.
        let w = scored(&[("29340", 0.8), ("okay", 0.9)]);
        let v = eval(&w, false);
        assert_eq!(
            v.spans.last().map(|s| s.1),
            Some(MediaTime(8000 + 2 * 3200 + 800))
        );
        // A single count is not.
        let w = scored(&[("I", 0.9), ("got", 0.9), ("one", 0.9), ("yesterday", 0.5)]);
        assert!(!muted(&eval(&w, false), 3));
    }

    #[test]
    fn homophones_count_next_to_numbers_only() {
        assert!(spans("I waited for my order", false).is_empty());
        let w = scored(&[
            ("free", 0.9),
            ("4", 0.9),
            ("hello", 0.9),
            ("there", 0.9),
            ("now", 0.9),
        ]);
        assert!(muted(&eval(&w, false), 0));
        // Next to a number they count towards an answer: "so free, one fine, I've".
        let w = scored(&[
            ("so", 0.7),
            ("free,", 0.4),
            ("one", 0.8),
            ("fine,", 0.9),
            ("I've", 0.5),
        ]);
        let v = eval(&w, false);
        assert!((0..5).all(|i| muted(&v, i)), "{v:?}");
    }

    #[test]
    fn harmless_counts_stay() {
        for t in [
            "I called two times last week",
            "It was about a hundred dollars.",
            "Thank you, one moment while I look that up.",
            "The refund should arrive in five to seven business days.",
            "I ordered three of them",
            "Sure, give me one second.",
            "Your call is number three in the queue.",
            "I waited 20 minutes",
            "it was $100 total",
            "oh okay",
        ] {
            assert!(spans(t, false).is_empty(), "{t}");
        }
    }

    #[test]
    fn everyday_numbers_stay() {
        // Positions, places, times of day and ranges of them, amounts split by the
        // recognizer's word timing, and identifier lengths: none is an identifier.
        for t in [
            "We are on the third floor of the building.",
            "This is my second call about it.",
            "She was the fifth person in line.",
            "We stayed in room 204 last year.",
            "Go to gate twelve please.",
            "The delivery is at 7:45 tomorrow.",
            "Can it come at 745 tomorrow?",
            "I'll be home after five today.",
            "It should come between nine and one.",
            "They open from 8 to 5.",
            "The clinic opens at eight thirty.",
            "It was $3 .50 for the stamp.",
            "What's the 16 -digit number on the front?",
            "Type your four digit PIN.",
        ] {
            assert!(spans(t, false).is_empty(), "{t}");
        }
    }

    #[test]
    fn everyday_number_rules_do_not_reach_identifiers() {
        // Each of these holds an identifier (or part of one) next to the words above.
        for t in [
            "I was born on the third of May.",
            "the twenty-first, nineteen eighty",
            "call me at five five five one two one two",
            "call me at 555 1234",
            "room 20451 is my member number",
            "from 8 to 5 5 5 1 2",
            "It was $3 .50 4 5 3 2",
        ] {
            assert!(!spans(t, false).is_empty(), "{t}");
        }
        // Inside an ask context nothing is harmless.
        for t in [
            "the third floor",
            "at 7:45 tomorrow",
            "room 204",
            "between nine and one",
        ] {
            assert!(!spans(t, true).is_empty(), "{t}");
        }
    }

    #[test]
    fn a_dangling_copula_announces_the_next_turn() {
        let ann = |t: &str| {
            let w = words(t);
            let end = MediaTime(8000 + w.len() as u64 * 3200 + 800);
            SpanPolicy::default()
                .evaluate(&w, MediaTime(8000), end, |_| false)
                .announces
        };
        for t in [
            "Okay, it's",
            "Yes, so it's...",
            "That would be",
            "the number on it is",
        ] {
            assert!(ann(t).is_some(), "{t}");
        }
        for t in [
            "What is it?",
            "Is that right?",
            "it's 4532",
            "I think so.",
            "Where is?",
        ] {
            assert!(ann(t).is_none(), "{t}");
        }
    }

    #[test]
    fn only_muted_numbers_answer_an_ask() {
        // Garbled words muted in a context are not evidence of an answer; digits are.
        let garbled = scored(&[("I'm", 0.2), ("in,", 0.2), ("okay.", 0.4)]);
        let v = eval(&garbled, true);
        assert!(!v.spans.is_empty() && !v.numbers, "{v:?}");
        let digits = scored(&[("it's", 0.9), ("4532", 0.9)]);
        assert!(eval(&digits, true).numbers);
    }

    #[test]
    fn continuation_pieces_join_their_token() {
        let w = words("It was $3 .50 and 16 -digit");
        let j = join_continuations(&w);
        let texts: Vec<&str> = j.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["It", "was", "$3.50", "and", "16-digit"]);
        assert_eq!(j[2].start, w[2].start);
        assert_eq!(j[2].end, w[3].end);
        // A lone mark or an ordinary word is not a continuation.
        assert!(!is_continuation(&words("-")[0]));
        assert!(!is_continuation(&words("oh")[0]));
    }

    #[test]
    fn ask_context_turns_exceptions_off() {
        assert!(!spans("I called two times", true).is_empty());
    }

    #[test]
    fn numbers_are_muted_and_padded() {
        let s = spans("my code is eight four eight", false);
        assert_eq!(s.len(), 1);
        // "my code is" holds a keyword ("code"), so the context covers up to "is".
        assert!(s[0].0 .0 <= 8000 + 3 * 3200 + 2400);
        assert!(s[0].1 .0 >= 8000 + 5 * 3200 + 2400 + 1200);
    }
}
