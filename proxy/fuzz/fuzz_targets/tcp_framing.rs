//! SIP over a byte stream (TCP/TLS): the incremental framer fed the same bytes in arbitrary
//! pieces must cut exactly the frames (and meet exactly the error) it cuts when fed them at
//! once — a trickling peer changes the cost, never the result — and never panic.
#![no_main]

use callmask::core::sip::{Limits, StreamFramer};
use libfuzzer_sys::fuzz_target;

/// What the framer produced: each frame's length, then `Err` if the stream was refused.
fn frames(stream: &[u8], pieces: &[usize], limits: &Limits) -> Vec<Result<usize, ()>> {
    let mut framer = StreamFramer::default();
    let (mut buf, mut fed, mut out) = (Vec::new(), 0, Vec::new());
    for &p in pieces {
        let end = (fed + p).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            match framer.next(&buf, limits) {
                Ok(Some((_, n))) => {
                    assert!(n > 0 && n <= buf.len(), "a frame is a non-empty prefix");
                    out.push(Ok(n));
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(_) => {
                    out.push(Err(()));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    // Small limits so the size checks are reached too.
    let limits = Limits {
        max_message: 2048,
        max_headers: 32,
        max_line: 512,
    };
    let whole = frames(stream, &[stream.len()], &limits);
    // Pieces of 1..=16 bytes, their sizes drawn from the seed byte.
    let mut pieces = Vec::new();
    let (mut left, mut x) = (stream.len(), u32::from(seed) | 1);
    while left > 0 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let p = ((x >> 16) as usize % 16 + 1).min(left);
        pieces.push(p);
        left -= p;
    }
    assert_eq!(frames(stream, &pieces, &limits), whole, "trickled != whole");
});
