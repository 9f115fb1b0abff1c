//! The recorder-path mask pipeline driven by arbitrary operations: frames of audio of any
//! length, closed spans, spans opened and closed later, undecided regions. The invariant a
//! leak would break: no output sample whose media time lies inside a span marked before that
//! sample left the delay line is anything but silence. Besides that, no panic and output as
//! long as input.
#![no_main]

use dsp::mask::{MaskConfig, MaskPipeline, MaskReason, Replacement};
use dsp::MediaTime;
use libfuzzer_sys::fuzz_target;

/// Upper bound of audio per input (keeps each run short).
const MAX_SAMPLES: usize = 8000 * 20;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, ops)) = data.split_first() else {
        return;
    };
    let config = MaskConfig {
        lookahead_ms: u32::from(cfg % 8) * 20 + 20,
        inband_dtmf: cfg & 0x80 != 0,
        replacement: Replacement::Silence,
        ..MaskConfig::default()
    };
    let mut p = MaskPipeline::new(config);
    // Spans that must be silent in the output: [start, end) in media time, end None = open.
    let mut must_mute: Vec<(u64, Option<u64>)> = Vec::new();
    let mut open = Vec::new();
    let mut out: Vec<i16> = Vec::new();
    let mut x: u32 = 0x9e37_79b9;
    for op in ops.chunks(4) {
        let [kind, a, b, c] = [0, 1, 2, 3].map(|i| op.get(i).copied().unwrap_or(0));
        // Where output stands: marks from here on are in time.
        let now = p.output_time().0;
        match kind % 5 {
            0 | 1 => {
                let n = usize::from(a) * 4 + usize::from(b % 4) + 1;
                if out.len() + n > MAX_SAMPLES {
                    break;
                }
                let input: Vec<i16> = (0..n)
                    .map(|_| {
                        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        // Loud audio, never silence, so a leak is visible.
                        ((x >> 16) as i16) | 0x0400
                    })
                    .collect();
                let mut o = vec![0i16; n];
                p.process(&input, &mut o);
                out.extend_from_slice(&o);
            }
            2 => {
                let start = now + u64::from(a) * 8;
                let end = start + u64::from(b) * 8 + 1;
                p.mark(MaskReason::SpokenId, MediaTime(start), MediaTime(end));
                must_mute.push((start, Some(end)));
            }
            3 => {
                let start = now + u64::from(a) * 8;
                let id = p.begin_span(MaskReason::SecureMode, MediaTime(start));
                open.push((id, start, must_mute.len()));
                must_mute.push((start, None));
            }
            _ => {
                if open.is_empty() {
                    continue;
                }
                let (id, start, slot) = open.remove(usize::from(c) % open.len());
                // An end is never before its start, nor before what already left.
                let end = (start + u64::from(b) * 8 + 1).max(p.output_time().0);
                p.end_span(id, MediaTime(end));
                must_mute[slot] = (start, Some(end));
            }
        }
    }
    // Output index i carries media time i - delay (the look-ahead's delay line).
    let delay = p.delay_samples() as usize;
    let left = out.len().saturating_sub(delay);
    if left == 0 {
        return;
    }
    for (start, end) in must_mute {
        let end = end.map_or(left, |e| (e as usize).min(left));
        let start = (start as usize).min(end);
        if let Some(i) = out[delay + start..delay + end].iter().position(|&s| s != 0) {
            panic!(
                "media time {} inside span [{start}, {end}) left unmasked",
                start + i
            );
        }
    }
});
