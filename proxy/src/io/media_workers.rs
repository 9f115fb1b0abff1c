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

/// Longest a worker waits for its calls to finish after the workers were dropped.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

struct Worker {
    handle: Handle,
    calls: Arc<AtomicUsize>,
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
            workers.push(Worker {
                handle,
                calls,
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
        w.handle.spawn(async move {
            task.await;
            calls.fetch_sub(1, Ordering::Release);
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
