//! Live spoken-identifier masking: a bounded pool of recognizer workers shared by every call,
//! and the per-call glue ([`CallSpeech`]) between the relay task, the two legs'
//! [`SpeechMasker`]s and the recorder-path [`MaskPipeline`]s.
//!
//! Relay tasks never wait on a recognizer: a cut segment is offered to the pool's queue
//! (refused at once when full) and the words come back later on the call's own channel.
//! Every segment carries a wall-clock deadline (when its audio must leave the look-ahead);
//! a worker does not start a job whose deadline has passed. Anything but words in time mutes
//! the segment whole, and a pool whose every engine failed to load mutes the whole recorder
//! path (fail closed). Engines come from a factory, one instance per worker thread, so the
//! embedded Whisper and the remote engine plug in alike.
//!
//! [`remote`]: the OpenAI-compatible remote engine, built per worker by
//! `io::run::recognizer_factory` like the embedded one.
//!
//! PHI: words exist only between the worker's `transcribe` and [`SpeechMasker::complete`];
//! nothing here logs or counts them.
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

pub mod remote;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsp::mask::{MaskPipeline, MaskReason};
use dsp::spoken::{Job, JobId, Recognizer, RecognizerError, SpeechConfig, SpeechMasker, Word};
use dsp::MediaTime;
use tokio::sync::mpsc;

use super::readiness::Readiness;
use crate::metrics::{Metrics, RecognizerOutcome};

/// An engine instance for one worker thread.
pub type BoxedRecognizer = Box<dyn Recognizer + Send>;

/// Makes one engine per worker (loads the model, or sets up a client). The error names a
/// path or an address, never audio.
pub type RecognizerFactory = Arc<dyn Fn() -> Result<BoxedRecognizer, String> + Send + Sync>;

/// Queue slots per worker: more would only hold segments that cannot finish in time.
const QUEUE_PER_WORKER: usize = 8;
/// Weight of the newest segment in the real-time-factor moving average (~20 segments).
const RTF_ALPHA: f64 = 0.05;
/// The rate of the audio the recognizer pool is handed (the tap's).
const RATE: f64 = dsp::SampleRate::NARROWBAND.hz() as f64;
/// A job still running after this long is stuck: segments are a few seconds of audio and
/// the engines run many times faster than real time, so such a job will never be in time
/// (its segment is muted meanwhile, as every undecided one is).
const STALL_AFTER: Duration = Duration::from_secs(15);
/// How often the watchdog looks for stuck workers.
const WATCHDOG_EVERY: Duration = Duration::from_millis(500);

/// A finished job, back to its call. `Debug` never prints the words.
pub struct Reply {
    /// Leg index (0 = PBX side, 1 = agents' side).
    pub leg: usize,
    /// The job.
    pub id: JobId,
    /// Words, or why there are none.
    pub result: Result<Vec<Word>, RecognizerError>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("leg", &self.leg)
            .field("id", &self.id)
            .field("ok", &self.result.is_ok())
            .finish_non_exhaustive()
    }
}

struct Task {
    job: Job,
    leg: usize,
    deadline: Instant,
    reply: mpsc::UnboundedSender<Reply>,
}

struct Shared {
    metrics: Arc<Metrics>,
    readiness: Option<Arc<Readiness>>,
    workers: usize,
    /// Workers still loading their engine.
    starting: AtomicUsize,
    /// Workers with a loaded engine, running.
    alive: AtomicUsize,
    queued: AtomicUsize,
    /// Samples queued or being transcribed.
    backlog: AtomicU64,
    /// Latest real-time factor (f64 bits).
    rtf: AtomicU64,
    /// Per worker, when the job it runs started.
    busy_since: Mutex<Vec<Option<Instant>>>,
    /// [`STALL_AFTER`], shorter in tests.
    stall_after: Duration,
}

impl Shared {
    fn publish(&self) {
        let rtf = f64::from_bits(self.rtf.load(Ordering::Relaxed));
        let backlog = self.backlog.load(Ordering::Relaxed) as f64 / RATE;
        self.metrics.recognizer().set_recognizer(rtf, backlog);
        self.metrics
            .recognizer()
            .set_recognizer_queued_jobs(self.queued.load(Ordering::Relaxed));
    }

    fn loaded(&self, ok: bool) {
        if ok {
            self.alive.fetch_add(1, Ordering::AcqRel);
        }
        let left = self
            .starting
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        if let Some(r) = &self.readiness {
            r.set_recognizer_loaded(
                left == 0 && self.alive.load(Ordering::Acquire) == self.workers,
            );
        }
    }
}

/// The recognizer worker pool (one per process, shared by every call).
pub struct SpeechPool {
    tx: SyncSender<Task>,
    shared: Arc<Shared>,
    /// The engine name for logs and the demo.
    engine: &'static str,
}

impl std::fmt::Debug for SpeechPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechPool")
            .field("engine", &self.engine)
            .field("workers", &self.shared.workers)
            .field("alive", &self.shared.alive.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SpeechPool {
    /// Start `workers` threads, each loading its engine with `factory`, and a watchdog that
    /// reports workers stuck in one job. Returns at once; `readiness` (when given) turns
    /// ready once every worker has loaded, and not ready while every loaded worker is
    /// stuck. Fails only when a thread cannot be spawned.
    pub fn start(
        engine: &'static str,
        factory: RecognizerFactory,
        workers: usize,
        metrics: Arc<Metrics>,
        readiness: Option<Arc<Readiness>>,
    ) -> std::io::Result<Arc<SpeechPool>> {
        Self::start_with(engine, factory, workers, metrics, readiness, STALL_AFTER)
    }

    fn start_with(
        engine: &'static str,
        factory: RecognizerFactory,
        workers: usize,
        metrics: Arc<Metrics>,
        readiness: Option<Arc<Readiness>>,
        stall_after: Duration,
    ) -> std::io::Result<Arc<SpeechPool>> {
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<Task>(workers * QUEUE_PER_WORKER);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            metrics,
            readiness,
            workers,
            starting: AtomicUsize::new(workers),
            alive: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            backlog: AtomicU64::new(0),
            rtf: AtomicU64::new(0f64.to_bits()),
            busy_since: Mutex::new(vec![None; workers]),
            stall_after,
        });
        if let Some(r) = &shared.readiness {
            r.set_recognizer_loaded(false);
        }
        shared.publish();
        for n in 0..workers {
            let (rx, shared, factory) = (rx.clone(), shared.clone(), factory.clone());
            std::thread::Builder::new()
                .name(format!("callmask-asr-{n}"))
                .spawn(move || worker(n, engine, &factory, &rx, &shared))?;
        }
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("callmask-asr-watchdog".into())
            .spawn(move || watchdog(&weak))?;
        Ok(Arc::new(SpeechPool { tx, shared, engine }))
    }

    /// The engine's name.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// Every worker failed to load or stopped: nothing will ever be recognised.
    pub fn is_dead(&self) -> bool {
        self.shared.starting.load(Ordering::Acquire) == 0
            && self.shared.alive.load(Ordering::Acquire) == 0
    }

    /// Workers with a loaded engine.
    pub fn alive(&self) -> usize {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// Offer a job; never blocks. `Err` (queue full, no worker) hands the job back.
    fn submit(
        &self,
        leg: usize,
        job: Job,
        deadline: Instant,
        reply: &mpsc::UnboundedSender<Reply>,
    ) -> Result<(), Job> {
        if self.is_dead() {
            return Err(job);
        }
        let samples = job.pcm.len() as u64;
        // Count before sending: a worker may take the job (and uncount it) at once.
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        self.shared.backlog.fetch_add(samples, Ordering::AcqRel);
        let task = Task {
            job,
            leg,
            deadline,
            reply: reply.clone(),
        };
        let res = match self.tx.try_send(task) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(t) | TrySendError::Disconnected(t)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                self.shared.backlog.fetch_sub(samples, Ordering::AcqRel);
                Err(t.job)
            }
        };
        self.shared.publish();
        res
    }
}

/// Every [`WATCHDOG_EVERY`]: how many workers have been in one job longer than
/// `stall_after`, into `callmask_recognizer_stalled_workers` and (all of them stuck) the
/// readiness; ends with the pool.
fn watchdog(shared: &std::sync::Weak<Shared>) {
    let mut was = 0;
    loop {
        std::thread::sleep(WATCHDOG_EVERY);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let stuck = shared.busy_since.lock().map_or(0, |b| {
            b.iter()
                .flatten()
                .filter(|&&t| now.duration_since(t) >= shared.stall_after)
                .count()
        });
        if stuck != was {
            if stuck > was {
                tracing::error!(
                    stuck,
                    workers = shared.workers,
                    "speech recognizer worker stuck in one job: its segments are muted"
                );
            } else {
                tracing::warn!(stuck, "speech recognizer workers recovered");
            }
            shared.metrics.recognizer().set_recognizer_stalled(stuck);
            if let Some(r) = &shared.readiness {
                let alive = shared.alive.load(Ordering::Acquire);
                r.set_recognizer_stalled(alive > 0 && stuck >= alive);
            }
            was = stuck;
        }
    }
}

/// Marks worker `n` busy from `since` (`None`: idle).
fn set_busy(shared: &Shared, n: usize, since: Option<Instant>) {
    if let Ok(mut b) = shared.busy_since.lock() {
        if let Some(slot) = b.get_mut(n) {
            *slot = since;
        }
    }
}

fn worker(
    n: usize,
    engine: &'static str,
    factory: &RecognizerFactory,
    rx: &Mutex<Receiver<Task>>,
    shared: &Shared,
) {
    let t0 = Instant::now();
    let mut rec = match std::panic::catch_unwind(AssertUnwindSafe(|| factory())) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(worker = n, engine, error = %e, "speech recognizer failed to load: spoken identifiers cannot be found, recordings are muted (fail closed)");
            shared.loaded(false);
            return;
        }
        Err(_) => {
            tracing::error!(
                worker = n,
                engine,
                "speech recognizer panicked while loading: recordings are muted (fail closed)"
            );
            shared.loaded(false);
            return;
        }
    };
    tracing::info!(
        worker = n,
        engine,
        load_ms = t0.elapsed().as_millis() as u64,
        "speech recognizer loaded"
    );
    shared.loaded(true);
    loop {
        let task = {
            let Ok(rx) = rx.lock() else { break };
            match rx.recv() {
                Ok(t) => t,
                Err(_) => break, // pool dropped
            }
        };
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        let samples = task.job.pcm.len() as u64;
        let result = if Instant::now() >= task.deadline {
            Err(RecognizerError::Timeout)
        } else {
            let start = Instant::now();
            set_busy(shared, n, Some(start));
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| task.job.run(rec.as_mut())))
                .unwrap_or_else(|_| {
                    tracing::error!(
                        worker = n,
                        engine,
                        "speech recognizer panicked on a segment: it is muted"
                    );
                    Err(RecognizerError::Engine("panic"))
                });
            set_busy(shared, n, None);
            let busy = start.elapsed().as_secs_f64();
            let audio = samples as f64 / RATE;
            shared.metrics.recognizer().recognizer_work(audio, busy);
            if audio > 0.0 {
                let old = f64::from_bits(shared.rtf.load(Ordering::Relaxed));
                let new = if old == 0.0 {
                    busy / audio
                } else {
                    old + RTF_ALPHA * (busy / audio - old)
                };
                shared.rtf.store(new.to_bits(), Ordering::Relaxed);
            }
            r
        };
        shared.backlog.fetch_sub(samples, Ordering::AcqRel);
        shared.publish();
        // The call may have ended: nobody to tell.
        let _ = task.reply.send(Reply {
            leg: task.leg,
            id: task.job.id,
            result,
        });
    }
    // The pool is gone (shutdown) or the queue broke: no longer ready.
    shared.alive.fetch_sub(1, Ordering::AcqRel);
    if let Some(r) = &shared.readiness {
        r.set_recognizer_loaded(false);
    }
}

/// One leg's masker and where its media time 0 lies on the wall clock.
struct Leg {
    masker: SpeechMasker,
    origin: Option<Instant>,
}

/// Spoken-identifier masking of one call's recorder path (both legs), owned by its relay
/// task. Call [`CallSpeech::before_frame`] before every recorder-path `process`, and
/// [`CallSpeech::on_reply`] for every [`Reply`] from [`CallSpeech::recv`].
pub struct CallSpeech {
    pool: Arc<SpeechPool>,
    metrics: Arc<Metrics>,
    legs: [Leg; 2],
    lookahead: Duration,
    tx: mpsc::UnboundedSender<Reply>,
    /// Taken by the relay shell ([`CallSpeech::take_replies`]) when the media core owns this.
    rx: Option<mpsc::UnboundedReceiver<Reply>>,
    /// Jobs at the pool whose reply has not been applied.
    outstanding: usize,
}

impl std::fmt::Debug for CallSpeech {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSpeech")
            .field("legs", &[&self.legs[0].masker, &self.legs[1].masker])
            .finish_non_exhaustive()
    }
}

impl CallSpeech {
    /// Maskers for both legs; fails when the look-ahead is too short for speech.
    pub fn new(
        pool: Arc<SpeechPool>,
        config: SpeechConfig,
        metrics: Arc<Metrics>,
    ) -> Result<CallSpeech, dsp::DspError> {
        let leg = || -> Result<Leg, dsp::DspError> {
            Ok(Leg {
                masker: SpeechMasker::new(config)?,
                origin: None,
            })
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(CallSpeech {
            pool,
            metrics,
            legs: [leg()?, leg()?],
            lookahead: Duration::from_millis(u64::from(config.lookahead_ms)),
            tx,
            rx: Some(rx),
            outstanding: 0,
        })
    }

    /// Next finished job of this call (cancel-safe); `None` once the receiver was taken.
    pub async fn recv(&mut self) -> Option<Reply> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        }
    }

    /// The finished jobs' channel, for a shell that hands this to the media core and waits
    /// for replies itself (apply each with [`CallSpeech::on_reply`]).
    pub fn take_replies(&mut self) -> Option<mpsc::UnboundedReceiver<Reply>> {
        self.rx.take()
    }

    /// Leg `i`'s media time 0 was at `origin` (first audio), for mapping times between legs.
    pub fn set_origin(&mut self, i: usize, origin: Instant) {
        if let Some(l) = self.legs.get_mut(i) {
            l.origin = Some(origin);
        }
    }

    /// Leg `i` skipped `samples` of a long gap (its media time jumped back by that much).
    pub fn rebased(&mut self, i: usize, samples: u64) {
        if let Some(o) = self.legs.get_mut(i).and_then(|l| l.origin.as_mut()) {
            *o += Duration::from_secs_f64(samples as f64 / RATE);
        }
    }

    /// Feed leg `i`'s next audio (the samples about to enter its pipeline), hand cut
    /// segments to the pool, and bring both pipelines' marks and undecided regions up to date.
    pub fn before_frame(&mut self, i: usize, input: &[i16], pipes: [&mut MaskPipeline; 2]) {
        if let Some(l) = self.legs.get_mut(i) {
            l.masker.push(input);
        }
        self.submit_jobs();
        self.sync(pipes);
    }

    /// Apply a finished job and bring the pipelines up to date.
    pub fn on_reply(&mut self, reply: Reply, pipes: [&mut MaskPipeline; 2]) {
        self.outstanding = self.outstanding.saturating_sub(1);
        let Some(leg) = self.legs.get_mut(reply.leg) else {
            return;
        };
        let m = &mut leg.masker;
        let worker_late = matches!(reply.result, Err(RecognizerError::Timeout));
        let failed = reply.result.is_err();
        let before = m.stats();
        m.complete(reply.id, reply.result);
        let after = m.stats();
        let outcome = if worker_late || after.late_results > before.late_results {
            RecognizerOutcome::Late
        } else if failed {
            RecognizerOutcome::Failed
        } else {
            RecognizerOutcome::Ok
        };
        self.metrics.recognizer().recognizer_segment(outcome);
        self.sync(pipes);
    }

    /// End of the call's audio: cut the open segments and send them (deadline one look-ahead
    /// from now). Then wait for [`CallSpeech::recv`] while [`CallSpeech::undecided`].
    pub fn finish(&mut self) {
        for l in &mut self.legs {
            if l.origin.is_some() {
                l.masker.flush();
            }
        }
        self.submit_jobs_with(Some(Instant::now() + self.lookahead));
    }

    /// Some leg still waits for a verdict (and the pool can still give one).
    pub fn undecided(&self) -> bool {
        !self.pool.is_dead()
            && self
                .legs
                .iter()
                .any(|l| l.masker.undecided_from().is_some())
    }

    /// Jobs sent to the pool and not answered yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The look-ahead: how long a verdict may take.
    pub fn lookahead(&self) -> Duration {
        self.lookahead
    }

    fn submit_jobs(&mut self) {
        self.submit_jobs_with(None);
    }

    fn submit_jobs_with(&mut self, fixed_deadline: Option<Instant>) {
        let now = Instant::now();
        for (i, l) in self.legs.iter_mut().enumerate() {
            while let Some(job) = l.masker.take_job() {
                self.outstanding += 1;
                let left = job.deadline.0.saturating_sub(l.masker.input_time().0);
                let deadline =
                    fixed_deadline.unwrap_or(now + Duration::from_secs_f64(left as f64 / RATE));
                if let Err(job) = self.pool.submit(i, job, deadline, &self.tx) {
                    self.outstanding -= 1;
                    self.metrics
                        .recognizer()
                        .recognizer_segment(RecognizerOutcome::Dropped);
                    // Muted whole: the masker marks a failed segment end to end.
                    l.masker.complete(job.id, Err(RecognizerError::Overloaded));
                }
            }
        }
    }

    fn sync(&mut self, pipes: [&mut MaskPipeline; 2]) {
        if self.pool.is_dead() {
            // No engine at all: nothing on the recorder path can be cleared.
            for p in pipes {
                p.set_undecided_from(Some(MediaTime(0)));
            }
            return;
        }
        let [a, b] = &mut self.legs;
        if let (Some(oa), Some(ob)) = (a.origin, b.origin) {
            // t_b = t_a - delta (samples).
            let delta = if ob >= oa {
                (ob - oa).as_secs_f64() * RATE
            } else {
                -((oa - ob).as_secs_f64() * RATE)
            } as i64;
            dsp::spoken::exchange_offset(&mut a.masker, &mut b.masker, delta);
        }
        for (l, p) in self.legs.iter_mut().zip(pipes) {
            let now = l.masker.input_time().0;
            while let Some((s, e)) = l.masker.poll_marks() {
                p.mark(MaskReason::SpokenId, s, e);
                self.metrics.media().mask_decision_latency(
                    MaskReason::SpokenId,
                    now.saturating_sub(s.0) as f64 / RATE,
                );
            }
            p.set_undecided_from(l.masker.undecided_from());
            if let Some(t) = p.stats().last_keypad_onset {
                l.masker.note_keypad(t);
            }
        }
    }
}

impl crate::core::media::SpeechHook for CallSpeech {
    fn set_origin(&mut self, side: crate::core::side::Side, origin: Instant) {
        CallSpeech::set_origin(self, side.index(), origin);
    }

    fn rebased(&mut self, side: crate::core::side::Side, samples: u64) {
        CallSpeech::rebased(self, side.index(), samples);
    }

    fn before_frame(
        &mut self,
        side: crate::core::side::Side,
        input: &[i16],
        pipes: [&mut MaskPipeline; 2],
    ) {
        CallSpeech::before_frame(self, side.index(), input, pipes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsp::mask::{MaskConfig, MaskSpan};
    use dsp::spoken::FakeRecognizer;
    use dsp::SampleRate;

    const LOOKAHEAD_MS: u32 = 3000;

    fn word(text: &str, from_ms: u64, to_ms: u64) -> Word {
        Word {
            text: text.into(),
            start: MediaTime(from_ms * 8),
            end: MediaTime(to_ms * 8),
            confidence: None,
        }
    }

    /// 0.8 s voiced bursts separated by 0.7 s pauses.
    fn voice(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let on = i % 12_000 < 6_400;
                let t = i as f32 / 8000.0;
                if on {
                    // a buzz rich in harmonics (one or two sinusoids would be a tone)
                    ((1..=20)
                        .map(|h| (std::f32::consts::TAU * 180.0 * h as f32 * t).sin() / h as f32)
                        .sum::<f32>()
                        * 4000.0) as i16
                } else {
                    0
                }
            })
            .collect()
    }

    fn pool_of(factory: RecognizerFactory, metrics: &Arc<Metrics>) -> Arc<SpeechPool> {
        SpeechPool::start("test", factory, 1, metrics.clone(), None).expect("threads")
    }

    fn wait(mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..500 {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Runs `audio` on leg 0 (leg 1 silent) through CallSpeech + pipelines, waiting for every
    /// verdict before the next frame (a pool that keeps up). Returns leg 0's output and spans.
    fn run_call(cs: &mut CallSpeech, audio: &[i16]) -> (Vec<i16>, Vec<MaskSpan>) {
        run_call_keyed(cs, audio, None)
    }

    /// [`run_call`] with an RFC 4733 key press marked on leg 0 at `keypad_ms` (as the relay's
    /// tap does when a telephone-event arrives).
    fn run_call_keyed(
        cs: &mut CallSpeech,
        audio: &[i16],
        keypad_ms: Option<u64>,
    ) -> (Vec<i16>, Vec<MaskSpan>) {
        let mask = MaskConfig {
            lookahead_ms: LOOKAHEAD_MS,
            undecided_until_told: true,
            ..MaskConfig::default()
        };
        let mut p = [MaskPipeline::new(mask), MaskPipeline::new(mask)];
        let origin = Instant::now();
        cs.set_origin(0, origin);
        cs.set_origin(1, origin);
        let delay = p[0].delay_samples() as usize;
        let silence = [0i16; 160];
        let mut out = vec![0i16; audio.len() + delay];
        let mut spans = Vec::new();
        let mut patient = true;
        for (k, chunk) in out.chunks_mut(160).enumerate() {
            if keypad_ms == Some(k as u64 * 20) {
                let at = MediaTime(k as u64 * 160);
                p[0].mark(MaskReason::Rfc4733, at, at + 800);
            }
            let input = audio.get(k * 160..(k * 160 + chunk.len()).min(audio.len()));
            let input = input
                .filter(|x| x.len() == chunk.len())
                .unwrap_or(&silence[..chunk.len()]);
            for leg in 0..2 {
                let x = if leg == 0 {
                    input
                } else {
                    &silence[..chunk.len()]
                };
                let [a, b] = &mut p;
                cs.before_frame(leg, x, [a, b]);
                // A pool that gives no answer in a second is stuck: stop waiting on it.
                while patient && cs.outstanding() > 0 {
                    let Some(r) = wait_reply(cs) else {
                        patient = false;
                        break;
                    };
                    let [a, b] = &mut p;
                    cs.on_reply(r, [a, b]);
                }
                let mut o = vec![0i16; chunk.len()];
                p[leg].process(x, &mut o);
                if leg == 0 {
                    chunk.copy_from_slice(&o);
                }
            }
            spans.extend(std::iter::from_fn(|| p[0].poll_span()));
        }
        (out[delay..].to_vec(), spans)
    }

    fn wait_reply(cs: &mut CallSpeech) -> Option<Reply> {
        for _ in 0..500 {
            if let Some(Ok(r)) = cs.rx.as_mut().map(|rx| rx.try_recv()) {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    #[test]
    fn words_in_time_become_spoken_id_spans() {
        let metrics = Arc::new(Metrics::new());
        let factory: RecognizerFactory = Arc::new(|| {
            Ok(
                Box::new(FakeRecognizer::timeline(vec![word("4532", 1600, 2000)]))
                    as BoxedRecognizer,
            )
        });
        let pool = pool_of(factory, &metrics);
        let config = crate::speech::tuned_config(LOOKAHEAD_MS);
        let mut cs = CallSpeech::new(pool, config, metrics.clone()).expect("valid");
        let audio = voice(8000 * 6);
        let (out, spans) = run_call(&mut cs, &audio);
        let id = spans
            .iter()
            .find(|s| s.reason == MaskReason::SpokenId)
            .expect("a spoken_id span");
        assert!(id.start.0 <= 1600 * 8 && id.end.0 >= 2000 * 8, "{id:?}");
        assert!(out[1700 * 8..1900 * 8].iter().all(|&x| x == 0), "muted");
        // Speech away from the number stays audible.
        assert!(out[4000 * 8..4600 * 8].iter().any(|&x| x != 0), "audible");
        let text = metrics.render();
        assert!(
            text.contains("callmask_recognizer_segments_total{outcome=\"ok\"}"),
            "{text}"
        );
        assert!(!text.contains("callmask_recognizer_segments_total{outcome=\"late\"} 1"));
    }

    #[test]
    fn a_keypad_answer_ends_the_ask_context_live() {
        // Bursts at 0, 1.5 and 3 s: the ask, the caller keying digits (the recognizer makes
        // words of it), then a harmless count. The key press (an RFC 4733 mark on the
        // recorder pipeline) makes the second burst the answer, so the count stays audible.
        let run = |keypad: Option<u64>| {
            let metrics = Arc::new(Metrics::new());
            let factory: RecognizerFactory = Arc::new(|| {
                Ok(Box::new(FakeRecognizer::timeline(vec![
                    word("card", 100, 400),
                    word("number?", 400, 700),
                    word("I'm", 1600, 1700),
                    word("not", 1700, 1800),
                    word("going", 1800, 1950),
                    word("to", 1950, 2050),
                    word("do", 2050, 2150),
                    word("it", 2150, 2250),
                    word("I", 3050, 3150),
                    word("called", 3150, 3350),
                    word("two", 3350, 3550),
                    word("times", 3550, 3750),
                ])) as BoxedRecognizer)
            });
            let pool = pool_of(factory, &metrics);
            let config = crate::speech::tuned_config(LOOKAHEAD_MS);
            let mut cs = CallSpeech::new(pool, config, metrics).expect("valid");
            let audio = voice(8000 * 6);
            let (out, _) = run_call_keyed(&mut cs, &audio, keypad);
            out[3350 * 8..3550 * 8].iter().any(|&x| x != 0)
        };
        assert!(run(Some(1600)), "count audible after a keypad answer");
        assert!(!run(None), "without it the count is the awaited answer");
    }

    #[test]
    fn engine_that_cannot_load_mutes_everything() {
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::new());
        let factory: RecognizerFactory = Arc::new(|| Err("no model at /nonexistent".into()));
        let pool = SpeechPool::start("test", factory, 2, metrics.clone(), Some(readiness.clone()))
            .expect("threads");
        assert!(wait(|| pool.is_dead()));
        assert!(readiness.not_ready().contains(&"recognizer_loaded"));
        let config = crate::speech::tuned_config(LOOKAHEAD_MS);
        let mut cs = CallSpeech::new(pool, config, metrics).expect("valid");
        let audio = voice(8000 * 5);
        let (out, _) = run_call(&mut cs, &audio);
        assert!(out.iter().all(|&x| x == 0), "recorder path must be silent");
    }

    /// Panics on every segment (a bug in an engine).
    struct Panics;

    impl Recognizer for Panics {
        fn transcribe(&mut self, _: &[i16], _: SampleRate) -> Result<Vec<Word>, RecognizerError> {
            panic!("engine bug");
        }
    }

    #[test]
    fn a_recognizer_that_panics_mutes_its_segments_and_the_worker_goes_on() {
        let metrics = Arc::new(Metrics::new());
        let factory: RecognizerFactory = Arc::new(|| Ok(Box::new(Panics) as BoxedRecognizer));
        let pool = pool_of(factory, &metrics);
        assert!(wait(|| pool.alive() == 1));
        let config = crate::speech::tuned_config(LOOKAHEAD_MS);
        let mut cs = CallSpeech::new(pool.clone(), config, metrics.clone()).expect("valid");
        let audio = voice(8000 * 5);
        let (out, _) = run_call(&mut cs, &audio);
        // Every burst is a segment the engine failed on: muted, each counted as failed.
        let voiced = |ms: usize| out[ms * 8..(ms + 200) * 8].iter().any(|&x| x != 0);
        assert!(
            !voiced(200) && !voiced(1700) && !voiced(3200),
            "a failed segment leaked"
        );
        let text = metrics.render();
        let failed = text
            .lines()
            .find(|l| l.starts_with("callmask_recognizer_segments_total{outcome=\"failed\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(failed >= 3.0, "{text}");
        // The worker survived every panic: still alive, still answering.
        assert_eq!(pool.alive(), 1);
        assert!(!pool.is_dead());
    }

    /// A worker stuck in one job: its segments stay muted (undecided audio never leaves),
    /// the watchdog counts the stuck worker and takes readiness down; when the job returns
    /// at last, both recover and the late answer is not used.
    #[test]
    fn a_stalled_recognizer_is_muted_counted_and_reported_not_ready() {
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::new());
        let state = Arc::new((Mutex::new(false), AtomicUsize::new(0)));
        let st = state.clone();
        let factory: RecognizerFactory =
            Arc::new(move || Ok(Box::new(Gate(st.clone())) as BoxedRecognizer));
        let pool = SpeechPool::start_with(
            "test",
            factory,
            1,
            metrics.clone(),
            Some(readiness.clone()),
            Duration::from_millis(300),
        )
        .expect("threads");
        assert!(wait(|| pool.alive() == 1));
        let config = crate::speech::tuned_config(LOOKAHEAD_MS);
        let mut cs = CallSpeech::new(pool.clone(), config, metrics.clone()).expect("valid");
        let audio = voice(8000 * 4);
        let (out, _) = run_call(&mut cs, &audio);
        assert!(state.1.load(Ordering::SeqCst) >= 1, "the engine got a job");
        assert!(
            out.iter().all(|&x| x == 0),
            "audio left while the recognizer was stuck"
        );
        let stalled = |m: &Metrics| m.render().contains("callmask_recognizer_stalled_workers 1");
        assert!(wait(|| stalled(&metrics)), "{}", metrics.render());
        assert!(readiness.not_ready().contains(&"recognizer_responsive"));
        // The job returns at last: the worker is counted as recovered, ready again.
        if let Ok(mut open) = state.0.lock() {
            *open = true;
        }
        assert!(wait(|| metrics
            .render()
            .contains("callmask_recognizer_stalled_workers 0")));
        assert!(wait(|| !readiness
            .not_ready()
            .contains(&"recognizer_responsive")));
    }

    /// Blocks each call until told, counting calls.
    struct Gate(Arc<(Mutex<bool>, AtomicUsize)>);

    impl Recognizer for Gate {
        fn transcribe(&mut self, _: &[i16], _: SampleRate) -> Result<Vec<Word>, RecognizerError> {
            self.0 .1.fetch_add(1, Ordering::SeqCst);
            while !*self
                .0
                 .0
                .lock()
                .map_err(|_| RecognizerError::Engine("lock"))?
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(Vec::new())
        }
    }

    fn job(id: u64) -> Job {
        Job {
            id: JobId(id),
            start: MediaTime(0),
            end: MediaTime(800),
            deadline: MediaTime(8000),
            pcm: vec![0; 800],
            rate: SampleRate::NARROWBAND,
        }
    }

    #[test]
    fn full_queue_refuses_and_late_jobs_are_not_run() {
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new((Mutex::new(false), AtomicUsize::new(0)));
        let st = state.clone();
        let factory: RecognizerFactory =
            Arc::new(move || Ok(Box::new(Gate(st.clone())) as BoxedRecognizer));
        let readiness = Arc::new(Readiness::new());
        let pool = SpeechPool::start("test", factory, 1, metrics.clone(), Some(readiness.clone()))
            .expect("threads");
        assert!(
            wait(|| !readiness.not_ready().contains(&"recognizer_loaded")),
            "ready once loaded"
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let later = Instant::now() + Duration::from_secs(30);
        // One running (blocked), QUEUE_PER_WORKER queued, the next refused.
        assert!(pool.submit(0, job(0), later, &tx).is_ok());
        assert!(wait(|| state.1.load(Ordering::SeqCst) == 1));
        // This one's deadline passes while it waits.
        assert!(pool.submit(0, job(1), Instant::now(), &tx).is_ok());
        for id in 2..QUEUE_PER_WORKER as u64 + 1 {
            assert!(pool.submit(0, job(id), later, &tx).is_ok(), "job {id}");
        }
        assert!(pool.submit(0, job(99), later, &tx).is_err(), "queue full");
        assert!(metrics.render().contains(&format!(
            "callmask_recognizer_queued_jobs {QUEUE_PER_WORKER}"
        )));
        *state.0.lock().expect("lock") = true;
        let mut replies = Vec::new();
        assert!(wait(|| {
            while let Ok(r) = rx.try_recv() {
                replies.push(r);
            }
            replies.len() == QUEUE_PER_WORKER + 1
        }));
        let late = replies.iter().find(|r| r.id == JobId(1)).expect("job 1");
        assert_eq!(late.result, Err(RecognizerError::Timeout));
        // Job 1 was never transcribed.
        assert_eq!(state.1.load(Ordering::SeqCst), QUEUE_PER_WORKER);
        assert!(metrics
            .render()
            .contains("callmask_recognizer_queued_jobs 0"));
    }
}
