//! Media workers: N threads, each running its own single-threaded tokio runtime, each owning
//! the calls placed on it outright (their sockets are registered with that worker's reactor,
//! their tasks never migrate, and no per-packet state is shared between workers). Signalling
//! and the HTTP API stay on the main runtime, so a media overload queues behind media, not
//! behind SIP.
//!
//! Placement is per call, at its first media upsert: the worker with the fewest live calls
//! (ties to the lowest index). The only cross-worker state is that per-worker call count,
//! touched twice per call (placed, ended), never per packet.
//!
//! Shutdown: dropping [`MediaWorkers`] does not cancel calls. Each worker keeps running until
//! its calls have ended (their tasks see their command channel close when the hub goes, flush
//! the recorder path and return), for at most [`DRAIN_LIMIT`].
#![allow(clippy::disallowed_methods)] // io shell: the drain limit reads the clock

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How often a worker gives its core away (`sched_yield`) although it still has packets to
/// handle. Under a real-time policy (`chrt -f`, as rtpengine is run, and as the relay
/// benchmark runs callmask) a thread that never blocks is never preempted by threads of its
/// own priority: a saturated worker starved the recorder thread sharing its core until the
/// recorder's queue overflowed and recordings lost audio (3,000–111,000 frames per run at
/// 1,000 calls on one core). Checked as packets are handled (the relay already reads
/// the clock per packet), so an idle worker never wakes for it; under the default policy it
/// costs one cheap syscall per interval of traffic.
const YIELD_EVERY: Duration = Duration::from_millis(2);

thread_local! {
    static LAST_YIELD: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Called by a call's relay task after each packet, with the time it read for it: gives
/// the core away when this thread has not done so for [`YIELD_EVERY`].
pub fn yield_if_due(now: Instant) {
    let _ = LAST_YIELD.try_with(|last| match last.get() {
        Some(t) if now.saturating_duration_since(t) < YIELD_EVERY => {}
        Some(_) => {
            last.set(Some(now));
            std::thread::yield_now();
        }
        None => last.set(Some(now)),
    });
}

/// Longest a worker waits for its calls to finish after the workers were dropped.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

struct Worker {
    handle: Handle,
    calls: Arc<AtomicUsize>,
    /// `callmask_media_worker_calls{worker}`: the same count, for dashboards.
    gauge: Option<prometheus::IntGauge>,
    stop: Option<oneshot::Sender<()>>,
    /// Kept to name the thread's ownership; never joined (see the module docs).
    _thread: JoinHandle<()>,
}

/// The media worker threads. Dropping this lets them finish their calls and exit.
pub struct MediaWorkers {
    workers: Vec<Worker>,
}

impl std::fmt::Debug for MediaWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaWorkers")
            .field("loads", &self.loads())
            .finish()
    }
}

impl MediaWorkers {
    /// Starts `n` workers (at least one), threads named `callmask-media-<i>`.
    pub fn start(n: usize) -> std::io::Result<MediaWorkers> {
        Self::start_with(n, None)
    }

    /// [`MediaWorkers::start`], each worker's live calls also exported as
    /// `callmask_media_worker_calls{worker="<i>"}`.
    pub fn start_with(
        n: usize,
        metrics: Option<&crate::metrics::MediaMetrics>,
    ) -> std::io::Result<MediaWorkers> {
        let mut workers = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let calls = Arc::new(AtomicUsize::new(0));
            let live = calls.clone();
            let thread = std::thread::Builder::new()
                .name(format!("callmask-media-{i}"))
                .spawn(move || {
                    // Drives every task spawned on this worker until told to stop, then
                    // until its calls have flushed (bounded).
                    rt.block_on(async move {
                        let _ = stopped.await;
                        let until = Instant::now() + DRAIN_LIMIT;
                        while live.load(Ordering::Acquire) > 0 && Instant::now() < until {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    });
                })?;
            // Resolving the child exports it (at 0).
            let gauge = metrics.map(|m| m.worker_calls(i));
            workers.push(Worker {
                handle,
                calls,
                gauge,
                stop: Some(stop),
                _thread: thread,
            });
        }
        Ok(MediaWorkers { workers })
    }

    /// Worker count.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false (there is at least one worker); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Live calls per worker.
    pub fn loads(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.calls.load(Ordering::Relaxed))
            .collect()
    }

    /// Runs one call's task on the least-loaded worker; returns the worker's index.
    pub fn spawn_call<F>(&self, task: F) -> usize
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (i, w) = self
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.calls.load(Ordering::Relaxed))
            .expect("start() makes at least one worker");
        w.calls.fetch_add(1, Ordering::Relaxed);
        let calls = w.calls.clone();
        let gauge = w.gauge.clone();
        if let Some(g) = &gauge {
            g.inc();
        }
        w.handle.spawn(async move {
            task.await;
            calls.fetch_sub(1, Ordering::Release);
            if let Some(g) = gauge {
                g.dec();
            }
        });
        i
    }
}

impl Drop for MediaWorkers {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[test]
    fn yields_at_most_once_per_interval_of_traffic() {
        std::thread::spawn(|| {
            let t0 = Instant::now();
            let last = || LAST_YIELD.with(|l| l.get());
            yield_if_due(t0);
            assert_eq!(last(), Some(t0), "the first packet starts the interval");
            yield_if_due(t0 + YIELD_EVERY / 2);
            assert_eq!(last(), Some(t0), "not yet due");
            yield_if_due(t0 + YIELD_EVERY);
            assert_eq!(
                last(),
                Some(t0 + YIELD_EVERY),
                "due: yielded, interval restarted"
            );
        })
        .join()
        .expect("thread");
    }

    /// Calls go to the least-loaded worker, each call's task runs on its worker's own thread
    /// (never migrates: a current-thread runtime per worker), and the counts and gauges
    /// follow calls ending.
    #[test]
    fn two_workers_split_calls_and_each_call_stays_on_its_worker() {
        let registry = prometheus::Registry::new();
        let metrics = crate::metrics::MediaMetrics::register(&registry).expect("metrics");
        let workers = MediaWorkers::start_with(2, Some(&metrics)).expect("workers");
        let seen: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let mut ends: Vec<Option<oneshot::Sender<()>>> = Vec::new();
        let mut placed = Vec::new();
        for call in 0..6 {
            let (end_tx, end_rx) = oneshot::channel::<()>();
            ends.push(Some(end_tx));
            let seen = seen.clone();
            placed.push(workers.spawn_call(async move {
                // Where the call runs before and after an await (a packet later).
                let name = || std::thread::current().name().unwrap_or("?").to_string();
                let before = name();
                let _ = end_rx.await;
                let after = name();
                assert_eq!(before, after, "a call's task never moves to another thread");
                seen.lock().expect("lock").push((call, after));
            }));
        }
        assert_eq!(placed, vec![0, 1, 0, 1, 0, 1], "least-loaded placement");
        assert_eq!(workers.loads(), vec![3, 3]);
        assert_eq!(metrics.worker_calls(0).get(), 3);
        assert_eq!(metrics.worker_calls(1).get(), 3);
        // End the calls on worker 0: new calls then go there first.
        for k in [0, 2, 4] {
            if let Some(end) = ends[k].take() {
                let _ = end.send(());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while workers.loads() != vec![0, 3] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(workers.loads(), vec![0, 3]);
        assert_eq!(metrics.worker_calls(0).get(), 0);
        let (tx, rx) = oneshot::channel::<()>();
        assert_eq!(
            workers.spawn_call(async move {
                let _ = rx.await;
            }),
            0
        );
        for k in [1, 3, 5] {
            if let Some(end) = ends[k].take() {
                let _ = end.send(());
            }
        }
        let _ = tx.send(());
        while workers.loads() != vec![0, 0] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(workers.loads(), vec![0, 0]);
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 6);
        let threads: HashSet<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            threads,
            HashSet::from(["callmask-media-0", "callmask-media-1"]),
            "both worker threads carried calls"
        );
        for (call, thread) in &seen {
            assert_eq!(thread, &format!("callmask-media-{}", placed[*call]));
        }
    }
}
