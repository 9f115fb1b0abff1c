//! The in-band DTMF receiver alone, per 20 ms frame (160 samples at 8 kHz), on speech, DTMF
//! bursts and silence; with `--features spandsp`, spandsp's `dtmf_rx` on the same frames in
//! the same group, each input's pair measured back to back so the ratio is easy to read.
//!
//! Throughput is in frames (criterion prints `elem/s` = frames/s). Target: ours ≥ 3× spandsp.
//! spandsp is a bench-only speed reference (LGPL), never linked into the product.

use std::hint::black_box;

use callmask_benches::{count_callmask_tones, standard_inputs, Frame, Input};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dsp::dtmf::{DtmfConfig, DtmfDetector};

/// Cycles through `frames` forever, one frame per call.
struct Cycle<'a> {
    frames: &'a [Frame],
    i: usize,
}

impl<'a> Cycle<'a> {
    fn new(frames: &'a [Frame]) -> Self {
        Cycle { frames, i: 0 }
    }

    #[inline]
    fn next_frame(&mut self) -> &'a Frame {
        let f = &self.frames[self.i];
        self.i += 1;
        if self.i == self.frames.len() {
            self.i = 0;
        }
        f
    }
}

fn bench_callmask(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    input: &Input,
) {
    let mut det = DtmfDetector::new(DtmfConfig::default());
    let mut frames = Cycle::new(&input.frames);
    group.bench_function(BenchmarkId::new("callmask", input.name), |b| {
        b.iter(|| {
            det.process(black_box(frames.next_frame()));
            while let Some(ev) = det.poll_event() {
                black_box(ev);
            }
            black_box(det.pending_since());
        });
    });
}

#[cfg(feature = "spandsp")]
fn bench_spandsp(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    input: &Input,
) {
    use callmask_benches::spandsp::SpandspDtmfRx;
    let mut rx = SpandspDtmfRx::new();
    let mut frames = Cycle::new(&input.frames);
    group.bench_function(BenchmarkId::new("spandsp", input.name), |b| {
        b.iter(|| {
            rx.process(black_box(frames.next_frame()));
        });
    });
    black_box(rx.digits());
}

#[cfg(not(feature = "spandsp"))]
fn bench_spandsp(
    _: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    _: &Input,
) {
}

fn benches(c: &mut Criterion) {
    let inputs = standard_inputs();
    for input in &inputs {
        #[cfg(feature = "spandsp")]
        let spandsp = format!(
            ", spandsp {}",
            callmask_benches::spandsp::count_spandsp_tones(&input.frames)
        );
        #[cfg(not(feature = "spandsp"))]
        let spandsp = String::new();
        eprintln!(
            "dtmf_detect input {}: {}; tones per pass: callmask {}{spandsp}",
            input.name,
            input.source,
            count_callmask_tones(&input.frames)
        );
    }
    let mut group = c.benchmark_group("dtmf_detect");
    group.throughput(Throughput::Elements(1));
    for input in &inputs {
        bench_callmask(&mut group, input);
        bench_spandsp(&mut group, input);
    }
    group.finish();
}

criterion_group!(dtmf_detect, benches);
criterion_main!(dtmf_detect);
