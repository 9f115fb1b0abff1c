//! Spoken-identifier masking: token classes, the span policy on dev-corpus texts, context
//! widening, padding/merging, and fail-closed behaviour end to end through `MaskPipeline`
//! with a `FakeRecognizer`. No model needed.

use dsp::mask::{MaskConfig, MaskPipeline, MaskReason, PipelineStats};
use dsp::spoken::{
    classify, exchange, FakeRecognizer, PolicyConfig, SpanPolicy, SpeechConfig, SpeechMasker,
    SpeechStats, TokenClass, Word,
};
use dsp::MediaTime;

const MS: u64 = 8;

/// Word end times run this late in the embedded recognizer (measured).
const LATE_END_MS: u64 = 240;

/// Words of `text` spread over `[start_ms, end_ms)` by character count, ends `LATE_END_MS`
/// late; times absolute (8 kHz samples). With `digits`, runs of number words become one digit
/// token per word group, as Whisper writes them ("4992").
fn place(text: &str, start_ms: u64, end_ms: u64, digits: bool) -> Vec<Word> {
    let mut toks: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if digits {
        let mut out: Vec<String> = Vec::new();
        let mut run = String::new();
        for t in toks {
            let c = classify(&t);
            let numeric = matches!(c, TokenClass::NumberWord | TokenClass::WeakNumber);
            if numeric {
                let d = [
                    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                ]
                .iter()
                .position(|&n| t.trim_end_matches(',') == n)
                .map_or('7', |d| char::from(b'0' + d as u8));
                run.push(if t == "oh" { '0' } else { d });
                if t.ends_with(',') {
                    out.push(format!("{run},"));
                    run.clear();
                }
            } else {
                if !run.is_empty() {
                    out.push(std::mem::take(&mut run));
                }
                out.push(t);
            }
        }
        if !run.is_empty() {
            out.push(run);
        }
        toks = out;
    }
    let total: usize = toks.iter().map(|t| t.len() + 1).sum();
    let span = (end_ms - start_ms) * MS;
    let mut at = 0usize;
    toks.into_iter()
        .map(|t| {
            let s = start_ms * MS + span * at as u64 / total as u64;
            at += t.len() + 1;
            let e = start_ms * MS + span * (at - 1) as u64 / total as u64;
            Word {
                text: t,
                start: MediaTime(s),
                end: MediaTime(e + LATE_END_MS * MS),
                confidence: None,
            }
        })
        .collect()
}

/// Shift absolute words to offsets from `seg`.
fn offsets(words: &[Word], seg: u64) -> Vec<Word> {
    words
        .iter()
        .map(|w| Word {
            text: w.text.clone(),
            start: MediaTime(w.start.0 - seg),
            end: MediaTime(w.end.0 - seg),
            confidence: None,
        })
        .collect()
}

/// Muted ms of `[s, e)` (ms) under `spans` (samples), and the longest unmuted stretch (ms).
fn coverage(spans: &[(MediaTime, MediaTime)], s_ms: u64, e_ms: u64) -> (u64, u64) {
    let (mut muted, mut run, mut longest) = (0, 0, 0);
    for ms in s_ms..e_ms {
        let t = ms * MS;
        if spans.iter().any(|&(a, b)| a.0 <= t && t < b.0) {
            muted += 1;
            run = 0;
        } else {
            run += 1;
            longest = longest.max(run);
        }
    }
    (muted, longest)
}

fn policy_spans(
    text: &str,
    s_ms: u64,
    e_ms: u64,
    digits: bool,
    ctx: bool,
) -> Vec<(MediaTime, MediaTime)> {
    let w = place(text, s_ms, e_ms, digits);
    let seg = (s_ms.saturating_sub(200)) * MS;
    let end = (e_ms + 300) * MS;
    SpanPolicy::default()
        .evaluate(&offsets(&w, seg), MediaTime(seg), MediaTime(end), |_| ctx)
        .spans
}

#[test]
fn token_classification_table() {
    use TokenClass::*;
    let table = [
        ("4532", Digits),
        ("4532,", Digits),
        ("3rd", Digits),
        ("21st", Digits),
        ("555-1234", Digits),
        ("zero", NumberWord),
        ("Nine.", NumberWord),
        ("fifteen", NumberWord),
        ("ninety", NumberWord),
        ("hundred", NumberWord),
        ("thousand", NumberWord),
        ("double", NumberWord),
        ("triple", NumberWord),
        ("twenty-two", NumberWord),
        ("oh", WeakNumber),
        ("Oh,", WeakNumber),
        ("third", Ordinal),
        ("twelfth", Ordinal),
        ("thirty-first", Ordinal),
        ("twenty-second", Ordinal),
        ("first", WeakOrdinal),
        ("second", WeakOrdinal),
        ("December", Month),
        ("june,", Month),
        ("May", WeakMonth),
        ("K", Letter),
        ("I", Plain),
        ("card", Plain),
        ("often", Plain),
        ("someone", Plain),
    ];
    for (t, c) in table {
        assert_eq!(classify(t), c, "{t}");
    }
    // "oh" and "double" in readings, "first" after a month: muted without any context.
    for text in [
        "oh five",
        "double five",
        "March first",
        "June twenty twenty six",
        "B, six four",
    ] {
        assert!(
            !policy_spans(text, 1000, 2500, false, false).is_empty(),
            "{text}"
        );
    }
    // ... and alone they are ordinary words.
    for text in ["oh okay I see", "first of all", "may I ask"] {
        assert!(
            policy_spans(text, 1000, 2500, false, false).is_empty(),
            "{text}"
        );
    }
}

#[test]
fn harmless_numbers_stay_audible() {
    for text in [
        "I called two times last week and nobody called me back.",
        "It was about a hundred dollars.",
        "Thank you, one moment while I look that up.",
        "Sure, give me one second.",
        "I have been waiting for about twenty minutes.",
        "The refund should arrive in five to seven business days.",
        "Your call is number three in the queue.",
        "Just the last four of the social, please.",
        "I waited 20 minutes",
        "it was about $100",
    ] {
        for digits in [false, true] {
            let s = policy_spans(text, 1000, 4000, digits, false);
            assert!(s.is_empty(), "{text} (digits {digits}) masked");
        }
        // In an ask context nothing is harmless.
        if text.contains("two times") {
            assert!(!policy_spans(text, 1000, 4000, false, true).is_empty());
        }
    }
}

#[test]
fn padding_and_merging() {
    let p = SpanPolicy::new(PolicyConfig::default());
    let w = |t: &str, s: u64, e: u64| Word {
        text: t.into(),
        start: MediaTime(s * MS),
        end: MediaTime(e * MS),
        confidence: None,
    };
    // One number word at 1000–1300 ms in a segment starting at 10 s.
    let v = p.evaluate(
        &[
            w("well", 500, 800),
            w("seven", 1000, 1300),
            w("then", 2500, 2700),
        ],
        MediaTime(80_000),
        MediaTime(80_000 + 3000 * MS),
        |_| false,
    );
    assert_eq!(
        v.spans,
        vec![(MediaTime(80_000 + 700 * MS), MediaTime(80_000 + 1450 * MS))]
    );
    // Two numbers 300 ms apart merge (padded gap < 400 ms); 1.5 s apart they do not (with
    // the answer rule off: three numbers in one segment would make it an answer).
    let p = SpanPolicy::new(PolicyConfig {
        answer_numbers: 0,
        ..PolicyConfig::default()
    });
    let v = p.evaluate(
        &[
            w("seven", 1000, 1300),
            w("nine", 1600, 1900),
            w("okay", 2000, 2400),
            w("four", 3400, 3700),
        ],
        MediaTime(0),
        MediaTime(4000 * MS),
        |_| false,
    );
    assert_eq!(v.spans.len(), 2, "{:?}", v.spans);
    assert_eq!(v.spans[0], (MediaTime(700 * MS), MediaTime(2050 * MS)));
    assert_eq!(v.spans[1], (MediaTime(3100 * MS), MediaTime(3850 * MS)));
    // Configurable padding.
    let p = SpanPolicy::new(PolicyConfig {
        pad_before_ms: 100,
        pad_after_ms: 50,
        ..PolicyConfig::default()
    });
    let v = p.evaluate(
        &[w("7", 1000, 1300)],
        MediaTime(0),
        MediaTime(2000 * MS),
        |_| false,
    );
    assert_eq!(v.spans, vec![(MediaTime(900 * MS), MediaTime(1350 * MS))]);
}

#[test]
fn every_corpus_identifier_is_covered_and_speech_mostly_is_not() {
    let (mut ids, mut leaks) = (0, 0);
    let (mut speech_ms, mut over_ms, mut over_utts, mut speech_utts) = (0u64, 0u64, 0, 0);
    for digits in [false, true] {
        for &(_call, is_id, _agent, s, e, text) in CORPUS {
            let (s, e) = (u64::from(s), u64::from(e));
            // No context: the identifier must be covered on its words alone.
            let spans = policy_spans(text, s, e, digits, false);
            let (muted, longest) = coverage(&spans, s, e);
            if is_id {
                ids += 1;
                if longest >= 100 {
                    leaks += 1;
                    println!(
                        "LEAK ({}): {text:?} muted {muted}/{} ms",
                        if digits { "digits" } else { "words" },
                        e - s
                    );
                }
            } else {
                speech_utts += 1;
                speech_ms += e - s;
                over_ms += muted;
                if muted > 0 {
                    over_utts += 1;
                }
            }
        }
    }
    println!(
        "policy on corpus texts (no context, words + digit forms): spoken ids leaked {leaks}/{ids}; \
         speech over-masked {over_ms}/{speech_ms} ms = {:.2} % ({over_utts}/{speech_utts} utterances touched)",
        100.0 * over_ms as f64 / speech_ms as f64
    );
    assert_eq!(leaks, 0);
    assert!(over_ms * 100 <= speech_ms * 3, "over-masking above 3 %");
}

// ---------------------------------------------------------------------------------------------
// End to end: audio → SpeechMasker (+ FakeRecognizer on a simulated worker) → MaskPipeline.

/// Synthetic 8 kHz audio: faint noise, and a voiced buzz over each `[start_ms, end_ms)`.
fn audio(total_ms: u64, utterances: &[(u64, u64)]) -> Vec<i16> {
    let mut rng = 0x1234_5678u32;
    (0..total_ms * MS)
        .map(|i| {
            rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = ((rng >> 28) as i16) - 8;
            let t = i / MS;
            if utterances.iter().any(|&(s, e)| s <= t && t < e) {
                // A glottal-like buzz: 140 Hz with its harmonics falling off as 1/h (a few
                // sinusoids would be taken for a tone by the masker's tonal guard).
                let x = i as f32 / 8000.0 * std::f32::consts::TAU;
                ((1..=20)
                    .map(|h| (x * 140.0 * h as f32).sin() / h as f32)
                    .sum::<f32>()
                    * 2000.0) as i16
                    + noise
            } else {
                noise
            }
        })
        .collect()
}

struct Leg {
    sm: SpeechMasker,
    pipe: MaskPipeline,
    rec: FakeRecognizer,
    inflight: Vec<(
        u64,
        dsp::spoken::JobId,
        Result<Vec<Word>, dsp::spoken::RecognizerError>,
    )>,
    out: Vec<i16>,
}

impl Leg {
    fn new(lookahead_ms: u32, rec: FakeRecognizer) -> Leg {
        Leg {
            sm: SpeechMasker::new(SpeechConfig::for_lookahead_ms(lookahead_ms)).expect("valid"),
            pipe: MaskPipeline::new(MaskConfig {
                lookahead_ms,
                inband_dtmf: false,
                ..MaskConfig::default()
            }),
            rec,
            inflight: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Push a frame and run the simulated worker (jobs answer after the fake's delay).
    fn step(&mut self, frame: &[i16]) {
        self.sm.push(frame);
        let now = self.sm.input_time().0;
        while let Some(job) = self.sm.take_job() {
            let r = job.run(&mut self.rec);
            if let Some(d) = self.rec.last_delay_ms() {
                self.inflight.push((now + u64::from(d) * MS, job.id, r));
            }
        }
        let mut k = 0;
        while k < self.inflight.len() {
            if self.inflight[k].0 <= now {
                let (_, id, r) = self.inflight.remove(k);
                self.sm.complete(id, r);
            } else {
                k += 1;
            }
        }
    }

    /// Apply marks and the undecided point, then render the frame.
    fn render(&mut self, frame: &[i16]) {
        while let Some((s, e)) = self.sm.poll_marks() {
            self.pipe.mark(MaskReason::SpokenId, s, e);
        }
        self.pipe.set_undecided_from(self.sm.undecided_from());
        let mut out = vec![0i16; frame.len()];
        self.pipe.process(frame, &mut out);
        self.out.extend_from_slice(&out);
    }

    /// Output aligned with the input (the look-ahead delay removed).
    fn aligned(&self) -> &[i16] {
        &self.out[self.pipe.delay_samples() as usize..]
    }

    fn stats(&self) -> (SpeechStats, PipelineStats) {
        (self.sm.stats(), self.pipe.stats())
    }
}

/// Run one leg over `input` (plus the look-ahead of silence to flush).
fn run_one(leg: &mut Leg, input: &[i16]) {
    let pad = vec![0i16; leg.pipe.delay_samples() as usize + 160];
    for frame in input.chunks(160).chain(pad.chunks(160)) {
        leg.step(frame);
        leg.render(frame);
    }
}

/// Run two legs of a call together, exchanging context every frame.
fn run_two(a: &mut Leg, b: &mut Leg, ia: &[i16], ib: &[i16]) {
    let d = a.pipe.delay_samples() as usize + 160;
    let n = ia.len().max(ib.len()) + d;
    let zero = [0i16; 160];
    for at in (0..n).step_by(160) {
        let fa = ia.get(at..at + 160).unwrap_or(&zero);
        let fb = ib.get(at..at + 160).unwrap_or(&zero);
        a.step(fa);
        b.step(fb);
        exchange(&mut a.sm, &mut b.sm);
        a.render(fa);
        b.render(fb);
    }
}

/// Per ms of `[s_ms, e_ms)`: muted (all 8 output samples zero while the input is not).
fn muted_ms(input: &[i16], out: &[i16], s_ms: u64, e_ms: u64) -> (u64, u64) {
    let (mut muted, mut run, mut longest) = (0, 0, 0);
    for ms in s_ms..e_ms {
        let r = (ms * MS) as usize..((ms + 1) * MS) as usize;
        let m = out[r.clone()].iter().all(|&x| x == 0) && input[r].iter().any(|&x| x.abs() > 100);
        if m {
            muted += 1;
            run = 0;
        } else {
            run += 1;
            longest = longest.max(run);
        }
    }
    (muted, longest)
}

fn timeline(text: &str, s: u64, e: u64) -> FakeRecognizer {
    FakeRecognizer::timeline(place(text, s, e, false))
}

#[test]
fn fail_closed_never_completed_job_mutes_the_segment() {
    let input = audio(5000, &[(1000, 2000)]);
    let rec = timeline("I called two times", 1000, 2000).delays_ms(vec![None, None, None]);
    let mut leg = Leg::new(2000, rec);
    run_one(&mut leg, &input);
    let (m, longest) = muted_ms(&input, leg.aligned(), 1000, 2000);
    assert_eq!((m, longest), (1000, 0), "whole utterance muted");
    let (ss, ps) = leg.stats();
    assert!(ss.expired >= 1, "{ss:?}");
    assert!(ps.fail_closed_samples >= 8000, "{ps:?}");
    assert_eq!(ps.late_samples, 0);
    // Silence after it passes again.
    assert!(leg.aligned()[3000 * 8..4000 * 8].iter().any(|&x| x != 0));
}

#[test]
fn fail_closed_recognizer_error_mutes_and_counts() {
    let input = audio(5000, &[(1000, 2000)]);
    let rec = timeline("I called two times", 1000, 2000).failing_calls(vec![0, 1, 2]);
    let mut leg = Leg::new(2000, rec);
    run_one(&mut leg, &input);
    let (m, _) = muted_ms(&input, leg.aligned(), 1000, 2000);
    assert_eq!(m, 1000);
    let (ss, ps) = leg.stats();
    assert!(ss.errors >= 1, "{ss:?}");
    assert_eq!(ps.late_samples, 0);
}

#[test]
fn fail_closed_late_result_is_dropped_and_muted() {
    let input = audio(6000, &[(1000, 2000)]);
    let rec = timeline("I called two times", 1000, 2000).delays_ms(vec![Some(3000); 3]);
    let mut leg = Leg::new(2000, rec);
    run_one(&mut leg, &input);
    let (m, _) = muted_ms(&input, leg.aligned(), 1000, 2000);
    assert_eq!(m, 1000);
    let (ss, ps) = leg.stats();
    assert!(ss.late_results >= 1, "{ss:?}");
    assert!(ps.fail_closed_samples >= 8000);
    assert_eq!(ps.late_samples, 0, "nothing marked after it left");
}

#[test]
fn on_time_results_mute_only_the_numbers() {
    // Control: harmless speech answered in time stays audible.
    let input = audio(5000, &[(1000, 2000)]);
    let mut leg = Leg::new(
        2000,
        timeline("I called two times", 1000, 2000).delays_ms(vec![Some(500); 3]),
    );
    run_one(&mut leg, &input);
    assert_eq!(muted_ms(&input, leg.aligned(), 1000, 2000).0, 0);
    assert_eq!(leg.stats().1.fail_closed_samples, 0);
    // A CVV inside plain words: the CVV muted, the words before it audible.
    let input = audio(6000, &[(1000, 3000)]);
    let text = "well I think it is eight four eight";
    let mut leg = Leg::new(
        2000,
        timeline(text, 1000, 3000).delays_ms(vec![Some(400); 4]),
    );
    run_one(&mut leg, &input);
    let words = place(text, 1000, 3000, false);
    let cvv = words[5].start.0 / MS;
    let (m, longest) = muted_ms(&input, leg.aligned(), cvv, 3000);
    assert_eq!(longest, 0, "cvv muted ({m} ms)");
    assert_eq!(
        muted_ms(&input, leg.aligned(), 1000, 1500).0,
        0,
        "leading words audible"
    );
    assert_eq!(leg.stats().1.late_samples, 0);
}

#[test]
fn agent_ask_widens_the_callers_next_turn() {
    let answer = "I called two times";
    let run = |agent_text: &str| {
        let ia = audio(9000, &[(1000, 3000)]);
        let ib = audio(9000, &[(3500, 5000)]);
        let mut a = Leg::new(
            2000,
            timeline(agent_text, 1000, 3000).delays_ms(vec![Some(300); 8]),
        );
        let mut b = Leg::new(
            2000,
            timeline(answer, 3500, 5000).delays_ms(vec![Some(300); 8]),
        );
        run_two(&mut a, &mut b, &ia, &ib);
        (
            muted_ms(&ib, b.aligned(), 3500, 5000).0,
            b.stats().1.late_samples,
        )
    };
    let (plain, late) = run("Is there anything else I can help you with?");
    assert_eq!((plain, late), (0, 0), "no ask: harmless count audible");
    let (asked, late) = run("Can I get the card number please?");
    assert!(asked > 400, "ask context: the count is muted ({asked} ms)");
    assert_eq!(late, 0);
}

#[test]
fn ask_context_ends_when_the_agent_takes_the_turn_back() {
    // agent asks, caller answers, agent talks, caller then says a harmless count: audible.
    let ia = audio(16_000, &[(1000, 2500), (6000, 8000)]);
    let ib = audio(16_000, &[(3000, 5000), (9000, 10_500)]);
    let mut agent_words = place("And your date of birth?", 1000, 2500, false);
    agent_words.extend(place(
        "Thanks, let me check that for you.",
        6000,
        8000,
        false,
    ));
    let mut caller_words = place("December fourth, nineteen eighty nine", 3000, 5000, false);
    caller_words.extend(place("I called two times", 9000, 10_500, false));
    let mut a = Leg::new(2000, FakeRecognizer::timeline(agent_words));
    let mut b = Leg::new(2000, FakeRecognizer::timeline(caller_words));
    run_two(&mut a, &mut b, &ia, &ib);
    let (dob, longest) = muted_ms(&ib, b.aligned(), 3000, 5000);
    assert_eq!(longest, 0, "dob muted ({dob} ms)");
    assert_eq!(muted_ms(&ib, b.aligned(), 9000, 10_500).0, 0);
}

/// Mono (both voices in one channel): one leg, the timeline holding every utterance, and its
/// input, not run yet.
fn mono_leg(lookahead_ms: u32, utts: &[(&str, u64, u64)], total_ms: u64) -> (Vec<i16>, Leg) {
    let input = audio(
        total_ms,
        &utts.iter().map(|u| (u.1, u.2)).collect::<Vec<_>>(),
    );
    let words: Vec<Word> = utts
        .iter()
        .flat_map(|&(t, s, e)| place(t, s, e, false))
        .collect();
    let leg = Leg::new(
        lookahead_ms,
        FakeRecognizer::timeline(words).delays_ms(vec![Some(300); 32]),
    );
    (input, leg)
}

/// [`mono_leg`], run.
fn mono(lookahead_ms: u32, utts: &[(&str, u64, u64)], total_ms: u64) -> (Vec<i16>, Leg) {
    let (input, mut leg) = mono_leg(lookahead_ms, utts, total_ms);
    run_one(&mut leg, &input);
    (input, leg)
}

#[test]
fn mono_ask_context_ends_when_answered() {
    // The answer is muted; the harmless count after it is not (its context was answered).
    let (input, leg) = mono(
        3000,
        &[
            ("Can I get the card number please?", 1000, 2500),
            ("four five six seven", 3500, 5000),
            ("I called two times", 6500, 8000),
        ],
        11_000,
    );
    assert_eq!(
        muted_ms(&input, leg.aligned(), 3500, 5000).1,
        0,
        "answer muted"
    );
    assert_eq!(
        muted_ms(&input, leg.aligned(), 6500, 8000).0,
        0,
        "count audible"
    );
}

#[test]
fn mono_read_back_opens_no_context_after_itself() {
    let (input, leg) = mono(
        3000,
        &[
            ("let me read that back, four three five seven", 1000, 3500),
            ("I called two times", 4500, 6000),
        ],
        9000,
    );
    let words = place(
        "let me read that back, four three five seven",
        1000,
        3500,
        false,
    );
    let digits = words[5].start.0 / MS;
    assert_eq!(
        muted_ms(&input, leg.aligned(), digits, 3500).1,
        0,
        "read-back muted"
    );
    assert_eq!(
        muted_ms(&input, leg.aligned(), 1000, 1400).0,
        0,
        "'let me' audible"
    );
    assert_eq!(
        muted_ms(&input, leg.aligned(), 4500, 6000).0,
        0,
        "count audible"
    );
}

#[test]
fn mono_ask_context_covers_two_segments_at_most() {
    let utts = [
        ("Can I get the card number please?", 1000, 2500),
        ("okay", 3500, 4000),
        ("hold on", 5000, 5500),
        ("I called two times", 6500, 8000),
    ];
    let (input, leg) = mono(3000, &utts, 11_000);
    assert_eq!(
        muted_ms(&input, leg.aligned(), 6500, 8000).0,
        0,
        "third segment audible"
    );
    // The same count as the first segment after the ask is in its context: muted.
    let (input, leg) = mono(3000, &[utts[0], ("I called two times", 3500, 5000)], 8000);
    assert!(muted_ms(&input, leg.aligned(), 3500, 5000).0 > 400);
}

#[test]
fn mono_keypad_answer_ends_the_ask_context() {
    // The caller keys the number in instead of saying it: the recognizer makes words of the
    // tones; the DTMF detector's onset (note_keypad) makes that segment the answer, so the
    // count in the next segment is not in the ask's context.
    let utts = [
        ("Can I get the card number please?", 1000, 2500),
        ("I'm not going to do it", 3500, 5000),
        ("I called two times", 6500, 8000),
    ];
    let run = |keypad: bool| {
        let (input, mut leg) = mono_leg(3000, &utts, 11_000);
        let pad = vec![0i16; leg.pipe.delay_samples() as usize + 160];
        for (i, frame) in input.chunks(160).chain(pad.chunks(160)).enumerate() {
            if keypad && i * 20 == 3600 {
                leg.sm.note_keypad(MediaTime(3600 * MS));
            }
            leg.step(frame);
            leg.render(frame);
        }
        muted_ms(&input, leg.aligned(), 6500, 8000).0
    };
    assert_eq!(run(true), 0, "count audible after a keypad answer");
    assert!(
        run(false) > 400,
        "without it the count is the awaited answer"
    );
}

/// Replays every corpus call (both legs, synthetic audio over the labelled times, a fake
/// recognizer answering with the label words after 400 ms) and scores the pipeline output.
fn replay_corpus(digits: bool, drop_every: usize) -> (usize, usize, u64, u64) {
    let (mut ids, mut leaks, mut speech_ms, mut over_ms) = (0, 0, 0u64, 0u64);
    let calls: Vec<u8> = {
        let mut c: Vec<u8> = CORPUS.iter().map(|r| r.0).collect();
        c.dedup();
        c
    };
    let mut counter = 0usize;
    for call in calls {
        let rows: Vec<_> = CORPUS.iter().filter(|r| r.0 == call).collect();
        let total = rows.iter().map(|r| u64::from(r.4)).max().unwrap_or(0) + 2000;
        let mut legs_in = Vec::new();
        let mut legs = Vec::new();
        for agent in [true, false] {
            let utt: Vec<(u64, u64)> = rows
                .iter()
                .filter(|r| r.2 == agent)
                .map(|r| (u64::from(r.3), u64::from(r.4)))
                .collect();
            let mut words = Vec::new();
            for r in rows.iter().filter(|r| r.2 == agent) {
                for w in place(r.5, u64::from(r.3), u64::from(r.4), digits) {
                    // simulated recall loss: drop every n-th numeric token
                    if drop_every > 0 && classify(&w.text) != TokenClass::Plain {
                        counter += 1;
                        if counter % drop_every == 0 {
                            continue;
                        }
                    }
                    words.push(w);
                }
            }
            legs_in.push(audio(total, &utt));
            let delays = vec![Some(400); 1000];
            legs.push(Leg::new(
                3000,
                FakeRecognizer::timeline(words).delays_ms(delays),
            ));
        }
        let (mut a, mut b) = {
            let mut it = legs.into_iter();
            (it.next().expect("agent"), it.next().expect("caller"))
        };
        run_two(&mut a, &mut b, &legs_in[0], &legs_in[1]);
        for r in &rows {
            let (input, out) = if r.2 {
                (&legs_in[0], a.aligned())
            } else {
                (&legs_in[1], b.aligned())
            };
            let (m, longest) = muted_ms(input, out, u64::from(r.3), u64::from(r.4));
            if r.1 {
                ids += 1;
                if longest >= 100 {
                    leaks += 1;
                    println!("  leak call {call}: {:?} longest audible {longest} ms", r.5);
                }
            } else {
                speech_ms += u64::from(r.4 - r.3);
                over_ms += m;
            }
        }
        assert_eq!(a.stats().1.late_samples + b.stats().1.late_samples, 0);
    }
    (ids, leaks, speech_ms, over_ms)
}

#[test]
fn corpus_replay_through_the_pipeline() {
    for (digits, drop_every, label) in [
        (false, 0, "words, perfect recall"),
        (true, 0, "digit tokens, perfect recall"),
        (
            false,
            4,
            "words, every 4th number token missed (recall 0.75)",
        ),
    ] {
        let (ids, leaks, speech_ms, over_ms) = replay_corpus(digits, drop_every);
        println!(
            "corpus replay ({label}, 3 s look-ahead, results after 400 ms): spoken ids leaked \
             {leaks}/{ids}; speech over-masked {over_ms}/{speech_ms} ms = {:.2} %",
            100.0 * over_ms as f64 / speech_ms as f64
        );
        if drop_every == 0 {
            // Acceptance target for the product is <= 2 of 61 with a real recognizer.
            assert!(leaks <= 1, "{leaks} leaks");
        }
        assert!(over_ms * 100 <= speech_ms * 10, "over-masking above 10 %");
    }
}

/// Dev-corpus labels (`/work/shared/eval/data/dev/call_*.json`), flattened:
/// (call, is spoken_id, agent speaker, start_ms, end_ms, text). Generated from the labels.
#[rustfmt::skip]
const CORPUS: &[(u8, bool, bool, u32, u32, &str)] = &[
    (0, false, true, 1012, 3332, "Is there anything else I can help you with?"),
    (0, false, false, 3994, 6724, "Hi, I'm calling about a charge on my statement."),
    (0, false, true, 7539, 13339, "Thank you for calling customer support, my name is Sarah, how can I help you today?"),
    (0, false, false, 13992, 15552, "It was about a hundred dollars."),
    (0, false, true, 16394, 19464, "Thank you, one moment while I look that up."),
    (0, false, false, 19941, 21851, "I'd like to update my billing address."),
    (0, false, true, 22202, 24522, "Is there anything else I can help you with?"),
    (0, false, false, 25074, 26604, "Sorry, could you repeat that?"),
    (0, false, true, 27050, 28870, "Let me pull up your account."),
    (0, false, false, 29683, 32413, "Hi, I'm calling about a charge on my statement."),
    (0, false, true, 33027, 36097, "Thank you, one moment while I look that up."),
    (0, false, false, 37083, 38643, "It was about a hundred dollars."),
    (0, false, true, 39436, 42926, "The refund should arrive in five to seven business days."),
    (0, false, false, 43582, 45122, "Sure, give me one second."),
    (0, false, true, 45492, 48562, "Thank you, one moment while I look that up."),
    (1, false, true, 832, 5862, "Thank you for calling customer support, my name is Sarah, how can I help you today?"),
    (1, false, false, 6826, 8696, "Sure, give me one second."),
    (1, false, false, 10676, 12546, "Sure, give me one second."),
    (1, false, false, 13909, 15779, "Sure, give me one second."),
    (1, false, false, 21115, 22955, "It was about a hundred dollars."),
    (1, false, false, 25288, 27158, "Sure, give me one second."),
    (1, false, false, 30082, 32772, "I have been waiting for about twenty minutes."),
    (1, false, false, 34929, 36769, "It was about a hundred dollars."),
    (1, false, false, 38727, 40987, "I'd like to update my billing address."),
    (1, false, false, 47182, 49872, "I have been waiting for about twenty minutes."),
    (2, false, true, 948, 6308, "Thank you for calling customer support, my name is Sarah, how can I help you today?"),
    (2, false, false, 7054, 8864, "It was about a hundred dollars."),
    (2, false, true, 9504, 12764, "Please enter your account number followed by the pound key."),
    (2, false, true, 15750, 19010, "Please enter your account number followed by the pound key."),
    (2, false, true, 23674, 26934, "Please enter your account number followed by the pound key."),
    (2, false, true, 29610, 32620, "Using your keypad, enter your card number now."),
    (2, false, true, 35995, 39005, "Using your keypad, enter your card number now."),
    (2, false, true, 42168, 45178, "Using your keypad, enter your card number now."),
    (2, false, true, 48099, 49559, "Please enter your PIN."),
    (2, false, true, 51218, 54228, "Using your keypad, enter your card number now."),
    (2, false, true, 58024, 59484, "Please enter your PIN."),
    (2, false, true, 62727, 64187, "Please enter your PIN."),
    (2, false, true, 67394, 68854, "Please enter your PIN."),
    (2, false, true, 71226, 74236, "Using your keypad, enter your card number now."),
    (2, false, true, 77128, 78588, "Please enter your PIN."),
    (3, false, true, 514, 2504, "I can certainly help you with that."),
    (3, false, false, 3203, 4853, "It was about a hundred dollars."),
    (3, false, true, 5698, 8808, "Please enter your account number followed by the pound key."),
    (3, false, false, 11908, 14288, "I ordered three of them but only got one."),
    (3, false, true, 14635, 17185, "Just the last four of the social, please."),
    (3, false, false, 17741, 19471, "the last four of my social are"),
    (3, true, false, 19704, 20974, "oh five sixty eight"),
    (3, false, true, 21611, 22811, "And your date of birth?"),
    (3, false, false, 23122, 24112, "I was born on"),
    (3, true, false, 24214, 27154, "zero eight, one two, nineteen ninety seven"),
    (3, false, true, 27471, 28751, "let me read that back,"),
    (3, true, true, 28839, 31139, "one nine nine seven oh eight one two"),
    (3, false, true, 31860, 34970, "Please enter your account number followed by the pound key."),
    (3, false, true, 36894, 38954, "Do you have your account number handy?"),
    (3, true, false, 39629, 42849, "double nine eight double two six three nine zero four three"),
    (3, false, true, 43309, 44589, "let me read that back,"),
    (3, true, true, 44680, 47990, "nine nine eight two two six three nine zero four three"),
    (3, false, true, 48481, 49861, "Please enter your PIN."),
    (3, false, true, 53403, 55553, "Is there anything else I can help you with?"),
    (3, false, true, 56349, 57979, "What is the expiration date?"),
    (3, true, false, 58288, 59768, "oh five twenty seven"),
    (4, false, true, 895, 3745, "The refund should arrive in five to seven business days."),
    (4, false, false, 3995, 6935, "Hi, I'm calling about a charge on my statement."),
    (4, false, true, 7399, 8809, "Let me pull up your account."),
    (4, false, true, 9072, 10402, "And the security code?"),
    (4, false, false, 10971, 12901, "the security code on the back is"),
    (4, true, false, 13100, 13990, "eight four eight"),
    (4, false, true, 17485, 18695, "Please enter your PIN."),
    (4, false, false, 22009, 24949, "Hi, I'm calling about a charge on my statement."),
    (4, false, true, 25411, 26491, "And your date of birth?"),
    (4, false, false, 27070, 28080, "I was born on"),
    (4, true, false, 28349, 30689, "December fourth, nineteen eighty nine"),
    (4, false, true, 38632, 40202, "Could you read me your member ID?"),
    (4, false, false, 40710, 42390, "the member ID on the card is"),
    (4, true, false, 42444, 45764, "B, six double four one zero three seven six"),
    (4, false, true, 46321, 48051, "What is the best number to reach you?"),
    (4, false, false, 48845, 50015, "my phone number is"),
    (4, true, false, 50113, 53993, "five five five, two three seven, nine one six eight"),
    (4, false, true, 54734, 55864, "let me read that back,"),
    (4, true, true, 56027, 58747, "double five five two three seven nine one six eight"),
    (5, false, true, 885, 5545, "Thank you for calling customer support, my name is Sarah, how can I help you today?"),
    (5, false, false, 6483, 10283, "I called two times last week and nobody called me back."),
    (5, false, true, 17485, 18725, "Please enter your PIN."),
    (5, false, true, 21764, 23274, "What is the expiration date?"),
    (5, false, false, 23634, 24634, "it expires"),
    (5, true, false, 24902, 26242, "oh three twenty eight"),
    (5, false, true, 26980, 28570, "Could you read me your member ID?"),
    (5, false, false, 29463, 31263, "the member ID on the card is"),
    (5, true, false, 31511, 35001, "T, five six one six one three one four eight"),
    (5, false, true, 35955, 37195, "Please enter your PIN."),
    (5, false, true, 39385, 41075, "Please hold for just a moment."),
    (5, false, true, 41638, 43228, "Could you read me your member ID?"),
    (5, false, false, 43837, 45037, "my member ID is"),
    (5, true, false, 45101, 48991, "K as in king, oh five seven three nine eight one oh two"),
    (5, false, true, 49369, 52159, "Please enter your account number followed by the pound key."),
    (5, false, false, 56252, 58182, "Sure, give me one second."),
    (5, false, true, 58950, 60340, "Thanks for your patience."),
    (5, false, true, 60875, 62875, "Is there anything else I can help you with?"),
    (5, false, true, 63264, 64504, "Please enter your PIN."),
    (5, false, true, 69755, 70845, "And your date of birth?"),
    (5, false, false, 71509, 72669, "I was born on"),
    (5, true, false, 72884, 76144, "oh five, twenty two, seventy seven"),
    (6, false, true, 644, 5404, "Thank you for calling customer support, my name is Sarah, how can I help you today?"),
    (6, false, false, 5731, 7981, "Okay, great, thank you so much."),
    (6, false, true, 8655, 11535, "Please enter your account number followed by the pound key."),
    (6, false, true, 13032, 15912, "Please enter your account number followed by the pound key."),
    (6, false, true, 21453, 22563, "And your date of birth?"),
    (6, false, false, 23319, 24319, "I was born on"),
    (6, true, false, 24383, 27063, "December twenty third, nineteen fifty eight"),
    (6, false, true, 27795, 29065, "Please enter your PIN."),
    (6, false, true, 31604, 33244, "Could you read me your member ID?"),
    (6, false, false, 33621, 35221, "the member ID on the card is"),
    (6, true, false, 35309, 38999, "P as in peter, nine seven two three three nine eight four seven"),
    (6, false, true, 39309, 40509, "let me read that back,"),
    (6, true, true, 40614, 43264, "nine seven two double three nine eight four seven"),
    (7, false, true, 860, 2450, "Let me pull up your account."),
    (7, false, false, 3309, 4729, "Yes, that's correct."),
    (7, false, true, 5519, 6899, "Please enter your PIN."),
    (7, false, true, 10110, 12410, "Okay, that has been updated for you."),
    (7, false, true, 13250, 15120, "What is the best number to reach you?"),
    (7, false, false, 15669, 16739, "you can reach me at"),
    (7, true, false, 16951, 20761, "double five five, three nine five, four two four three"),
    (7, false, true, 21272, 22552, "let me read that back,"),
    (7, true, true, 22671, 25901, "five five five three nine five four two four three"),
    (7, false, true, 27909, 29289, "Please enter your PIN."),
    (7, false, true, 31542, 34142, "Can you verify your social security number?"),
    (7, false, false, 34912, 35802, "my social is"),
    (7, true, false, 35890, 39590, "double two five, three nine, seven seven two two"),
    (8, false, true, 1038, 3298, "Okay, that has been updated for you."),
    (8, false, false, 4098, 5948, "Sorry, could you repeat that?"),
    (8, false, true, 11256, 12596, "Please enter your PIN."),
    (8, false, true, 15954, 19044, "The refund should arrive in five to seven business days."),
    (8, false, true, 19468, 21068, "What is the expiration date?"),
    (8, false, false, 21768, 22778, "it expires"),
    (8, true, false, 23023, 24763, "June twenty twenty six"),
    (8, false, false, 25358, 27548, "I'd like to update my billing address."),
    (8, false, true, 27976, 29376, "And the security code?"),
    (8, false, false, 29753, 31783, "the security code on the back is"),
    (8, true, false, 31981, 33171, "four seven oh"),
    (8, false, true, 33798, 35538, "Can I get the card number please?"),
    (8, false, false, 35890, 37520, "okay, the number is"),
    (8, true, false, 37796, 44146, "four nine nine two, forty one forty eight, eight one one seven, three five eight two"),
    (8, false, true, 44489, 46939, "Just the last four of the social, please."),
    (8, false, false, 47656, 49526, "the last four of my social are"),
    (8, true, false, 49806, 51396, "three one six seven"),
    (8, false, true, 52014, 53244, "let me read that back,"),
    (8, true, true, 53393, 54753, "three one six seven"),
    (8, false, true, 55120, 56270, "And your date of birth?"),
    (8, false, false, 56880, 58200, "my date of birth is"),
    (8, true, false, 58254, 61404, "oh two, one five, nineteen seventy"),
    (8, false, true, 62051, 63451, "And the security code?"),
    (8, false, false, 64198, 66228, "the security code on the back is"),
    (8, true, false, 66494, 67724, "one four seven"),
    (8, false, true, 68453, 70193, "Can I get the card number please?"),
    (8, false, false, 71063, 72693, "okay, the number is"),
    (8, true, false, 72816, 79226, "four five five five, triple five five, five triple five, fifty five fifty"),
    (9, false, true, 1180, 4460, "The refund should arrive in five to seven business days."),
    (9, false, false, 4774, 7824, "Hi, I'm calling about a charge on my statement."),
    (9, false, true, 8086, 11136, "Using your keypad, enter your card number now."),
    (9, false, true, 14245, 16215, "What is the best number to reach you?"),
    (9, false, false, 16554, 17604, "you can reach me at"),
    (9, true, false, 17671, 21581, "triple five, zero five one, ninety three twenty five"),
    (9, false, true, 22488, 24498, "Your call is number three in the queue."),
    (9, false, true, 25195, 27865, "Just the last four of the social, please."),
    (9, false, false, 28466, 30166, "the last four of my social are"),
    (9, true, false, 30458, 31738, "six two eight nine"),
    (9, false, false, 32250, 34590, "Okay, great, thank you so much."),
    (9, false, true, 34866, 38126, "Please enter your account number followed by the pound key."),
    (9, false, true, 41561, 42801, "And your date of birth?"),
    (9, false, false, 43131, 44061, "I was born on"),
    (9, true, false, 44137, 46467, "twelve, oh six, forty nine"),
    (9, false, true, 46932, 49782, "Thank you, one moment while I look that up."),
    (9, false, true, 50327, 52337, "Your call is number three in the queue."),
    (9, false, true, 52800, 54770, "What is the best number to reach you?"),
    (9, false, false, 55077, 56227, "my phone number is"),
    (9, true, false, 56460, 60730, "double five five, two seven zero, thirty six twenty three"),
    (9, false, true, 61418, 64088, "Just the last four of the social, please."),
    (9, false, false, 64519, 66219, "the last four of my social are"),
    (9, true, false, 66274, 67374, "eight oh nine three"),
    (9, false, true, 67930, 69340, "let me read that back,"),
    (9, true, true, 69475, 70835, "eight zero nine three"),
    (10, false, true, 1296, 4206, "Thank you, one moment while I look that up."),
    (10, false, false, 4501, 6671, "I'd like to update my billing address."),
    (10, false, true, 7480, 10810, "The refund should arrive in five to seven business days."),
    (10, false, false, 11488, 13658, "I'd like to update my billing address."),
    (10, false, true, 14513, 16093, "Thanks for your patience."),
    (10, false, false, 16813, 20553, "I called two times last week and nobody called me back."),
    (10, false, true, 20954, 24014, "I see the order here, it shipped yesterday."),
    (10, false, false, 24735, 26285, "Yes, that's correct."),
    (10, false, true, 26861, 29041, "Your call is number three in the queue."),
    (10, false, false, 29584, 32204, "I ordered three of them but only got one."),
    (10, false, true, 32584, 35644, "I see the order here, it shipped yesterday."),
    (10, false, false, 36311, 38481, "I'd like to update my billing address."),
    (10, false, true, 38769, 40869, "I can certainly help you with that."),
    (10, false, false, 41499, 45239, "I called two times last week and nobody called me back."),
    (11, false, true, 557, 3187, "Thank you, one moment while I look that up."),
    (11, false, false, 3929, 5259, "Yes, that's correct."),
    (11, false, false, 7696, 10216, "No, that's everything, have a good day."),
    (11, false, false, 11827, 13157, "Yes, that's correct."),
    (11, false, false, 18969, 20649, "Sure, give me one second."),
    (12, false, true, 1172, 4242, "Thank you, one moment while I look that up."),
    (12, false, false, 5167, 8097, "No, that's everything, have a good day."),
    (12, false, true, 8433, 11713, "Using your keypad, enter your card number now."),
    (12, false, true, 13644, 16924, "Using your keypad, enter your card number now."),
    (12, false, true, 20165, 21765, "Please enter your PIN."),
    (12, false, true, 25088, 28368, "Using your keypad, enter your card number now."),
    (12, false, true, 30769, 34299, "Please enter your account number followed by the pound key."),
    (12, false, true, 38791, 42071, "Using your keypad, enter your card number now."),
    (12, false, true, 44501, 47781, "Using your keypad, enter your card number now."),
    (12, false, true, 50327, 51927, "Please enter your PIN."),
    (13, false, true, 1445, 3045, "Thanks for your patience."),
    (13, false, false, 3343, 6063, "I have been waiting for about twenty minutes."),
    (13, false, true, 6667, 8787, "I can certainly help you with that."),
    (13, false, false, 9533, 11403, "It was about a hundred dollars."),
    (13, false, true, 12346, 13606, "And your date of birth?"),
    (13, false, false, 14480, 15720, "I was born on"),
    (13, true, false, 15892, 19852, "zero seven, one five, two thousand four"),
    (13, false, true, 20441, 22591, "Do you have your account number handy?"),
    (13, false, false, 23272, 24742, "my account number is"),
    (13, true, false, 24894, 28244, "four triple two five nine double seven four"),
    (13, false, true, 28910, 30260, "let me read that back,"),
    (13, true, true, 30342, 33252, "four two two two five nine double seven four"),
    (13, false, true, 35818, 41388, "Thank you for calling customer support, my name is Sarah, how can I help you today?"),
    (13, false, true, 41659, 44919, "Please enter your account number followed by the pound key."),
    (14, false, true, 1086, 3216, "Is there anything else I can help you with?"),
    (14, false, false, 3545, 6075, "No, that's everything, have a good day."),
    (14, false, true, 8611, 11121, "Just the last four of the social, please."),
    (14, false, false, 11629, 13239, "the last four of my social are"),
    (14, true, false, 13511, 14551, "eight four three one"),
    (14, false, true, 15182, 16552, "Please enter your PIN."),
    (14, false, true, 19403, 22233, "Using your keypad, enter your card number now."),
    (14, false, true, 26022, 27392, "Please enter your PIN."),
    (14, false, true, 30937, 32747, "Can I get the card number please?"),
    (14, false, false, 33435, 34785, "okay, the number is"),
    (14, true, false, 34998, 40308, "five one four nine, double three two five, oh nine three five, oh seven double two"),
    (15, false, true, 1455, 2895, "Thanks for your patience."),
    (15, false, false, 3875, 6125, "I have been waiting for about twenty minutes."),
    (15, false, true, 6469, 9419, "Please enter your account number followed by the pound key."),
    (15, false, true, 12545, 13935, "And the security code?"),
    (15, false, false, 14702, 16472, "the security code on the back is"),
    (15, true, false, 16561, 17591, "six four nine"),
    (15, false, true, 20222, 22092, "I can certainly help you with that."),
    (15, false, true, 22524, 23824, "Please enter your PIN."),
    (15, false, true, 26213, 27923, "Can I get the card number please?"),
    (15, false, false, 28700, 30030, "okay, the number is"),
    (15, true, false, 30268, 35068, "sixty eleven, oh zero six nine, fifty oh six, three five eight seven"),
    (15, false, true, 35508, 36898, "And the security code?"),
    (15, false, false, 37240, 39010, "the security code on the back is"),
    (15, true, false, 39233, 40213, "double eight seven"),
    (15, false, true, 40958, 42348, "And the security code?"),
    (15, false, false, 43116, 44886, "the security code on the back is"),
    (15, true, false, 45045, 45895, "five two two"),
    (15, false, true, 48618, 50858, "Okay, that has been updated for you."),
    (15, false, true, 51333, 53043, "Can I get the card number please?"),
    (15, false, false, 53485, 54575, "the card number is"),
    (15, true, false, 54626, 59176, "four triple oh, triple zero zero, triple zero zero, triple oh two"),
    (16, false, true, 683, 3563, "Thank you, one moment while I look that up."),
    (16, false, false, 4143, 6003, "Sorry, could you repeat that?"),
    (16, false, false, 6959, 9729, "I ordered three of them but only got one."),
    (16, false, true, 10494, 12174, "What is the expiration date?"),
    (16, false, false, 12681, 13621, "it expires"),
    (16, true, false, 13738, 15668, "July twenty twenty five"),
    (16, false, true, 17971, 20751, "I see the order here, it shipped yesterday."),
    (16, false, true, 21096, 26446, "Thank you for calling customer support, my name is Sarah, how can I help you today?"),
    (17, false, true, 1182, 3072, "Please hold for just a moment."),
    (17, false, false, 3740, 6430, "I ordered three of them but only got one."),
    (17, false, true, 6951, 10021, "Please enter your account number followed by the pound key."),
    (17, false, true, 13363, 14553, "And your date of birth?"),
    (17, false, false, 15004, 16324, "my date of birth is"),
    (17, true, false, 16588, 19828, "one oh, one zero, nineteen sixty five"),
    (17, false, true, 20193, 22723, "Just the last four of the social, please."),
    (17, true, false, 23182, 24652, "four three five seven"),
    (17, false, true, 25167, 26437, "let me read that back,"),
    (17, true, true, 26501, 27901, "four three five seven"),
    (17, false, true, 28450, 30300, "What is the best number to reach you?"),
    (17, false, false, 30747, 31977, "my phone number is"),
    (17, true, false, 32130, 35950, "triple five, eight four five, six double six eight"),
    (17, false, true, 36870, 39460, "I see the order here, it shipped yesterday."),
    (17, false, true, 39791, 40981, "And your date of birth?"),
    (17, false, false, 41472, 42462, "I was born on"),
    (17, true, false, 42740, 45480, "ten, twenty six, fifty seven"),
    (17, false, true, 46054, 47324, "let me read that back,"),
    (17, true, true, 47410, 50120, "one nine five seven one zero two six"),
    (17, false, true, 50733, 53293, "Can you verify your social security number?"),
    (17, false, false, 53787, 54747, "my social is"),
    (17, true, false, 54976, 58616, "five two three, five nine, three double two seven"),
    (17, false, true, 59240, 60970, "Could you read me your member ID?"),
    (17, false, false, 61847, 63667, "the member ID on the card is"),
    (17, true, false, 63891, 66361, "T, one two double seven one one"),
    (17, false, true, 67296, 69856, "Can you verify your social security number?"),
    (17, true, false, 70159, 73999, "eight three five, two seven, five nine seven six"),
    (18, false, true, 516, 3286, "I see the order here, it shipped yesterday."),
    (18, false, false, 4054, 6494, "No, that's everything, have a good day."),
    (18, false, false, 9333, 11713, "I ordered three of them but only got one."),
    (18, false, true, 12000, 13440, "Please enter your PIN."),
    (18, false, true, 15848, 17368, "And the security code?"),
    (18, false, false, 17713, 19553, "the security code on the back is"),
    (18, true, false, 19837, 21037, "five seven seven"),
    (18, false, true, 21700, 24660, "Using your keypad, enter your card number now."),
    (19, false, true, 974, 3174, "Is there anything else I can help you with?"),
    (19, false, false, 3845, 5925, "Sure, give me one second."),
    (19, false, true, 6363, 7733, "Please enter your PIN."),
    (19, false, true, 11741, 14271, "Can you verify your social security number?"),
    (19, false, false, 14910, 17090, "my social security number is"),
    (19, true, false, 17321, 21221, "three two three, eight nine, nine one six nine"),
    (19, false, true, 22018, 23308, "let me read that back,"),
    (19, true, true, 23459, 26059, "three two three eight nine nine one six nine"),
    (19, false, true, 26488, 29308, "Using your keypad, enter your card number now."),
    (19, false, true, 35244, 36404, "And your date of birth?"),
    (19, false, false, 37197, 38357, "I was born on"),
    (19, true, false, 38602, 41162, "twelve, eleven, sixty three"),
    (19, false, true, 41796, 44616, "Using your keypad, enter your card number now."),
    (19, false, true, 47517, 49327, "What is the best number to reach you?"),
    (19, false, false, 50152, 51462, "my phone number is"),
    (19, true, false, 51724, 55874, "triple five, four six three, nineteen sixty four"),
    (19, false, true, 56512, 58092, "What is the expiration date?"),
    (19, false, false, 58881, 59841, "it expires"),
    (19, true, false, 59909, 61459, "oh eight twenty nine"),
    (19, false, true, 61877, 63247, "Please enter your PIN."),
    (19, false, false, 66346, 68326, "Sorry, could you repeat that?"),
    (19, false, true, 68780, 70150, "Please enter your PIN."),
    (19, false, true, 73101, 75921, "Using your keypad, enter your card number now."),
    (19, false, false, 78220, 80550, "I'd like to update my billing address."),
    (19, false, true, 81503, 84083, "I see the order here, it shipped yesterday."),
];

#[test]
fn mono_dangling_copula_opens_a_context_over_the_next_turn() {
    // "Sure, it's" announces a value: the next turn is judged inside an ask context, so even
    // a count that would pass elsewhere is muted; after a finished sentence it stays audible.
    let (input, leg) = mono(
        3000,
        &[
            ("Sure, it's", 1000, 1800),
            ("I called two times", 2800, 4300),
        ],
        7000,
    );
    assert!(muted_ms(&input, leg.aligned(), 2800, 4300).0 > 400);
    let (input, leg) = mono(
        3000,
        &[
            ("Sure, I see.", 1000, 1800),
            ("I called two times", 2800, 4300),
        ],
        7000,
    );
    assert_eq!(muted_ms(&input, leg.aligned(), 2800, 4300).0, 0);
}

#[test]
fn mono_an_announced_value_context_covers_the_next_turn_only() {
    // The complement of a dangling copula is the very next phrase: unlike an ask's context
    // (two turns), an announcement's covers one. The second turn after it, a count that
    // would be muted inside a context, stays audible.
    let (input, leg) = mono(
        3000,
        &[
            ("Sure, it's", 1000, 1800),
            ("hold on", 2800, 3300),
            ("I called two times", 4300, 5800),
        ],
        8500,
    );
    assert_eq!(
        muted_ms(&input, leg.aligned(), 4300, 5800).0,
        0,
        "second turn after the announcement audible"
    );
    // An ask's context does reach the second turn.
    let (input, leg) = mono(
        3000,
        &[
            ("Can I get the card number please?", 500, 1800),
            ("hold on", 2800, 3300),
            ("I called two times", 4300, 5800),
        ],
        8500,
    );
    assert!(muted_ms(&input, leg.aligned(), 4300, 5800).0 > 400);
}
