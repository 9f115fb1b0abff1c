//! Reading the SRS's SDP answer: where each of the two offered streams goes.

use std::net::{IpAddr, SocketAddr};

use crate::core::sdp::Sdp;

use super::metadata::LABELS;

/// Why an answer cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAnswer {
    /// No `application/sdp` body (or part of a multipart body).
    NoSdp,
    /// The SDP does not parse.
    Unparsable,
    /// Neither stream was accepted with a usable address and port.
    NoStream,
    /// SRTP was offered and the streams were accepted as plain RTP only.
    NotSrtp,
}

/// Destinations of the caller and agent streams (`None`: that stream was rejected, port 0,
/// or has no IP address; with `srtp`, also a stream not answered as `RTP/SAVP`: it is never
/// sent in plaintext). Streams are matched by `a=label` when the answer carries labels,
/// else by order (RFC 3264 §6: the answer has as many m= lines as the offer, in order).
pub(crate) fn destinations(
    content_type: Option<&[u8]>,
    body: &[u8],
    srtp: bool,
) -> Result<[Option<SocketAddr>; 2], BadAnswer> {
    let sdp = sdp_part(content_type.unwrap_or(b""), body).ok_or(BadAnswer::NoSdp)?;
    let sdp = Sdp::parse_slice(sdp).map_err(|_| BadAnswer::Unparsable)?;
    let session_ip: Option<IpAddr> = sdp.session_connection().and_then(|c| c.ip());
    let mut out = [None, None];
    let labelled = sdp.media().iter().any(|m| m.label().is_some());
    let mut plain = false;
    for (i, m) in sdp.media().iter().enumerate() {
        let slot = if labelled {
            match m.label().and_then(|l| LABELS.iter().position(|x| *x == l)) {
                Some(s) => s,
                None => continue,
            }
        } else if i < 2 {
            i
        } else {
            break;
        };
        let ml = m.media_line();
        if srtp && !ml.proto.eq_ignore_ascii_case("RTP/SAVP") {
            plain |= ml.port != 0;
            continue;
        }
        let ip = m.connection().and_then(|c| c.ip()).or(session_ip);
        if let Some(ip) = ip.filter(|ip| !ip.is_unspecified()) {
            if ml.port != 0 && ml.media == "audio" && out[slot].is_none() {
                out[slot] = Some(SocketAddr::new(ip, ml.port));
            }
        }
    }
    if out.iter().all(Option::is_none) {
        return Err(if plain {
            BadAnswer::NotSrtp
        } else {
            BadAnswer::NoStream
        });
    }
    Ok(out)
}

/// The SDP of a body: the body itself for `application/sdp`, the first `application/sdp`
/// part of a `multipart/*` body (RFC 2046 §5.1).
fn sdp_part<'a>(content_type: &[u8], body: &'a [u8]) -> Option<&'a [u8]> {
    let ct = String::from_utf8_lossy(content_type).to_ascii_lowercase();
    let media_type = ct.split(';').next().unwrap_or("").trim().to_owned();
    if media_type == "application/sdp" {
        return Some(body);
    }
    if !media_type.starts_with("multipart/") {
        return None;
    }
    // The boundary keeps its case: read it from the original header.
    let raw = String::from_utf8_lossy(content_type);
    let boundary = raw.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })?;
    let delim = format!("--{boundary}");
    let mut rest = body;
    loop {
        let at = find(rest, delim.as_bytes())?;
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            return None;
        }
        let part_end = find(rest, delim.as_bytes()).unwrap_or(rest.len());
        let part = &rest[..part_end];
        let (head, content) = match find(part, b"\r\n\r\n") {
            Some(h) => (&part[..h], &part[h + 4..]),
            None => match find(part, b"\n\n") {
                Some(h) => (&part[..h], &part[h + 2..]),
                None => continue,
            },
        };
        let is_sdp = String::from_utf8_lossy(head).lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("content-type")
                    && v.trim().to_ascii_lowercase().starts_with("application/sdp")
            })
        });
        if is_sdp {
            return Some(content);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str =
        "v=0\r\no=srs 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
        m=audio 5002 RTP/AVP 0\r\na=label:2\r\na=recvonly\r\n\
        m=audio 5000 RTP/AVP 0\r\na=label:1\r\na=recvonly\r\n";

    #[test]
    fn labels_win_over_order() {
        let d = destinations(Some(b"application/sdp"), ANSWER.as_bytes(), false).expect("usable");
        assert_eq!(d[0], Some("10.0.0.9:5000".parse().expect("addr")));
        assert_eq!(d[1], Some("10.0.0.9:5002".parse().expect("addr")));
    }

    #[test]
    fn order_without_labels_and_a_rejected_stream() {
        let a = "v=0\r\no=srs 1 1 IN IP4 10.0.0.9\r\ns=-\r\nt=0 0\r\n\
            m=audio 5000 RTP/AVP 0\r\nc=IN IP4 10.0.0.7\r\n\
            m=audio 0 RTP/AVP 0\r\n";
        let d = destinations(Some(b"application/sdp"), a.as_bytes(), false).expect("usable");
        assert_eq!(d, [Some("10.0.0.7:5000".parse().expect("addr")), None]);
    }

    #[test]
    fn multipart_answer_and_bad_answers() {
        let body = format!(
            "--XyZ\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<x/>\r\n\
             --XyZ\r\nContent-Type: application/sdp\r\n\r\n{ANSWER}--XyZ--\r\n"
        );
        let d = destinations(
            Some(b"multipart/mixed;boundary=\"XyZ\""),
            body.as_bytes(),
            false,
        )
        .expect("usable");
        assert!(d[0].is_some() && d[1].is_some());
        assert_eq!(destinations(None, b"", false), Err(BadAnswer::NoSdp));
        assert_eq!(
            destinations(Some(b"text/plain"), ANSWER.as_bytes(), false),
            Err(BadAnswer::NoSdp)
        );
        let rejected = "v=0\r\no=srs 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
            m=audio 0 RTP/AVP 0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(
            destinations(Some(b"application/sdp"), rejected.as_bytes(), false),
            Err(BadAnswer::NoStream)
        );
        assert_eq!(
            destinations(Some(b"multipart/mixed;boundary=Q"), b"--Q\r\nno end", false),
            Err(BadAnswer::NoSdp)
        );
    }
}
