//! The Q.24 DTMF receiver: block stage, debounce, fine stage, onset estimate.
//!
//! # Design
//!
//! **Block stage (every sample, must be cheap).** Samples are buffered into 102-sample blocks
//! (12.75 ms, spandsp's choice: bins ~78 Hz wide separate 697 from 770 Hz even at ±1.5 %). A
//! block whose energy is below what the weakest acceptable tone alone would put in it is
//! declared silent without running any filter. Otherwise eight Goertzel bins run over the
//! block in one vectorised loop, and the block "hits" a key if the strongest row and column
//! bins pass loose spandsp-style tests: level, twist, each peak ≥ 4 dB over the other bins of
//! its group, and the pair holding a good part of the block's energy. These tests are looser
//! than Q.24 on purpose: the block stage only nominates candidates.
//!
//! **Debounce** ([`super::debounce`]): two agreeing blocks make a candidate worth judging; three
//! misses end a confirmed tone (bridging ≤ 10 ms dropouts).
//!
//! **Fine stage** ([`super::verify`]): on the candidate's two hit blocks, the exact frequency of
//! each component (Q.24: accept ±1.5 %, reject ±3.5 %; the cut is at ±2.5 %), exact levels
//! (so twist is judged at the true frequencies, not on a bin's skirt), energy ratio, second
//! harmonics, and the tone's extent from projecting the surrounding samples on the fitted pair.
//! The extent gives the **onset** (first sample, reported one sub-block early) and rejects
//! tones shorter than Q.24's 23 ms window. Two refinements keep weak tones under speech:
//! a verdict that a partly filled first block can spoil (level, twist, energy) is retried once
//! on the two latest hit blocks; and when the run itself is noisy (the fitted pair explains
//! < −1 dB of its energy) the 2 ms edges cannot be seen, so the tone is accepted on its hits
//! and its onset reported at the start of the block before them (early, never late).
//!
//! **Timing.** A candidate appears at the end of its first hit block; `pending_since` is then the
//! start of the block before it (the tone can have begun there). The verdict comes one block
//! later (two if the tone is still too short to judge its duration): 38–51 ms after
//! `pending_since`, inside an 80 ms look-ahead, so fail-closed muting of pending audio never
//! reaches the output on its own.

use std::collections::VecDeque;
use std::fmt;

use super::debounce::{Action, Debouncer, Resolution};
use super::verify::{self, Analyser, Analysis, Sub, PRESENCE, SUB, WINDOW};
use super::{Digit, ToneEvent, HIGH_GROUP_HZ, LOW_GROUP_HZ};
use crate::goertzel::GoertzelBank;
use crate::MediaTime;

/// Samples per block (12.75 ms at 8 kHz); see the module docs.
pub const BLOCK: usize = 102;
/// Blocks of history kept for the fine stage: the two hit blocks, the block before (onset), and
/// one more for a deferred verdict.
const HIST_BLOCKS: usize = 4;
const HIST_SAMPLES: usize = HIST_BLOCKS * BLOCK;
const SUBS: usize = HIST_SAMPLES / SUB;
const _: () = assert!(WINDOW == 2 * BLOCK);
/// Capacity of the event queue. One block yields at most two events, so a caller that drains
/// after every ≤ 1 s chunk (the calling rule) never fills it.
const EVENT_CAPACITY: usize = 256;
/// Events room allocated up front: a caller draining after every 20 ms frame sees at most
/// four (two blocks), so the per-frame path never grows the queue; only callers passing long
/// chunks grow it, towards [`EVENT_CAPACITY`]. The whole capacity up front was 4 KiB per
/// detector, two detectors per call, on calls that mostly carry no tone at all.
const EVENT_RESERVE: usize = 8;

/// dBm0 reference: a full-scale sine (peak 32767) is +3.14 dBm0 (spandsp, G.711), so a 0 dBm0
/// sine has peak 32767 / 10^(3.14/20) ≈ 22 826.
#[allow(clippy::approx_constant)] // a level in dB that happens to read like π
const FULL_SCALE_SINE_DBM0: f32 = 3.14;

/// Block stage: the stronger bin may read up to 4 dB under the fine stage's level limit
/// (a ±1.5 % tone loses up to 1.4 dB on a 78 Hz bin; a tone covering 70 % of the block loses
/// 3 dB more in the bin than it does in the fine stage's full-window fit).
const BLOCK_LEVEL_SLACK_DB: f32 = 4.0;
/// Block stage: twist limits are widened by this much (bin loss differs between the groups
/// by up to ~1.4 dB at ±1.5 %, plus noise).
const BLOCK_TWIST_SLACK_DB: f32 = 3.0;
/// Block stage: each peak must exceed every other bin of its group by this much. spandsp uses
/// 8 dB; a ±1.5 % tone alone leaves its neighbours ≥ 12 dB down, but speech under a −27 dBm0
/// tone fills them to −4…−6 dB in some blocks (dev corpus), and a missed block costs the
/// whole tone. The fine stage's 7 dB group test on 204 Hann-windowed samples stays strict.
const BLOCK_RELATIVE_PEAK_DB: f32 = 4.0;
/// Block stage: the pair must hold at least this fraction of the block's energy (−6 dB: a
/// 0 dB S/N mixture still passes, the fine stage is stricter).
const BLOCK_ENERGY_RATIO_DB: f32 = -6.0;
/// Fine stage: below this tone share of the window's energy the 2 ms extent scan is too noisy
/// to trust. A sub-block's projection has a standard deviation of about
/// √((1 − r) / (r · 17)) of the model; at r = −1 dB (0.79) that is 0.12, well clear of the 0.5
/// presence threshold.
const EXTENT_MIN_ENERGY_RATIO_DB: f32 = -1.0;
/// Fine stage: allowance on the twist limits for estimation noise (a −30 dBm0 component in
/// noise reads up to ~1.5 dB off over two blocks).
const TWIST_MARGIN_DB: f32 = 2.0;
/// Fine stage: allowance on the minimum level (estimation noise, µ-law quantisation).
const LEVEL_MARGIN_DB: f32 = 2.0;

fn db_to_power_ratio(db: f32) -> f32 {
    10.0f32.powf(db / 10.0)
}

/// Receiver settings. Defaults follow ITU-T Q.24 (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DtmfConfig {
    /// Minimum level of the stronger tone, dBm0 (Q.24: −30 must be detected; a 2 dB
    /// estimation margin is applied below this).
    pub min_level_dbm0: f32,
    /// Largest normal twist (low group louder), dB. Q.24: 8 (a 2 dB margin applies).
    pub max_normal_twist_db: f32,
    /// Largest reverse twist (high group louder), dB. Q.24: 4 (a 2 dB margin applies).
    pub max_reverse_twist_db: f32,
    /// Largest accepted deviation of either component from nominal, percent. Q.24 accepts
    /// ±1.5 % and rejects ±3.5 %; 2.5 % splits the gap.
    pub max_freq_deviation_pct: f32,
    /// Shortest tone accepted, ms. Q.24 accepts ≥ 40 ms and rejects < 23 ms; 28 ms leaves
    /// room for the extent estimate's 2 ms resolution (and a bridged 2 ms dip) on both sides.
    pub min_duration_ms: f32,
    /// The two tones must hold at least this share of the signal energy, dB (−3 dB: the pair
    /// is at least as strong as everything else; talk-off guard).
    pub min_energy_ratio_db: f32,
    /// Second harmonics must be this far below the fundamentals, dB (talk-off guard: voiced
    /// speech has strong harmonics at twice the pair's frequencies, a tone generator does not).
    /// Only the part of a harmonic standing above the spectrum beside it counts (see
    /// `verify`). On the dev corpus at six block alignments, tones (even over speech or noise)
    /// measure ≤ −22.6 dB and vowels whose harmonics sit on a key pair −14.6…−15.9 dB; 19 dB
    /// splits them.
    pub min_harmonic_rejection_db: f32,
    /// Every other key frequency of each group must be this far below the group's component,
    /// dB (talk-off guard, the fine-stage form of spandsp's relative-peak test: a vowel's
    /// neighbouring harmonics fall on neighbouring keys). Tones measure ≤ −8.5 dB on the corpus.
    pub min_group_rejection_db: f32,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        DtmfConfig {
            min_level_dbm0: -30.0,
            max_normal_twist_db: 8.0,
            max_reverse_twist_db: 4.0,
            max_freq_deviation_pct: 2.5,
            min_duration_ms: 28.0,
            min_energy_ratio_db: -3.0,
            min_harmonic_rejection_db: 19.0,
            min_group_rejection_db: 7.0,
        }
    }
}

/// Why the last block did or did not hit (debugging aid; never names a digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockVerdict {
    /// No block analysed yet.
    None,
    /// Below the energy gate: no filter was run.
    Silent,
    /// Stronger component below the level limit.
    Level,
    /// Low group too much louder than the high group.
    NormalTwist,
    /// High group too much louder than the low group.
    ReverseTwist,
    /// A row peak not clear of the other rows.
    RowPeak,
    /// A column peak not clear of the other columns.
    ColumnPeak,
    /// The pair holds too little of the block's energy.
    EnergyRatio,
    /// The block passes for some key.
    Hit,
}

/// The fine stage's last verdict on a candidate (debugging aid; never names a digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateVerdict {
    /// No candidate judged yet.
    None,
    /// Accepted: a tone was reported.
    Accepted,
    /// Too short so far; judged again on the next block.
    Deferred,
    /// A component is off nominal by more than the tolerance.
    FrequencyOff,
    /// Stronger component below the level limit.
    Level,
    /// Normal twist beyond the limit.
    NormalTwist,
    /// Reverse twist beyond the limit.
    ReverseTwist,
    /// The pair holds too little of the energy.
    EnergyRatio,
    /// Second harmonics too strong.
    Harmonics,
    /// Another key of a group too close to the component.
    GroupPeak,
    /// The tone ended before the minimum duration.
    TooShort,
}

/// What the fine stage measured on the last candidate (debugging aid). Deviations are relative,
/// so nothing here names a key.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CandidateMeasurement {
    /// Low- and high-group deviation from nominal, percent.
    pub deviation_pct: [f32; 2],
    /// Low- and high-group level, dBm0.
    pub level_dbm0: [f32; 2],
    /// Share of the window's energy held by the pair, dB.
    pub energy_ratio_db: f32,
    /// Second harmonics relative to the fundamentals, dB.
    pub harmonic_db: f32,
    /// Measured extent of the tone so far, ms (0 if not measured).
    pub duration_ms: f32,
    /// Strongest other key frequency of either group relative to its component, dB.
    pub group_db: f32,
}

/// The in-band DTMF receiver for one 8 kHz stream.
#[derive(Clone)]
pub struct DtmfDetector {
    config: DtmfConfig,
    now: MediaTime,
    bank: GoertzelBank<8>,
    /// Fill level of the block being filled (`hist[block_index % HIST_BLOCKS]`).
    fill: usize,
    /// Index of the block being filled.
    block_index: u64,
    /// The last `HIST_BLOCKS` blocks, block `k` at `k % HIST_BLOCKS`; the block being filled
    /// is written in place.
    hist: [[f32; BLOCK]; HIST_BLOCKS],
    /// Contiguous copy of the history for the fine stage.
    scratch: [f32; HIST_SAMPLES],
    presence: [Sub; SUBS],
    /// The fine stage and its tables.
    analyser: Analyser,
    debounce: Debouncer,
    /// The current block's hit, if any.
    last_hit: Option<Digit>,
    events: VecDeque<ToneEvent>,
    events_dropped: u64,
    last_block: BlockVerdict,
    last_candidate: CandidateVerdict,
    judged: u64,
    measurement: CandidateMeasurement,
    // Precomputed linear thresholds.
    /// Amplitude of a 0 dBm0 sine.
    dbm0_amp: f32,
    block_energy_gate: f32,
    block_min_power: f32,
    block_normal_twist: f32,
    block_reverse_twist: f32,
    block_rel_peak: f32,
    block_energy_ratio: f32,
}

impl DtmfDetector {
    /// A receiver; all state is allocated here (the event queue grows only for long chunks).
    pub fn new(config: DtmfConfig) -> Self {
        let dbm0_amp = 32767.0 / 10.0f32.powf(FULL_SCALE_SINE_DBM0 / 20.0);
        let n = BLOCK as f32;
        // Weakest stronger-tone amplitude the block stage accepts.
        let a_min = dbm0_amp
            * 10.0f32.powf((config.min_level_dbm0 - LEVEL_MARGIN_DB - BLOCK_LEVEL_SLACK_DB) / 20.0);
        DtmfDetector {
            config,
            analyser: Analyser::new([&LOW_GROUP_HZ, &HIGH_GROUP_HZ]),
            now: MediaTime::ZERO,
            bank: GoertzelBank::new(
                [
                    LOW_GROUP_HZ[0],
                    LOW_GROUP_HZ[1],
                    LOW_GROUP_HZ[2],
                    LOW_GROUP_HZ[3],
                    HIGH_GROUP_HZ[0],
                    HIGH_GROUP_HZ[1],
                    HIGH_GROUP_HZ[2],
                    HIGH_GROUP_HZ[3],
                ],
                8000.0,
            )
            .with_block_len(BLOCK),
            fill: 0,
            block_index: 0,
            hist: [[0.0; BLOCK]; HIST_BLOCKS],
            scratch: [0.0; HIST_SAMPLES],
            presence: [Sub::default(); SUBS],
            debounce: Debouncer::new(),
            last_hit: None,
            events: VecDeque::with_capacity(EVENT_RESERVE),
            events_dropped: 0,
            last_block: BlockVerdict::None,
            last_candidate: CandidateVerdict::None,
            judged: 0,
            measurement: CandidateMeasurement::default(),
            dbm0_amp,
            // Energy of that tone alone over a block: A²/2 · N.
            block_energy_gate: a_min * a_min / 2.0 * n,
            // Goertzel power of that tone on its bin: (A N / 2)².
            block_min_power: (a_min * n / 2.0).powi(2),
            block_normal_twist: db_to_power_ratio(
                config.max_normal_twist_db + TWIST_MARGIN_DB + BLOCK_TWIST_SLACK_DB,
            ),
            block_reverse_twist: db_to_power_ratio(
                config.max_reverse_twist_db + TWIST_MARGIN_DB + BLOCK_TWIST_SLACK_DB,
            ),
            block_rel_peak: db_to_power_ratio(BLOCK_RELATIVE_PEAK_DB),
            block_energy_ratio: db_to_power_ratio(BLOCK_ENERGY_RATIO_DB),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &DtmfConfig {
        &self.config
    }

    /// Feed the next samples of the stream (any length). Drain [`Self::poll_event`] after
    /// each call; chunks of up to one second never overflow the event queue.
    pub fn process(&mut self, samples: &[i16]) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (BLOCK - self.fill).min(rest.len());
            let (head, tail) = rest.split_at(take);
            let cur = &mut self.hist[(self.block_index % HIST_BLOCKS as u64) as usize];
            for (d, &s) in cur[self.fill..self.fill + take].iter_mut().zip(head) {
                *d = f32::from(s);
            }
            self.fill += take;
            self.now = self.now + take as u64;
            rest = tail;
            if self.fill == BLOCK {
                self.fill = 0;
                self.end_of_block();
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ToneEvent> {
        self.events.pop_front()
    }

    /// Earliest sample whose verdict is still open, if a candidate tone is being evaluated.
    pub fn pending_since(&self) -> Option<MediaTime> {
        self.debounce
            .pending_since_block()
            .map(|b| MediaTime(b * BLOCK as u64))
    }

    /// Samples consumed so far.
    pub fn now(&self) -> MediaTime {
        self.now
    }

    /// Why the last complete block did or did not hit.
    pub fn last_block_verdict(&self) -> BlockVerdict {
        self.last_block
    }

    /// The fine stage's last verdict.
    pub fn last_candidate_verdict(&self) -> CandidateVerdict {
        self.last_candidate
    }

    /// Candidates the fine stage has judged so far (debugging aid).
    pub fn candidates_judged(&self) -> u64 {
        self.judged
    }

    /// The fine stage's measurements on the last candidate.
    pub fn last_measurement(&self) -> CandidateMeasurement {
        self.measurement
    }

    /// Events dropped because the queue was not drained (should stay 0).
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    fn end_of_block(&mut self) {
        let k = self.block_index;
        let hit = match self.block_test() {
            Ok(d) => {
                self.last_block = BlockVerdict::Hit;
                Some(d)
            }
            Err(v) => {
                self.last_block = v;
                None
            }
        };
        self.last_hit = hit;
        match self.debounce.on_block(k, hit) {
            Action::None => {}
            Action::Assess {
                digit,
                first_hit,
                last_chance,
            } => {
                let r = self.assess(digit, first_hit, last_chance);
                self.debounce.resolve(r);
            }
            Action::End { digit, end_block } => {
                self.push(ToneEvent::Ended {
                    digit,
                    end: MediaTime(end_block * BLOCK as u64),
                });
                // `End` on a different key's hit also opened that key's candidate.
            }
        }
        self.block_index += 1;
    }

    /// The block stage's tests on the block just completed.
    fn block_test(&self) -> Result<Digit, BlockVerdict> {
        let x = &self.hist[(self.block_index % HIST_BLOCKS as u64) as usize];
        let energy = energy(x);
        if energy < self.block_energy_gate {
            return Err(BlockVerdict::Silent);
        }
        let p = self.bank.powers(x);
        let (rows, cols) = p.split_at(4);
        let r = argmax(rows);
        let c = argmax(cols);
        let (pr, pc) = (rows[r], cols[c]);
        if pr.max(pc) < self.block_min_power {
            return Err(BlockVerdict::Level);
        }
        if pr > pc * self.block_normal_twist {
            return Err(BlockVerdict::NormalTwist);
        }
        if pc > pr * self.block_reverse_twist {
            return Err(BlockVerdict::ReverseTwist);
        }
        if rows
            .iter()
            .enumerate()
            .any(|(i, &v)| i != r && v * self.block_rel_peak > pr)
        {
            return Err(BlockVerdict::RowPeak);
        }
        if cols
            .iter()
            .enumerate()
            .any(|(i, &v)| i != c && v * self.block_rel_peak > pc)
        {
            return Err(BlockVerdict::ColumnPeak);
        }
        // Tone energy from bin power: (A N/2)² → A²/2 · N = 2 P / N.
        if (pr + pc) * 2.0 / (BLOCK as f32) < energy * self.block_energy_ratio {
            return Err(BlockVerdict::EnergyRatio);
        }
        Digit::from_keypad(r, c).ok_or(BlockVerdict::Level)
    }

    /// Run the fine stage on the candidate whose hits are blocks `first_hit` and `first_hit+1`;
    /// the current block is `self.block_index`.
    fn assess(&mut self, digit: Digit, first_hit: u64, last_chance: bool) -> Resolution {
        let k = self.block_index;
        let first_block = k as i64 - (HIST_BLOCKS as i64 - 1);
        for j in 0..HIST_BLOCKS {
            let b = first_block + j as i64;
            let dst = &mut self.scratch[j * BLOCK..(j + 1) * BLOCK];
            if b < 0 {
                dst.fill(0.0);
            } else {
                dst.copy_from_slice(&self.hist[(b as u64 % HIST_BLOCKS as u64) as usize]);
            }
        }
        // The two analysis blocks: the first two hits, or on a last chance after a hit, the
        // two latest hits (a first hit block only partly filled by the tone reads low).
        let window_first = if last_chance && self.last_hit == Some(digit) {
            k - 1
        } else {
            first_hit
        };
        let Some(w0) = usize::try_from(window_first as i64 - first_block)
            .ok()
            .map(|b| b * BLOCK)
            .filter(|&w| w + 2 * BLOCK <= HIST_SAMPLES)
        else {
            // Cannot happen: the debouncer asks within two blocks of the first hit.
            self.last_candidate = CandidateVerdict::TooShort;
            return Resolution::Reject;
        };
        let (row, col) = digit.keypad_position();
        let a = self
            .analyser
            .analyse(&self.scratch[w0..w0 + WINDOW], row, col);
        let db = |v: f64| (10.0 * v.max(1e-12).log10()) as f32;
        self.measurement = CandidateMeasurement {
            deviation_pct: [
                a.comp[0].deviation as f32 * 100.0,
                a.comp[1].deviation as f32 * 100.0,
            ],
            level_dbm0: [
                self.level_dbm0(a.comp[0].hann_amp),
                self.level_dbm0(a.comp[1].hann_amp),
            ],
            energy_ratio_db: db(a.energy_ratio),
            harmonic_db: db(a.harmonic_ratio),
            duration_ms: 0.0,
            group_db: db(a.group_ratio),
        };
        if let Err(v) = self.judge(&a) {
            self.judged += 1;
            self.last_candidate = v;
            // Level, twist and energy can read wrong on a window the tone only partly fills;
            // give those one more block. Frequency and talk-off verdicts are final.
            let soft = matches!(
                v,
                CandidateVerdict::Level
                    | CandidateVerdict::NormalTwist
                    | CandidateVerdict::ReverseTwist
                    | CandidateVerdict::EnergyRatio
            );
            return if soft && !last_chance {
                Resolution::Defer
            } else {
                Resolution::Reject
            };
        }
        self.judged += 1;
        let scratch_start = first_block.max(0) as u64 * BLOCK as u64;
        verify::presence(&self.scratch, w0, &a, &mut self.presence);
        // Anchor: the strongest sub-block inside the window; extend both ways while present.
        let (ws, we) = (w0 / SUB, (w0 + 2 * BLOCK) / SUB);
        let mut anchor = ws;
        for j in ws..we {
            if self.presence[j].rho > self.presence[anchor].rho {
                anchor = j;
            }
        }
        let present = |v: &Sub| f64::from(v.rho) >= PRESENCE;
        // A single sub-block dip inside the run (speech underneath) is bridged; two in a row
        // end it.
        let mut start = anchor;
        loop {
            if start > 0 && present(&self.presence[start - 1]) {
                start -= 1;
            } else if start > 1 && present(&self.presence[start - 2]) {
                start -= 2;
            } else {
                break;
            }
        }
        let mut end = anchor + 1;
        loop {
            if end < SUBS && present(&self.presence[end]) {
                end += 1;
            } else if end + 1 < SUBS && present(&self.presence[end + 1]) {
                end += 2;
            } else {
                break;
            }
        }
        // Share of the run's energy the fitted pair explains.
        let (mut tone, mut total) = (0.0f32, 0.0f32);
        for v in &self.presence[start..end] {
            tone += v.rho.max(0.0).powi(2) * v.model;
            total += v.energy;
        }
        if tone < total * db_to_power_ratio(EXTENT_MIN_ENERGY_RATIO_DB) {
            // Too much else in the signal (speech underneath) to see the tone's edges in
            // 2 ms sub-blocks: accept on the two hit blocks and report the onset at the
            // earliest sample the tone can have (the start of the block before the hits).
            self.last_candidate = CandidateVerdict::Accepted;
            let onset = scratch_start + (w0 - BLOCK.min(w0)) as u64;
            self.push(ToneEvent::Started {
                digit,
                onset: MediaTime(onset),
            });
            return Resolution::Accept;
        }
        let open = end == SUBS;
        let dur_ms = ((end - start) * SUB) as f32 / 8.0;
        self.measurement.duration_ms = dur_ms;
        if dur_ms < self.config.min_duration_ms {
            if open && !last_chance {
                self.last_candidate = CandidateVerdict::Deferred;
                return Resolution::Defer;
            }
            self.last_candidate = CandidateVerdict::TooShort;
            return Resolution::Reject;
        }
        // Onset: the first present sub-block, minus one sub-block (the one before can hold
        // the tone's first samples below the presence threshold). Errs early by ≤ 2 SUB.
        let onset = (scratch_start + (start * SUB) as u64).saturating_sub(SUB as u64);
        self.last_candidate = CandidateVerdict::Accepted;
        self.push(ToneEvent::Started {
            digit,
            onset: MediaTime(onset),
        });
        Resolution::Accept
    }

    /// Q.24 acceptance tests on the fine stage's measurements.
    fn judge(&self, a: &Analysis) -> Result<(), CandidateVerdict> {
        let c = &self.config;
        let max_dev = f64::from(c.max_freq_deviation_pct) / 100.0;
        if a.comp.iter().any(|x| x.deviation.abs() > max_dev) {
            return Err(CandidateVerdict::FrequencyOff);
        }
        let low = f64::from(self.level_dbm0(a.comp[0].hann_amp));
        let high = f64::from(self.level_dbm0(a.comp[1].hann_amp));
        if low.max(high) < f64::from(c.min_level_dbm0 - LEVEL_MARGIN_DB) {
            return Err(CandidateVerdict::Level);
        }
        if low - high > f64::from(c.max_normal_twist_db + TWIST_MARGIN_DB) {
            return Err(CandidateVerdict::NormalTwist);
        }
        if high - low > f64::from(c.max_reverse_twist_db + TWIST_MARGIN_DB) {
            return Err(CandidateVerdict::ReverseTwist);
        }
        if a.energy_ratio < f64::from(db_to_power_ratio(c.min_energy_ratio_db)) {
            return Err(CandidateVerdict::EnergyRatio);
        }
        if a.harmonic_ratio > f64::from(db_to_power_ratio(-c.min_harmonic_rejection_db)) {
            return Err(CandidateVerdict::Harmonics);
        }
        if a.group_ratio > f64::from(db_to_power_ratio(-c.min_group_rejection_db)) {
            return Err(CandidateVerdict::GroupPeak);
        }
        Ok(())
    }

    fn level_dbm0(&self, amp: f64) -> f32 {
        (20.0 * (amp.max(1e-9) / f64::from(self.dbm0_amp)).log10()) as f32
    }

    fn push(&mut self, e: ToneEvent) {
        if self.events.len() < EVENT_CAPACITY {
            self.events.push_back(e);
        } else {
            self.events_dropped += 1;
        }
    }
}

impl fmt::Debug for DtmfDetector {
    /// No samples and no digits: audio history could reveal a key (PHI rule).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtmfDetector")
            .field("config", &self.config)
            .field("now", &self.now)
            .field("pending_since", &self.pending_since())
            .field("tone_active", &self.debounce.active().is_some())
            .field("last_block", &self.last_block)
            .field("last_candidate", &self.last_candidate)
            .finish_non_exhaustive()
    }
}

/// Σx², in eight lanes so that it vectorises (a plain float sum is a serial chain: the
/// compiler may not reorder float additions).
fn energy(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] += c[i] * c[i];
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    acc.iter().sum::<f32>() + tail
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
