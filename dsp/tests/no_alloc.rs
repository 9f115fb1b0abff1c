//! The per-frame path allocates nothing: a counting global allocator wraps the system one and
//! counts allocations made on this test's thread while frames are processed (DESIGN: "no
//! allocation per frame"; STYLE habit 7).
#![allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; test-only

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use dsp::mask::{MaskConfig, MaskPipeline, MaskReason};
use dsp::rfc4733::{EventTracker, TelephoneEvent};
use dsp::MediaTime;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Speech-like noise with DTMF bursts, 8 kHz.
fn signal(n: usize) -> Vec<i16> {
    let mut rng = 0x2545_f491u32;
    (0..n)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let noise = ((rng >> 20) as f32 - 2048.0) * 0.5;
            let t = i as f32 / 8000.0;
            let in_tone = (i / 800) % 3 == 1; // 100 ms tones every 300 ms
            let tone = if in_tone {
                6000.0 * (std::f32::consts::TAU * 770.0 * t).sin()
                    + 6000.0 * (std::f32::consts::TAU * 1336.0 * t).sin()
            } else {
                1500.0 * (std::f32::consts::TAU * 180.0 * t).sin()
            };
            (noise + tone) as i16
        })
        .collect()
}

#[test]
fn per_frame_path_does_not_allocate() {
    let input = signal(8000 * 10);
    let mut pipe = MaskPipeline::new(MaskConfig::default());
    let mut tracker = EventTracker::new(1600);
    let mut out = [0i16; 160];
    let ev = TelephoneEvent::parse(&[0x05, 0x0a, 0x00, 0xa0]).expect("valid event");
    // Warm up outside the counted region (first-use initialisation is not per frame).
    pipe.process(&input[..160], &mut out);

    COUNTING.with(|c| c.set(true));
    let mut spans = 0;
    for (k, frame) in input.chunks_exact(160).enumerate().skip(1) {
        pipe.process(frame, &mut out);
        // Outside marks and RFC 4733 tracking on the same path.
        if k % 50 == 0 {
            let t = pipe.input_time();
            let id = pipe.begin_span(MaskReason::Rfc4733, t);
            pipe.end_span(id, MediaTime(t.0 + 400));
            let payload = ev.write();
            let _ = tracker.handle((k as u32) * 160, true, &payload);
            while tracker.poll_update().is_some() {}
        }
        while pipe.poll_span().is_some() {
            spans += 1;
        }
    }
    COUNTING.with(|c| c.set(false));
    assert!(
        spans > 10,
        "the signal exercised the masking path ({spans} spans)"
    );
    assert!(pipe.stats().dtmf_tones > 5, "tones were detected");
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed),
        0,
        "allocations on the per-frame path"
    );
}
