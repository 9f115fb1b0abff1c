//! G.711 µ-law decode and encode per 20 ms frame (160 samples), on the speech input.
//! Throughput is in frames (criterion prints `elem/s` = frames/s).

use std::hint::black_box;

use callmask_benches::{speech, FRAME};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsp::g711::{decode_ulaw, encode_ulaw};

fn benches(c: &mut Criterion) {
    let input = speech();
    eprintln!("g711 input: {}", input.source);
    let linear = &input.frames;
    let ulaw: Vec<[u8; FRAME]> = linear
        .iter()
        .map(|f| {
            let mut b = [0u8; FRAME];
            encode_ulaw(f, &mut b);
            b
        })
        .collect();

    let mut group = c.benchmark_group("g711");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    let mut pcm = [0i16; FRAME];
    group.bench_function("decode_ulaw", |b| {
        b.iter(|| {
            black_box(decode_ulaw(black_box(&ulaw[i]), &mut pcm));
            black_box(&pcm);
            i = (i + 1) % ulaw.len();
        });
    });

    let mut i = 0;
    let mut bytes = [0u8; FRAME];
    group.bench_function("encode_ulaw", |b| {
        b.iter(|| {
            black_box(encode_ulaw(black_box(&linear[i]), &mut bytes));
            black_box(&bytes);
            i = (i + 1) % linear.len();
        });
    });
    group.finish();
}

criterion_group!(g711, benches);
criterion_main!(g711);
