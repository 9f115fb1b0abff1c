//! The `rtp` sink: per call, two sanitized RTP streams (caller and agent) to the target.
//!
//! - Legs: the caller's stream goes to the target port, the agent's to target port + 2 (the
//!   next RTP port of the RFC 3550 even/odd convention; port − 2 if the target is 65534 or
//!   above). Each call sends from its own UDP socket (own source port), and each stream has
//!   its own random SSRC, initial sequence number and timestamp, so a receiver tells calls
//!   apart by source address or SSRC, and legs by destination port.
//! - Payload: G.711 µ-law (PCMU, payload type 0), 20 ms (160 samples) per packet. The tap
//!   carries decoded, sanitized PCM only, so PCMU is the one codec (`codec = "original"` is
//!   refused by the config's validation).
//! - Continuity: timestamps follow each direction's media time; muted audio is silence in
//!   the tap already and is sent as such; gaps of up to 10 s are filled with silence packets;
//!   a longer gap advances the timestamp without packets and marks the next packet.
//! - Never blocking: the socket is non-blocking; a packet that cannot be sent at once is
//!   dropped and counted (`callmask_recorder_queue_dropped_frames_total{sink="rtp"}`).
//! - SRTP (`srtp_key_file`): the fork has no signalling to carry a key, so the recorder and
//!   callmask share one SDES master key out of band (a file, re-read at every reload). Every
//!   packet is protected with it, none is ever sent plain. RFC 3711 §9.1 allows one master
//!   key for many streams only when their SSRCs differ (the same SSRC and index under one key
//!   reuses keystream), so a sink hands out SSRCs from a counter, not at random: unique for
//!   2^32 streams per key file load.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::sink::{CallEnd, CallStart, RecorderSink};
use crate::core::proxy::{CallRef, Side};
use crate::core::relay::rtp::RtpHeader;
use crate::core::sdp::{Crypto, SdesError, SdesKey};
use crate::core::side::BySide;
use crate::metrics::{Label, Metrics, SinkKind};

/// Samples per packet (20 ms at 8 kHz).
pub(super) const PTIME: usize = 160;
/// RTP header size.
const HEADER: usize = 12;
/// Longest gap (samples) filled with silence packets: 10 s.
const MAX_FILL: u64 = 80_000;
/// Payload type of PCMU.
const PT_PCMU: u8 = 0;

/// Where one call's two legs go: the caller's (the PBX side's audio) and the agent's.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub(super) caller: SocketAddr,
    pub(super) agent: SocketAddr,
}

impl Target {
    /// The two leg addresses for the configured `target`.
    pub(super) fn new(target: SocketAddr) -> Self {
        let p = target.port();
        let agent_port = p.checked_add(2).unwrap_or(p.saturating_sub(2));
        let mut agent = target;
        agent.set_port(agent_port);
        Target {
            caller: target,
            agent,
        }
    }
}

/// One leg's packetizer state.
struct Leg {
    dest: SocketAddr,
    /// SRTP toward the destination (a SIPREC sink with `srtp`): every packet encrypted, none
    /// ever sent plain.
    crypto: Option<crate::core::media::SendCrypto>,
    ssrc: u32,
    seq: u16,
    ts: u32,
    /// Media time of `pending[0]`; `None` until the first frame.
    pos: Option<u64>,
    pending: Vec<i16>,
    marker: bool,
}

/// What a send did (for the metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    pub(super) bytes: u64,
    pub(super) dropped: u64,
    /// First hard error (not "would block") of this batch.
    pub(super) error: Option<io::ErrorKind>,
}

impl Sent {
    /// Counts this batch against `sink` (bytes, dropped packets, errors) and logs the call's
    /// first hard send error (`logged` remembers it): the accounting of every sink that
    /// sends RTP (`rtp`, and `siprec`'s media).
    pub(super) fn account(
        self,
        metrics: &Metrics,
        sink: SinkKind,
        call: CallRef,
        logged: &mut bool,
    ) {
        if self.bytes > 0 {
            metrics.recorder().recorder_bytes(sink).inc_by(self.bytes);
        }
        if self.dropped > 0 {
            metrics
                .recorder()
                .recorder_queue_dropped(sink, self.dropped);
        }
        if let Some(kind) = self.error {
            metrics.recorder().recorder_error(sink);
            if !std::mem::replace(logged, true) {
                tracing::warn!(call = call.0, sink = sink.as_str(), error = %kind, "recorder: RTP send failed (packets dropped; further errors of this call not logged)");
            }
        }
    }
}

impl Leg {
    fn new(dest: SocketAddr) -> Self {
        Self::with_ssrc(dest, rand::random())
    }

    fn with_ssrc(dest: SocketAddr, ssrc: u32) -> Self {
        Leg {
            dest,
            crypto: None,
            ssrc,
            seq: rand::random(),
            ts: rand::random(),
            pos: None,
            pending: Vec::with_capacity(PTIME * 2),
            marker: true,
        }
    }

    fn push(&mut self, sock: &UdpSocket, media_time: u64, samples: &[i16], sent: &mut Sent) {
        let pos = *self.pos.get_or_insert(media_time);
        let expected = pos + self.pending.len() as u64;
        let mut samples = samples;
        if media_time < expected {
            // Overlap with what was already queued: keep only the new part.
            let skip = ((expected - media_time) as usize).min(samples.len());
            samples = &samples[skip..];
        } else if media_time > expected {
            let gap = media_time - expected;
            if gap <= MAX_FILL {
                for _ in 0..gap {
                    self.pending.push(0);
                    if self.pending.len() == PTIME {
                        self.send(sock, sent);
                    }
                }
            } else {
                // Too long to fill: close the packet in progress with silence, then jump.
                let pad = (PTIME - self.pending.len() % PTIME) % PTIME;
                self.pending.resize(self.pending.len() + pad, 0);
                self.drain(sock, sent);
                let skip = gap - pad as u64;
                self.ts = self.ts.wrapping_add(skip as u32);
                self.pos = Some(media_time);
                self.marker = true;
            }
        }
        self.pending.extend_from_slice(samples);
        self.drain(sock, sent);
    }

    fn drain(&mut self, sock: &UdpSocket, sent: &mut Sent) {
        while self.pending.len() >= PTIME {
            self.send(sock, sent);
        }
    }

    /// Send the first `PTIME` pending samples.
    fn send(&mut self, sock: &UdpSocket, sent: &mut Sent) {
        let mut pkt = [0u8; HEADER + PTIME];
        let header = RtpHeader {
            pt: PT_PCMU,
            marker: self.marker,
            seq: self.seq,
            ts: self.ts,
            ssrc: self.ssrc,
        };
        pkt[..HEADER].copy_from_slice(&header.to_bytes());
        dsp::g711::encode_ulaw(&self.pending[..PTIME], &mut pkt[HEADER..]);
        let protected;
        let wire: &[u8] = match &mut self.crypto {
            None => &pkt,
            Some(c) => match c.protect(&pkt) {
                Ok(p) => {
                    protected = p;
                    &protected
                }
                Err(_) => {
                    sent.dropped += 1;
                    sent.error.get_or_insert(io::ErrorKind::InvalidData);
                    &[]
                }
            },
        };
        let result = if wire.is_empty() {
            Ok(0)
        } else {
            sock.send_to(wire, self.dest)
        };
        match result {
            Ok(0) => {}
            Ok(n) => sent.bytes += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => sent.dropped += 1,
            Err(e) => {
                sent.dropped += 1;
                sent.error.get_or_insert(e.kind());
            }
        }
        // Sequence and timestamp advance even for a dropped packet: the receiver sees a loss,
        // not a shift in time.
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(PTIME as u32);
        self.pending.drain(..PTIME);
        if let Some(p) = &mut self.pos {
            *p += PTIME as u64;
        }
    }

    /// The call ended: send what is pending, padded with silence to a whole packet.
    fn flush(&mut self, sock: &UdpSocket, sent: &mut Sent) {
        if !self.pending.is_empty() {
            self.pending.resize(PTIME, 0);
            self.send(sock, sent);
        }
    }
}

/// One call on one `rtp` sink (or one established SIPREC session).
pub(super) struct RtpCall {
    /// One socket for both legs (`rtp` sink), or one per leg (SIPREC: each offered stream
    /// is sent from the port its `m=` line names).
    socks: Vec<UdpSocket>,
    legs: BySide<Leg>,
}

impl RtpCall {
    /// Open the call's socket toward `target`; with `srtp`, both legs are SRTP under that
    /// key with the SSRCs given (unique under the key: see the module docs).
    pub(super) fn open(target: Target, srtp: Option<(&SdesKey, [u32; 2])>) -> io::Result<RtpCall> {
        let bind: SocketAddr = if target.caller.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let legs = match srtp {
            None => BySide::new(Leg::new(target.caller), Leg::new(target.agent)),
            Some((key, [a, b])) => {
                let refused = || io::Error::new(io::ErrorKind::InvalidInput, "SRTP key refused");
                let mut legs = BySide::new(
                    Leg::with_ssrc(target.caller, a),
                    Leg::with_ssrc(target.agent, b),
                );
                for side in Side::BOTH {
                    legs[side].crypto =
                        Some(crate::core::media::SendCrypto::new(key).ok_or_else(refused)?);
                }
                legs
            }
        };
        let sock = UdpSocket::bind(bind)?;
        sock.set_nonblocking(true)?;
        Ok(RtpCall {
            socks: vec![sock],
            legs,
        })
    }

    /// Send each side's leg from its socket (non-blocking) to its destination; with
    /// `keys`, as SRTP with each side's key (`None` if a key is refused: nothing is sent).
    pub(super) fn with_sockets(
        socks: BySide<UdpSocket>,
        dests: BySide<SocketAddr>,
        keys: Option<&[crate::core::sdp::SdesKey; 2]>,
    ) -> Option<RtpCall> {
        let [pbx, agents] = dests.0;
        let mut legs = BySide::new(Leg::new(pbx), Leg::new(agents));
        if let Some(keys) = keys {
            for side in Side::BOTH {
                legs[side].crypto = Some(crate::core::media::SendCrypto::new(
                    keys.get(side.index())?,
                )?);
            }
        }
        Some(RtpCall {
            socks: socks.0.into(),
            legs,
        })
    }

    fn sock(socks: &[UdpSocket], side: Side) -> &UdpSocket {
        // Both constructors give at least one socket.
        &socks[side.index().min(socks.len().saturating_sub(1))]
    }

    /// Sanitized samples from side `from` at that direction's media time.
    pub(super) fn frame(&mut self, from: Side, media_time: u64, samples: &[i16]) -> Sent {
        let mut sent = Sent::default();
        self.legs[from].push(
            Self::sock(&self.socks, from),
            media_time,
            samples,
            &mut sent,
        );
        sent
    }

    /// The call ended.
    pub(super) fn finish(&mut self) -> Sent {
        let mut sent = Sent::default();
        for side in Side::BOTH {
            self.legs[side].flush(Self::sock(&self.socks, side), &mut sent);
        }
        sent
    }
}

/// A configured `rtp` sink: per call, its own socket sending the two legs to the target.
pub(super) struct RtpSink {
    target: Target,
    /// SRTP master key (`srtp_key_file`) and the next SSRC to hand out under it.
    srtp: Option<(SdesKey, u32)>,
    metrics: Arc<Metrics>,
    calls: HashMap<CallRef, SinkCall>,
}

/// One call on an `rtp` sink.
struct SinkCall {
    /// `None` if its socket could not be opened (counted and logged).
    rtp: Option<RtpCall>,
    /// The call's first hard send error was logged.
    error_logged: bool,
}

impl RtpSink {
    /// The sink sending to `target` (the caller's leg; the agent's two ports up).
    pub(super) fn new(target: SocketAddr, srtp: Option<SdesKey>, metrics: Arc<Metrics>) -> Self {
        RtpSink {
            target: Target::new(target),
            srtp: srtp.map(|k| (k, rand::random())),
            metrics,
            calls: HashMap::new(),
        }
    }
}

/// Why an `rtp` sink's `srtp_key_file` cannot be used. Never shows the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum SrtpKeyFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        error: io::Error,
    },
    /// Others may read it, or others than its owner may change it.
    #[error("{path} is {what} (mode {mode:o}): a key must be readable only by its owner and callmask's group; run chmod 0640 (or 0600) on it")]
    Mode {
        /// The file.
        path: String,
        /// What is wrong.
        what: &'static str,
        /// Its permission bits.
        mode: u32,
    },
    /// The text is not one key of a supported suite.
    #[error("{path} does not hold one SRTP key: {problem}; write one line `AES_CM_128_HMAC_SHA1_80 inline:<base64 of 30 random bytes>` (e.g. from `openssl rand -base64 30`)")]
    Format {
        /// The file.
        path: String,
        /// What is wrong (never the contents).
        problem: &'static str,
    },
}

/// Reads an `rtp` sink's SRTP master key: one line `SUITE inline:<base64 key||salt>` (the
/// suite and key parameters of an SDP `a=crypto` line, which may also be pasted whole as
/// `a=crypto:1 SUITE inline:…`), any suite callmask terminates, no MKI. The file must be
/// neither readable by others nor writable by anyone but its owner (it is a secret, and a
/// key someone else can replace would send the recordings to whoever chose it).
pub fn load_srtp_key(path: &Path) -> Result<SdesKey, SrtpKeyFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    use zeroize::Zeroize as _;
    let shown = path.display().to_string();
    let read = |error| SrtpKeyFileError::Read {
        path: shown.clone(),
        error,
    };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
    let bad = if mode & 0o022 != 0 {
        Some("writable by group or others")
    } else if mode & 0o004 != 0 {
        Some("readable by others")
    } else {
        None
    };
    if let Some(what) = bad {
        return Err(SrtpKeyFileError::Mode {
            path: shown,
            what,
            mode,
        });
    }
    let mut text = std::fs::read_to_string(path).map_err(read)?;
    let key = parse_srtp_key(&text).map_err(|problem| SrtpKeyFileError::Format {
        path: shown,
        problem,
    });
    text.zeroize();
    key
}

/// The key of a key file's text (see [`load_srtp_key`]).
fn parse_srtp_key(text: &str) -> Result<SdesKey, &'static str> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().ok_or("it is empty")?;
    if lines.next().is_some() {
        return Err("it has more than one key line");
    }
    let crypto = match line.strip_prefix("a=crypto:") {
        Some(value) => Crypto::parse(value).ok_or("the a=crypto line is malformed")?,
        None => {
            let mut it = line.split_ascii_whitespace();
            let (Some(suite), Some(key_params), None) = (it.next(), it.next(), it.next()) else {
                return Err("the line is not `SUITE inline:KEY`");
            };
            Crypto {
                tag: 1,
                suite,
                key_params,
            }
        }
    };
    SdesKey::from_crypto(&crypto).map_err(|e| match e {
        SdesError::Suite => "the suite is not one callmask supports",
        SdesError::Mki => "an MKI is not supported",
        _ => "the key is not inline:<base64> of the suite's key and salt length",
    })
}

impl RecorderSink for RtpSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Rtp
    }

    fn start(&mut self, call: CallRef, _: &CallStart<'_>) {
        self.metrics
            .recorder()
            .recorder_session_opened(SinkKind::Rtp);
        let srtp = self.srtp.as_mut().map(|(key, next)| {
            let ssrcs = [*next, next.wrapping_add(1)];
            *next = next.wrapping_add(2);
            (&*key, ssrcs)
        });
        let rtp = match RtpCall::open(self.target, srtp) {
            Ok(c) => Some(c),
            Err(e) => {
                self.metrics.recorder().recorder_error(SinkKind::Rtp);
                tracing::error!(call = call.0, error = %e, "rtp recorder: cannot open a socket for the call");
                None
            }
        };
        self.calls.insert(
            call,
            SinkCall {
                rtp,
                error_logged: false,
            },
        );
    }

    fn frame(&mut self, call: CallRef, from: Side, at: u64, samples: &[i16]) {
        if let Some(SinkCall {
            rtp: Some(rtp),
            error_logged,
        }) = self.calls.get_mut(&call)
        {
            let sent = rtp.frame(from, at, samples);
            sent.account(&self.metrics, SinkKind::Rtp, call, error_logged);
        }
    }

    fn finish(&mut self, call: CallRef, _: &CallEnd<'_>) -> Option<JoinHandle<()>> {
        let mut c = self.calls.remove(&call)?;
        if let Some(rtp) = &mut c.rtp {
            let sent = rtp.finish();
            sent.account(&self.metrics, SinkKind::Rtp, call, &mut c.error_logged);
        }
        self.metrics
            .recorder()
            .recorder_session_closed(SinkKind::Rtp);
        None
    }

    fn calls(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_is_counted_against_its_sink_and_its_error_logged_once() {
        let m = Metrics::new();
        let mut logged = false;
        let sent = Sent {
            bytes: 172,
            dropped: 2,
            error: Some(io::ErrorKind::ConnectionRefused),
        };
        sent.account(&m, SinkKind::Siprec, CallRef(1), &mut logged);
        sent.account(&m, SinkKind::Siprec, CallRef(1), &mut logged);
        assert!(logged);
        let out = m.render();
        for line in [
            "callmask_recorder_bytes_total{sink=\"siprec\"} 344",
            "callmask_recorder_queue_dropped_frames_total{sink=\"siprec\"} 4",
            "callmask_recorder_errors_total{sink=\"siprec\"} 2",
            "callmask_recorder_bytes_total{sink=\"rtp\"} 0",
        ] {
            assert!(out.contains(line), "{line}\n{out}");
        }
    }

    fn recv_all(sock: &UdpSocket) -> Vec<Vec<u8>> {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut v = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = sock.recv(&mut buf) {
            v.push(buf[..n].to_vec());
        }
        v
    }

    #[test]
    fn gaps_are_filled_and_sequence_is_continuous() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = rx.local_addr().expect("addr");
        let mut call = RtpCall::open(
            Target {
                caller: addr,
                agent: addr,
            },
            None,
        )
        .expect("open");
        call.frame(Side::Pbx, 1000, &[1000; 100]);
        call.frame(Side::Pbx, 1100, &[1000; 100]); // 200 queued → 1 packet
        call.frame(Side::Pbx, 1300, &[1000; 100]); // 100-sample gap filled
        call.finish();
        let pkts = recv_all(&rx);
        assert_eq!(pkts.len(), 3); // 200 + 100 gap + 100 = 400 → 2 full + 1 padded
        let seq = |p: &Vec<u8>| u16::from_be_bytes([p[2], p[3]]);
        let ts = |p: &Vec<u8>| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert_eq!(pkts[0][1], 0x80); // marker, PT 0
        for w in pkts.windows(2) {
            assert_eq!(seq(&w[1]), seq(&w[0]).wrapping_add(1));
            assert_eq!(ts(&w[1]), ts(&w[0]).wrapping_add(160));
            assert_eq!(w[1][1], 0);
        }
        let pcm: Vec<i16> = pkts
            .iter()
            .flat_map(|p| p[12..].iter().map(|&b| dsp::g711::ulaw_to_linear(b)))
            .collect();
        assert!(pcm[..200].iter().all(|&s| (s - 1000).abs() < 40));
        assert!(pcm[200..300].iter().all(|&s| s.abs() < 10));
        assert!(pcm[300..400].iter().all(|&s| (s - 1000).abs() < 40));
    }

    #[test]
    fn a_long_gap_jumps_the_timestamp_and_marks() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = rx.local_addr().expect("addr");
        let mut call = RtpCall::open(
            Target {
                caller: addr,
                agent: addr,
            },
            None,
        )
        .expect("open");
        call.frame(Side::Agents, 0, &[0; 100]);
        call.frame(Side::Agents, 100 + MAX_FILL + 1000, &[0; 160]);
        let pkts = recv_all(&rx);
        assert_eq!(pkts.len(), 2);
        let ts = |p: &Vec<u8>| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert_eq!(
            ts(&pkts[1]).wrapping_sub(ts(&pkts[0])) as u64,
            100 + MAX_FILL + 1000
        );
        assert_eq!(pkts[1][1], 0x80);
    }

    const KEY_LINE: &str =
        "AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn write_key(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join("rec.key");
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("callmask-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    /// The key file: a bare `SUITE inline:KEY` line or a pasted `a=crypto` line, comments
    /// allowed; anything else, a loose mode or a second key is refused naming the file and
    /// never showing what it holds.
    #[test]
    fn srtp_key_files_are_parsed_and_checked() {
        let dir = temp_dir("srtp-key");
        let ok = write_key(&dir, &format!("# recorder key\n{KEY_LINE}\n"), 0o600);
        let key = load_srtp_key(&ok).expect("a bare key line");
        assert_eq!(
            key.suite(),
            crate::core::sdp::SrtpSuite::AesCm128HmacSha1_80
        );
        let pasted = write_key(&dir, &format!("a=crypto:7 {KEY_LINE}"), 0o640);
        assert_eq!(load_srtp_key(&pasted).expect("an a=crypto line"), key);
        let gcm = write_key(
            &dir,
            "AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==",
            0o600,
        );
        assert_eq!(
            load_srtp_key(&gcm).expect("GCM").suite(),
            crate::core::sdp::SrtpSuite::AeadAes128Gcm
        );
        let secret = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        for (text, mode, needle) in [
            (KEY_LINE, 0o644, "readable by others"),
            (KEY_LINE, 0o620, "writable by group"),
            ("", 0o600, "empty"),
            ("AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=", 0o600, "length"),
            (
                "F8_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
                0o600,
                "suite",
            ),
            (&format!("{KEY_LINE}|2^20|1:4"), 0o600, "MKI"),
            (&format!("{KEY_LINE}\n{KEY_LINE}"), 0o600, "more than one"),
        ] {
            let p = write_key(&dir, text, mode);
            let e = load_srtp_key(&p).expect_err(text).to_string();
            assert!(e.contains(needle) && e.contains("rec.key"), "{e}");
            assert!(!e.contains(secret), "the key in an error: {e}");
        }
        let missing = load_srtp_key(&dir.join("none.key")).expect_err("missing");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// With a key every packet of both legs goes out as SRTP that authenticates and
    /// decrypts with that key (none plain), and the legs of successive calls under the one
    /// key never share an SSRC.
    #[test]
    fn srtp_legs_are_protected_with_the_key_and_ssrcs_never_repeat() {
        use rtc_srtp::crypto::RTCCryptoProvider as _;
        static PROVIDER: rtc_srtp::crypto::providers::RingProvider =
            rtc_srtp::crypto::providers::RingProvider::new();
        let key = parse_srtp_key(KEY_LINE).expect("key");
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = rx.local_addr().expect("addr");
        let mut sink = RtpSink::new(addr, Some(key.clone()), Arc::new(Metrics::new()));
        sink.target = Target {
            caller: addr,
            agent: addr,
        };
        let info = crate::core::siprec::RecordingInfo::default();
        for call in [CallRef(1), CallRef(2)] {
            sink.start(
                call,
                &CallStart {
                    name: "x",
                    info: &info,
                },
            );
            sink.frame(call, Side::Pbx, 0, &[1000; 320]);
            sink.frame(call, Side::Agents, 0, &[-1000; 160]);
        }
        let pkts = recv_all(&rx);
        assert_eq!(pkts.len(), 6);
        let mut ctx = rtc_srtp::context::Context::new(
            key.key(),
            key.salt(),
            rtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
            None,
            None,
            PROVIDER.crypto(),
        )
        .expect("context");
        let mut ssrcs = std::collections::HashSet::new();
        for p in &pkts {
            assert_eq!(
                p.len(),
                HEADER + PTIME + 10,
                "an 80-bit tag on every packet"
            );
            let plain = ctx.decrypt_rtp(p).expect("authenticates with the key");
            ssrcs.insert(u32::from_be_bytes([
                plain[8], plain[9], plain[10], plain[11],
            ]));
            let pcm = dsp::g711::ulaw_to_linear(plain[HEADER + 5]);
            assert!((pcm.abs() - 1000).abs() < 40, "the audio inside");
            assert_ne!(
                &p[HEADER..HEADER + PTIME],
                &plain[HEADER..],
                "ciphertext on the wire"
            );
        }
        assert_eq!(ssrcs.len(), 4, "two calls, two legs each, four SSRCs");
    }

    #[test]
    fn agent_leg_is_two_ports_up() {
        let t = Target::new("10.0.0.7:40000".parse().expect("addr"));
        assert_eq!(t.agent.port(), 40002);
        let t = Target::new("10.0.0.7:65535".parse().expect("addr"));
        assert_eq!(t.agent.port(), 65533);
    }
}
