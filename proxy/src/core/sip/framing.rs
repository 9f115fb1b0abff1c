//! Incremental framing of SIP over a byte stream (issue 13): each byte is scanned once for the
//! end of the head, and the message is parsed only when it is complete, so a peer trickling
//! a message one byte at a time costs O(n), not O(n²) (the old loop re-parsed the whole
//! buffer on every read). The largest partial message is `sip.max_message_bytes`.

use super::parse::{parse_stream, stream_message_len};
use super::{Frame, Limits, SipError};

/// Framing state of one stream: how far the head search got, and the length of the message
/// once its head is known. Feed the connection's whole unconsumed buffer each time; after a
/// frame, advance the buffer by the length returned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamFramer {
    /// Bytes already searched for the blank line that ends the head.
    scanned: usize,
    /// Total length of the message being received, once its head is complete.
    need: Option<usize>,
}

impl StreamFramer {
    /// The next frame at the start of `buf`, `Ok(None)` if more bytes are needed, or the
    /// error that ends the connection (too large, bad head).
    pub fn next(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(Frame, usize)>, SipError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if buf[0] == b'\r' {
            // CRLF keep-alives (a message never starts with CR): tiny, parsed as before.
            let r = parse_stream(buf, limits);
            if !matches!(r, Ok(None)) {
                *self = Self::default();
            }
            return r;
        }
        if self.need.is_none() {
            let from = self.scanned.saturating_sub(2);
            if head_end(&buf[from..]).is_none() {
                self.scanned = buf.len();
                if buf.len() > limits.max_message {
                    return Err(SipError::TooLarge {
                        limit: limits.max_message,
                    });
                }
                return Ok(None);
            }
            self.need = stream_message_len(buf, limits)?;
        }
        if let Some(n) = self.need {
            if n > limits.max_message {
                return Err(SipError::TooLarge {
                    limit: limits.max_message,
                });
            }
            if buf.len() < n {
                return Ok(None);
            }
        }
        let r = parse_stream(buf, limits);
        if !matches!(r, Ok(None)) {
            *self = Self::default();
        }
        r
    }
}

/// Where the head ends in `buf` (a blank line: LF LF or LF CR LF), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        (b == b'\n'
            && (buf.get(i + 1) == Some(&b'\n')
                || (buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n'))))
        .then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSGS: &[u8] = b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
        From: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
        Content-Length: 4\r\n\r\nbody\r\n\r\n\
        MESSAGE sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\n\
        From: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c2\r\nCSeq: 2 MESSAGE\r\n\
        Content-Length: 0\r\n\r\n";

    /// Every way of cutting the stream into two reads gives the same frames as the whole.
    #[test]
    fn any_split_gives_the_same_frames() {
        let limits = Limits::default();
        let lens = |chunks: &[&[u8]]| {
            let (mut buf, mut f, mut out) = (Vec::new(), StreamFramer::default(), Vec::new());
            for c in chunks {
                buf.extend_from_slice(c);
                while let Some((frame, used)) = f.next(&buf, &limits).expect("valid") {
                    out.push((matches!(frame, Frame::Message(_)), used));
                    buf.drain(..used);
                }
            }
            assert!(buf.is_empty());
            out
        };
        let whole = lens(&[MSGS]);
        assert_eq!(whole.len(), 3, "message, keep-alive, message: {whole:?}");
        for cut in 1..MSGS.len() {
            assert_eq!(lens(&[&MSGS[..cut], &MSGS[cut..]]), whole, "cut at {cut}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = MSGS.chunks(1).collect();
        assert_eq!(lens(&bytes), whole);
    }

    /// A head that never ends is cut at the message size limit, without waiting forever.
    #[test]
    fn endless_head_is_too_large() {
        let limits = Limits {
            max_message: 2048,
            ..Limits::default()
        };
        let mut f = StreamFramer::default();
        let mut buf = b"OPTIONS sip:a@h SIP/2.0\r\nX: ".to_vec();
        let mut err = None;
        for _ in 0..4096 {
            buf.extend_from_slice(b"a");
            match f.next(&buf, &limits) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("framed an endless head"),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(err, Some(SipError::TooLarge { .. })), "{err:?}");
        assert!(buf.len() <= 2049 + 32);
    }
}
