//! Two-direction aligner: turns the independently arriving caller and agent frames into one
//! interleaved stereo stream that can be appended to a file as the call goes on.
//!
//! Each direction has a small pending buffer covering the output positions from `emitted`
//! on. Output is released up to the point both directions are known, or up to [`LAG`]
//! behind the direction that is furthest ahead (the other one is then silent there: it is
//! stalled, on hold, or has not started). Audio that arrives for positions already released
//! is dropped. Memory per call is therefore bounded by about `LAG` samples per direction.

use super::RATE;
use crate::core::side::{BySide, Side};

/// Longest time (samples, 2 s at 8 kHz) one direction may lag the other before the output
/// moves on and fills it with silence.
pub(super) const LAG: u64 = 2 * RATE.samples_per_second();

/// Largest chunk (samples per channel) released at once, so the output buffer stays small.
const CHUNK: u64 = RATE.samples_per_second();

/// Pending-buffer capacity (samples per direction) kept without question: 256 ms, more than
/// the relay's batched tap hand-off puts between the two directions in steady state.
const TRIM_ABOVE: usize = 2048;

thread_local! {
    static OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Debug, Default)]
pub(super) struct Aligner {
    /// Output position (samples per channel) released so far.
    emitted: u64,
    /// Per direction (the PBX side left, the agents' right): samples at `emitted..`.
    bufs: BySide<Vec<i16>>,
}

impl Aligner {
    /// Samples per channel released so far.
    #[cfg(test)]
    fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Place `samples` from side `from` at output position `at`, releasing whatever the
    /// placement makes final through `out` (interleaved little-endian 16-bit stereo bytes,
    /// in chunks). Returns how many samples came too late (their positions were already
    /// released) and were dropped.
    pub(super) fn put(
        &mut self,
        from: Side,
        at: u64,
        samples: &[i16],
        out: &mut dyn FnMut(&[u8]),
    ) -> u64 {
        let end = at + samples.len() as u64;
        // Everything more than LAG behind this frame's end is final: release it first, so a
        // jump ahead never grows the pending buffers past LAG.
        self.release_to(end.saturating_sub(LAG), out);
        let dropped = if end > self.emitted {
            let skip = self.emitted.saturating_sub(at);
            let start = (at + skip - self.emitted) as usize;
            let s = &samples[skip as usize..];
            let buf = &mut self.bufs[from];
            if buf.len() < start + s.len() {
                buf.resize(start + s.len(), 0);
            }
            buf[start..start + s.len()].copy_from_slice(s);
            skip
        } else {
            samples.len() as u64
        };
        self.release_to(self.ready(), out);
        dropped
    }

    /// The output position up to which both directions are settled.
    fn ready(&self) -> u64 {
        let k0 = self.emitted + self.bufs[Side::Pbx].len() as u64;
        let k1 = self.emitted + self.bufs[Side::Agents].len() as u64;
        k0.min(k1).max(k0.max(k1).saturating_sub(LAG))
    }

    /// Release everything still pending (the call ended).
    pub(super) fn flush(&mut self, out: &mut dyn FnMut(&[u8])) {
        let longest = self.bufs[Side::Pbx]
            .len()
            .max(self.bufs[Side::Agents].len());
        let end = self.emitted + longest as u64;
        self.release_to(end, out);
    }

    /// The call ended at output position `end`: release up to there (silence where neither
    /// direction put anything) and pending audio beyond it up to its last non-silent sample;
    /// trailing silence past `end` (the look-ahead's flush) is not part of the call.
    pub(super) fn flush_to(&mut self, end: u64, out: &mut dyn FnMut(&[u8])) {
        let sound = self
            .bufs
            .0
            .iter()
            .map(|b| b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1))
            .max()
            .unwrap_or(0) as u64;
        let stop = end.max(self.emitted + sound);
        let keep = stop.saturating_sub(self.emitted) as usize;
        for b in &mut self.bufs.0 {
            b.truncate(keep);
        }
        self.release_to(stop, out);
    }

    fn release_to(&mut self, end: u64, out: &mut dyn FnMut(&[u8])) {
        if self.emitted < end {
            // One output buffer per thread, reused by every call's aligner: a fresh one per
            // release was an allocation per batch of frames on the recorder thread. (A nested
            // release from inside `out` would find it borrowed and use its own.)
            OUT.with(|cell| match cell.try_borrow_mut() {
                // At most one CHUNK of stereo samples (32 KB) stays allocated per thread.
                Ok(mut bytes) => self.release_into(end, &mut bytes, out),
                Err(_) => self.release_into(end, &mut Vec::new(), out),
            });
        }
        self.trim();
    }

    fn release_into(&mut self, end: u64, bytes: &mut Vec<u8>, out: &mut dyn FnMut(&[u8])) {
        while self.emitted < end {
            let n = (end - self.emitted).min(CHUNK) as usize;
            bytes.clear();
            bytes.reserve(n * 4);
            for i in 0..n {
                let l = self.bufs[Side::Pbx].get(i).copied().unwrap_or(0);
                let r = self.bufs[Side::Agents].get(i).copied().unwrap_or(0);
                bytes.extend_from_slice(&l.to_le_bytes());
                bytes.extend_from_slice(&r.to_le_bytes());
            }
            for b in &mut self.bufs.0 {
                b.drain(..n.min(b.len()));
            }
            self.emitted += n as u64;
            out(bytes);
        }
    }

    /// Give back pending-buffer capacity a burst left behind: a direction that ran up to
    /// [`LAG`] ahead (a call's first seconds, a stalled leg) grows its buffer to ~32 KiB,
    /// which `drain` keeps for the rest of the call, across hundreds of calls. Shrunk only
    /// when mostly empty and above the steady-state size (a few batched frames), so normal
    /// traffic does not reallocate.
    fn trim(&mut self) {
        for b in &mut self.bufs.0 {
            if b.capacity() > TRIM_ABOVE && b.len() * 4 < b.capacity() {
                b.shrink_to((b.len() * 2).max(TRIM_ABOVE / 2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PBX: Side = Side::Pbx;
    const AGENTS: Side = Side::Agents;

    fn collect(a: &mut Aligner, from: Side, at: u64, s: &[i16], out: &mut Vec<i16>) -> u64 {
        a.put(from, at, s, &mut |b: &[u8]| {
            out.extend(b.chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]])))
        })
    }

    #[test]
    fn releases_when_both_known() {
        let mut a = Aligner::default();
        let mut out = Vec::new();
        collect(&mut a, PBX, 0, &[1; 160], &mut out);
        assert!(out.is_empty());
        collect(&mut a, AGENTS, 0, &[2; 100], &mut out);
        assert_eq!(out.len(), 200);
        assert!(out.chunks(2).all(|f| f == [1, 2]));
        a.flush(&mut |b: &[u8]| out.extend(b.chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]]))));
        assert_eq!(out.len(), 320);
        assert_eq!(&out[200..202], &[1, 0]);
    }

    #[test]
    fn one_silent_direction_is_released_after_lag_and_memory_stays_bounded() {
        let mut a = Aligner::default();
        let mut out = Vec::new();
        for k in 0..1000u64 {
            collect(&mut a, AGENTS, k * 160, &[7; 160], &mut out);
            assert!(a.bufs[AGENTS].len() as u64 <= LAG + 160);
        }
        let emitted = (out.len() / 2) as u64;
        assert_eq!(emitted, 1000 * 160 - LAG);
        assert!(out.chunks(2).all(|f| f == [0, 7]));
        // Late audio for released positions is dropped, the rest placed (and, both
        // directions being known there now, released).
        let dropped = collect(&mut a, PBX, emitted - 10, &[3; 20], &mut out);
        assert_eq!(dropped, 10);
        assert_eq!(out.len() as u64, (emitted + 10) * 2);
        assert!(out[emitted as usize * 2..].chunks(2).all(|f| f == [3, 7]));
    }

    #[test]
    fn flush_to_pads_to_the_call_end_and_cuts_trailing_silence() {
        let mut a = Aligner::default();
        let mut out = Vec::new();
        collect(&mut a, PBX, 0, &[1; 160], &mut out);
        collect(&mut a, AGENTS, 0, &[2; 160], &mut out);
        // The look-ahead flush: silence after the last audio, beyond the call's end.
        collect(&mut a, PBX, 160, &[0; 640], &mut out);
        let mut sink = |b: &[u8]| out.extend(b.chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
        a.flush_to(400, &mut sink);
        assert_eq!(a.emitted(), 400);
        let mut b = Aligner::default();
        let mut out2 = Vec::new();
        collect(&mut b, PBX, 0, &[1; 160], &mut out2);
        b.flush_to(8000, &mut |x: &[u8]| {
            out2.extend(x.chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]])))
        });
        assert_eq!(b.emitted(), 8000, "padded to the call's length");
        assert_eq!(out2.len(), 16_000);
    }

    #[test]
    fn a_burst_ahead_does_not_keep_its_buffer_for_the_rest_of_the_call() {
        let mut a = Aligner::default();
        let mut out = Vec::new();
        // The PBX side runs 1.5 s ahead (the agents' leg not started yet) ...
        for k in 0..75u64 {
            collect(&mut a, PBX, k * 160, &[1; 160], &mut out);
        }
        assert!(a.bufs[PBX].capacity() >= 75 * 160);
        // ... then the agents' audio catches up and both run together.
        for k in 0..100u64 {
            collect(&mut a, AGENTS, k * 160, &[2; 160], &mut out);
            if k >= 75 {
                collect(&mut a, PBX, k * 160, &[1; 160], &mut out);
            }
        }
        assert_eq!(out.len(), 2 * 100 * 160);
        for side in [PBX, AGENTS] {
            assert!(
                a.bufs[side].capacity() <= TRIM_ABOVE,
                "{side:?} keeps {} samples of capacity",
                a.bufs[side].capacity()
            );
        }
    }

    #[test]
    fn a_jump_far_ahead_streams_silence_instead_of_buffering_it() {
        let mut a = Aligner::default();
        let mut bytes = 0usize;
        a.put(PBX, 8000 * 600, &[5; 160], &mut |b: &[u8]| bytes += b.len());
        assert!(a.bufs[PBX].len() as u64 <= LAG + 160);
        assert_eq!(a.emitted(), 8000 * 600 + 160 - LAG);
        assert_eq!(bytes as u64, a.emitted() * 4);
    }
}
