//! The look-ahead delay line.
//!
//! The recorder path is delayed by a fixed number of samples so that a verdict reached late
//! (a DTMF tone confirmed 30 ms in, a spoken card number recognised a second later) can still
//! mute the audio from its first sample before it leaves. The ring is sized once from the
//! configured look-ahead; pushing and popping never allocates.

/// A fixed delay of `len` samples: every sample pushed comes out `len` samples later. The line
/// starts full of silence, so the first `len` output samples are zero.
#[derive(Debug, Clone)]
pub struct DelayLine {
    buf: Vec<i16>,
    pos: usize,
}

impl DelayLine {
    /// A delay of `len` samples (0 = pass-through). The only allocation this type makes.
    pub fn new(len: usize) -> Self {
        DelayLine {
            buf: vec![0; len],
            pos: 0,
        }
    }

    /// The delay in samples.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True for a zero delay.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Push `input` and write the same number of delayed samples to `output`.
    /// Only `min(input.len(), output.len())` samples are moved (callers pass equal lengths).
    pub fn push_pop(&mut self, input: &[i16], output: &mut [i16]) {
        let n = input.len().min(output.len());
        let (input, output) = (&input[..n], &mut output[..n]);
        let len = self.buf.len();
        if len == 0 {
            output.copy_from_slice(input);
            return;
        }
        let mut done = 0;
        while done < n {
            // Largest run that neither wraps the ring nor overruns the chunk.
            let run = (len - self.pos).min(n - done);
            let ring = &mut self.buf[self.pos..self.pos + run];
            output[done..done + run].copy_from_slice(ring);
            ring.copy_from_slice(&input[done..done + run]);
            done += run;
            self.pos = (self.pos + run) % len;
        }
    }

    /// Peek at the sample that entered `back` samples ago (0 = the newest), for blocks that
    /// need to look at audio still inside the line. `None` if `back >= len`.
    pub fn peek_back(&self, back: usize) -> Option<i16> {
        let len = self.buf.len();
        if back >= len {
            return None;
        }
        Some(self.buf[(self.pos + len - 1 - back) % len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_by_len() {
        let mut d = DelayLine::new(3);
        let mut out = [0i16; 5];
        d.push_pop(&[1, 2, 3, 4, 5], &mut out);
        assert_eq!(out, [0, 0, 0, 1, 2]);
        d.push_pop(&[6, 7], &mut out[..2]);
        assert_eq!(&out[..2], &[3, 4]);
        assert_eq!(d.peek_back(0), Some(7));
        assert_eq!(d.peek_back(2), Some(5));
        assert_eq!(d.peek_back(3), None);
    }

    #[test]
    fn zero_is_pass_through() {
        let mut d = DelayLine::new(0);
        let mut out = [0i16; 3];
        d.push_pop(&[1, 2, 3], &mut out);
        assert_eq!(out, [1, 2, 3]);
    }

    proptest! {
        /// Any chunking gives the input delayed by exactly `len` samples.
        #[test]
        fn chunking_is_irrelevant(len in 0usize..50, chunks in proptest::collection::vec(1usize..40, 1..20)) {
            let total: usize = chunks.iter().sum();
            let input: Vec<i16> = (1..=total as i16).collect();
            let mut d = DelayLine::new(len);
            let mut output = vec![0i16; total];
            let mut at = 0;
            for c in chunks {
                d.push_pop(&input[at..at + c], &mut output[at..at + c]);
                at += c;
            }
            for (i, &o) in output.iter().enumerate() {
                let expect = if i < len { 0 } else { input[i - len] };
                prop_assert_eq!(o, expect);
            }
        }
    }
}
