//! Heap memory per call held by the media core (issue 15's "memory per call"): a counting
//! global allocator measures the bytes still allocated after N calls were created, given a
//! stream spec and fed 1 s of 20 ms PCMU from both sides (tap events drained and dropped, as
//! the shell hands them on), divided by N. Variants as in `relay_core`: relay only, relay +
//! tap (DTMF mask pipeline, 80 ms look-ahead), relay + tap + agent clamp. Speech masking off.
//! Sockets, the per-call task and the recorder thread's per-call state (e.g. a `wav` sink's
//! file buffer) are not in it: `scripts/relay_bench.sh` reads the process's RSS for those.
//! Deterministic (no clock in the result): `cargo bench -p callmask-benches --bench call_memory`.
// Virtual time: one clock read for the origin, then 20 ms steps per packet.
#![allow(clippy::disallowed_methods)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callmask::core::media::{CallCommand, CallMedia, CallMeta, SocketId};
use callmask::core::proxy::{CallRef, Side, StreamSpec};
use callmask::core::relay::LocalPort;
use callmask::metrics::Metrics;
use callmask_benches::FRAME;
use config::types::AgentDtmfMode;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CALLS: usize = 200;

fn spec(i: u16) -> StreamSpec {
    common::pcmu_spec(
        SocketAddr::from(([127, 0, 0, 1], 40_000)),
        SocketAddr::from(([127, 0, 0, 1], 50_000)),
        10_000 + 4 * i,
        10_002 + 4 * i,
    )
}

/// Bytes held per call after `CALLS` calls, each with 1 s of media both ways.
fn per_call(tap: bool, agent_dtmf: AgentDtmfMode, metrics: &Arc<Metrics>) -> isize {
    let t0 = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let mut calls = Vec::with_capacity(CALLS);
    let mut packet = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    packet.extend_from_slice(&[0xff; FRAME]);
    let peers = [
        (Side::Pbx, SocketAddr::from(([127, 0, 0, 1], 40_000))),
        (Side::Agents, SocketAddr::from(([127, 0, 0, 1], 50_000))),
    ];
    for c in 0..CALLS {
        let config = common::media_config(tap, agent_dtmf);
        let stats = metrics.calls().new_call();
        let mut m: CallMedia = CallMedia::new(
            CallRef(c as u64 + 1),
            config,
            Side::Pbx,
            CallMeta::default(),
            metrics.clone(),
            stats,
            t0,
        );
        m.handle_command(t0, CallCommand::Spec(vec![spec(c as u16)]));
        while m.poll_event().is_some() {}
        for i in 0..50u32 {
            packet[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            packet[4..8].copy_from_slice(&(i * FRAME as u32).to_be_bytes());
            let now = t0 + Duration::from_millis(u64::from(i) * 20);
            for (side, from) in peers {
                let socket = SocketId {
                    stream: 0,
                    side,
                    port: LocalPort::Rtp,
                };
                let _ = m.handle_datagram(now, socket, from, &packet);
                while m.poll_tap().is_some() {}
            }
        }
        calls.push(m);
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    drop(calls);
    held / CALLS as isize
}

fn main() {
    // Criterion's arguments (`--bench`, filters) are accepted and ignored.
    let metrics = Arc::new(Metrics::new());
    // One call first, so that lazily built process-wide state is not charged to the rows.
    per_call(true, AgentDtmfMode::Drop, &metrics);
    println!(
        "call_memory: bytes held per call by CallMedia, inline ({} B) and on the heap \
         ({CALLS} calls, 1 s of PCMU each way)",
        std::mem::size_of::<CallMedia>()
    );
    for (name, tap, agent) in [
        ("relay_only", false, AgentDtmfMode::Pass),
        ("relay_tap", true, AgentDtmfMode::Pass),
        ("relay_tap_agent_clamp", true, AgentDtmfMode::Drop),
    ] {
        let b = per_call(tap, agent, &metrics);
        println!("{name:>24}: {b:>7} B ({:.1} KiB)", b as f64 / 1024.0);
    }
}
