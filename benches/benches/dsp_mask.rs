//! DTMF detect + mask per 20 ms frame (160 samples at 8 kHz): `MaskPipeline::process` with the
//! in-band receiver on and default settings, plus draining `poll_span`, as the relay does for
//! every recorder-bound stream.
//!
//! Throughput is in frames (criterion prints `elem/s` = frames/s). Target: ≥ 1,000,000
//! frames/s on one core (20,000 concurrent streams × 50 frames/s).
//!
//! - `1_stream/<input>`: one pipeline fed the input in order (hot caches: best case).
//! - `1000_streams/<input>`: 1,000 pipelines, one frame each per iteration, round-robin, each
//!   at its own offset into the input: the realistic relay case, pipeline state mostly out of
//!   L1/L2 between its frames.

use std::hint::black_box;

use callmask_benches::{count_callmask_tones, standard_inputs, Frame, Input, FRAME};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dsp::mask::{MaskConfig, MaskPipeline};

/// Streams in the round-robin variant.
const STREAMS: usize = 1000;

fn process_frame(pipe: &mut MaskPipeline, frame: &Frame, out: &mut Frame) {
    let report = pipe.process(black_box(frame), out);
    while let Some(span) = pipe.poll_span() {
        black_box(span);
    }
    black_box((&*out, report));
}

fn bench_one_stream(c: &mut Criterion, input: &Input) {
    let mut group = c.benchmark_group("dsp_mask");
    group.throughput(Throughput::Elements(1));
    let frames = &input.frames;
    let mut pipe = MaskPipeline::new(MaskConfig::default());
    let mut out = [0i16; FRAME];
    let mut i = 0;
    group.bench_function(BenchmarkId::new("1_stream", input.name), |b| {
        b.iter(|| {
            process_frame(&mut pipe, &frames[i], &mut out);
            i += 1;
            if i == frames.len() {
                i = 0;
            }
        });
    });
    group.finish();
}

fn bench_many_streams(c: &mut Criterion, input: &Input) {
    let mut group = c.benchmark_group("dsp_mask");
    group.throughput(Throughput::Elements(STREAMS as u64));
    let frames = &input.frames;
    let len = frames.len();
    let mut pipes: Vec<MaskPipeline> = (0..STREAMS)
        .map(|_| MaskPipeline::new(MaskConfig::default()))
        .collect();
    // Stream k reads frame (t + offset[k]) % len: a continuous stream per pipeline, streams
    // out of phase with each other.
    let offsets: Vec<usize> = (0..STREAMS).map(|k| (k * 7919) % len).collect();
    let mut out = [0i16; FRAME];
    let mut t = 0;
    group.bench_function(
        BenchmarkId::new(format!("{STREAMS}_streams"), input.name),
        |b| {
            b.iter(|| {
                for (pipe, &off) in pipes.iter_mut().zip(&offsets) {
                    let mut idx = t + off;
                    if idx >= len {
                        idx -= len;
                    }
                    process_frame(pipe, &frames[idx], &mut out);
                }
                t += 1;
                if t == len {
                    t = 0;
                }
            });
        },
    );
    group.finish();
}

fn benches(c: &mut Criterion) {
    let inputs = standard_inputs();
    eprintln!(
        "dsp_mask: MaskPipeline is {} bytes inline (+ the delay line's heap buffer) per stream",
        std::mem::size_of::<MaskPipeline>()
    );
    for input in &inputs {
        eprintln!(
            "dsp_mask input {}: {}; callmask receiver confirms {} tones per pass",
            input.name,
            input.source,
            count_callmask_tones(&input.frames)
        );
    }
    for input in &inputs {
        bench_one_stream(c, input);
    }
    for input in &inputs {
        bench_many_streams(c, input);
    }
}

criterion_group!(dsp_mask, benches);
criterion_main!(dsp_mask);
