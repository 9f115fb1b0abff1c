//! srtpgen: the shared harness's `rtpgen` (../shared/bench/rtpgen.c) with SDES-SRTP on both
//! ends, for the relay benchmark's SRTP row (issue 14). Same load, same measurement, same JSON
//! line, so `scripts/relay_bench.sh summarize` reads both.
//!
//! Call map, one call per line (the first five columns are rtpgen's):
//!
//! ```text
//! call_id a_port relay_port_for_a b_port relay_port_for_b [a_tx a_rx b_tx b_rx]
//! ```
//!
//! The four optional columns are base64 SDES keys (`inline:` key||salt of the suite):
//! `a_tx` = the key A (the sipp UAC, "PBX") offered, which A's packets are protected with;
//! `a_rx` = the key the relay put in the answer toward A, which A authenticates and
//! decrypts what it receives with; `b_tx` / `b_rx` the same for B (the sipp UAS, "agent":
//! `b_tx` its answer's key, `b_rx` the key in the offer the relay sent it). A line with five
//! columns is plain RTP (the generator then does exactly rtpgen's job, a check of the two).
//!
//! Per call, two one-way PCMU streams (A -> relay -> B and B -> relay -> A), 160-byte payload
//! at `--pps` (50) packets/s each, spread evenly over the period. Each payload starts with
//! rtpgen's 21-byte stamp (magic `RTPB`, stream id, sequence, CLOCK_REALTIME send time in ns,
//! "measured" flag). The send time is written just before the batch is encrypted and sent
//! (sendmmsg, batched per source socket), so the encryption of a batch (< 32 packets) is
//! inside the measured latency; receive uses recvmmsg with kernel timestamps
//! (SO_TIMESTAMPNS), so the generator's own decryption and scheduling are not. A received
//! packet is routed to its stream by its SSRC (the header is not encrypted), authenticated and
//! decrypted with that stream's receive key, then its stamp is checked; a packet that fails
//! authentication is counted in `auth_fail` (and `bad`) and not received.
//! Loss is counted over packets sent inside the measurement window after a drain; relay CPU
//! from /proc/PID/task/*/schedstat (all threads) and /proc/PID/stat; foreign load on the
//! relay's core from /proc/stat; generator CPU from getrusage.
//!
//! ```text
//! srtpgen --map FILE [--warmup 3] [--duration 20] [--drain 1] [--pps 50] [--suite 80|32]
//!         [--relay-pid PID] [--relay-core 0] [--gen-core 1] [--rcvbuf BYTES] [--tick-us 500]
//!         [--out FILE] [--label TXT]
//! ```

use std::collections::HashMap;
use std::fs;
use std::io::{IoSlice, IoSliceMut, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::process::exit;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    MultiHeaders, SockaddrIn,
};
use nix::sys::time::{TimeSpec, TimeValLike as _};
use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};
use rtc_srtp::context::Context;
use rtc_srtp::crypto::providers::RingProvider;
use rtc_srtp::crypto::RTCCryptoProvider as _;
use rtc_srtp::protection_profile::ProtectionProfile;

const MAGIC: u32 = 0x4250_5452; // "RTPB" little endian, as rtpgen
const HDR: usize = 12;
const STAMP: usize = 21;
const PAYLOAD: usize = 160;
const BATCH: usize = 32;
const HIST_US: usize = 2_000_000; // 2 s at 1 µs
const SSRC_BASE: u32 = 0x1000_0000;

static PROVIDER: RingProvider = RingProvider::new();

fn die(msg: &str) -> ! {
    eprintln!("srtpgen: {msg}");
    exit(2)
}

struct Stream {
    /// Index of its call in the map (for the dead-stream report).
    call: usize,
    src_sock: usize,
    dst: SockaddrIn,
    exp_port: u16,
    ssrc: u32,
    seq: u32,
    tx: Option<Context>,
    rx: Option<Context>,
    sent_meas: u64,
    recv_meas: u64,
    recv_all: u64,
    reorder: u64,
    misrouted: u64,
    last_rx_seq: i64,
}

struct Args {
    map: String,
    warmup: f64,
    duration: f64,
    drain: f64,
    pps: u32,
    profile: ProtectionProfile,
    relay_pid: Option<u32>,
    relay_core: usize,
    gen_core: usize,
    rcvbuf: usize,
    tick_us: u64,
    out: Option<String>,
    label: String,
}

fn args() -> Args {
    let mut a = Args {
        map: String::new(),
        warmup: 3.0,
        duration: 20.0,
        drain: 1.0,
        pps: 50,
        profile: ProtectionProfile::Aes128CmHmacSha1_80,
        relay_pid: None,
        relay_core: 0,
        gen_core: 1,
        rcvbuf: 4 << 20,
        tick_us: 500,
        out: None,
        label: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| die(&format!("{k} needs a value")));
        let num = |v: &str| -> f64 {
            v.parse()
                .unwrap_or_else(|_| die(&format!("{k}: not a number: {v}")))
        };
        match k.as_str() {
            "--map" => a.map = v,
            "--warmup" => a.warmup = num(&v),
            "--duration" => a.duration = num(&v),
            "--drain" => a.drain = num(&v),
            "--pps" => a.pps = num(&v) as u32,
            "--suite" => {
                a.profile = match v.as_str() {
                    "80" | "AES_CM_128_HMAC_SHA1_80" => ProtectionProfile::Aes128CmHmacSha1_80,
                    "32" | "AES_CM_128_HMAC_SHA1_32" => ProtectionProfile::Aes128CmHmacSha1_32,
                    _ => die("--suite: AES_CM_128_HMAC_SHA1_80 (80) or _32 (32)"),
                }
            }
            "--relay-pid" => a.relay_pid = Some(num(&v) as u32),
            "--relay-core" => a.relay_core = num(&v) as usize,
            "--gen-core" => a.gen_core = num(&v) as usize,
            "--rcvbuf" => a.rcvbuf = num(&v) as usize,
            "--tick-us" => a.tick_us = (num(&v) as u64).max(10),
            "--out" => a.out = Some(v),
            "--label" => a.label = v,
            _ => die(&format!(
                "unknown option {k} (see the doc comment in srtpgen.rs)"
            )),
        }
    }
    if a.map.is_empty() || a.pps == 0 {
        die("usage: srtpgen --map FILE [--warmup S] [--duration S] [--drain S] [--pps 50] [--suite 80|32] [--relay-pid PID] [--relay-core N] [--gen-core N] [--out FILE] [--label TXT]");
    }
    if !(a.duration > 0.0 && a.duration <= 600.0 && (0.0..=60.0).contains(&a.warmup)) {
        die("bounded runs only (duration <= 600 s, warm-up <= 60 s)");
    }
    a
}

fn ns(ts: TimeSpec) -> u64 {
    (ts.tv_sec() as u64) * 1_000_000_000 + ts.tv_nsec() as u64
}

fn clock(c: ClockId) -> u64 {
    ns(clock_gettime(c).unwrap_or_else(|e| die(&format!("clock_gettime: {e}"))))
}

/// An SRTP context for one direction of one stream; `rx` ones authenticate (no replay window:
/// the generator counts reordering itself, like rtpgen).
fn context(b64: &str, profile: ProtectionProfile) -> Context {
    let raw = STANDARD
        .decode(b64.trim())
        .unwrap_or_else(|_| die(&format!("key is not base64: {b64}")));
    let (kl, sl) = (profile.key_len(), profile.salt_len());
    if raw.len() != kl + sl {
        die(&format!(
            "key of {} bytes, the suite needs {}",
            raw.len(),
            kl + sl
        ));
    }
    Context::new(
        &raw[..kl],
        &raw[kl..],
        profile,
        None,
        None,
        PROVIDER.crypto(),
    )
    .unwrap_or_else(|e| die(&format!("SRTP context: {e}")))
}

struct Sock {
    s: UdpSocket,
    port: u16,
}

fn sock(socks: &mut Vec<Sock>, by_port: &mut HashMap<u16, usize>, port: u16, buf: usize) -> usize {
    if let Some(&i) = by_port.get(&port) {
        return i;
    }
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| die(&format!("bind 127.0.0.1:{port}: {e}")));
    s.set_nonblocking(true)
        .unwrap_or_else(|e| die(&format!("nonblocking: {e}")));
    let _ = setsockopt(&s, sockopt::ReceiveTimestampns, &true)
        .map_err(|e| die(&format!("SO_TIMESTAMPNS: {e}")));
    // Like rtpgen: best effort (capped by net.core.[rw]mem_max).
    let _ = setsockopt(&s, sockopt::RcvBuf, &buf);
    let _ = setsockopt(&s, sockopt::SndBuf, &buf);
    socks.push(Sock { s, port });
    by_port.insert(port, socks.len() - 1);
    socks.len() - 1
}

/// On-CPU time (ns) of all threads of `pid` (schedstat).
fn sched_ns(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// utime + stime ticks of `pid` (/proc/PID/stat fields 14, 15).
fn stat_ticks(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[derive(Default, Clone, Copy)]
struct Core {
    busy: u64,
    total: u64,
    softirq: u64,
}

fn core(n: usize) -> Core {
    let Ok(s) = fs::read_to_string("/proc/stat") else {
        return Core::default();
    };
    let want = format!("cpu{n} ");
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(&want) {
            let v: Vec<u64> = rest
                .split_whitespace()
                .take(8)
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() == 8 {
                let total: u64 = v.iter().sum();
                return Core {
                    busy: total - v[3] - v[4],
                    total,
                    softirq: v[6],
                };
            }
        }
    }
    Core::default()
}

/// UDP InErrors, RcvbufErrors, SndbufErrors (/proc/net/snmp).
fn udp_errs() -> [u64; 3] {
    let mut out = [0; 3];
    let Ok(s) = fs::read_to_string("/proc/net/snmp") else {
        return out;
    };
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
    if lines.len() >= 2 {
        for (h, v) in lines[0].split_whitespace().zip(lines[1].split_whitespace()) {
            let v = v.parse().unwrap_or(0);
            match h {
                "InErrors" => out[0] = v,
                "RcvbufErrors" => out[1] = v,
                "SndbufErrors" => out[2] = v,
                _ => {}
            }
        }
    }
    out
}

fn self_cpu_s() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
        })
        .unwrap_or(f64::NAN)
}

fn pct(h: &[u32], n: u64, q: f64) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    let target = ((q * n as f64).ceil() as u64).max(1);
    let mut c = 0u64;
    for (i, &x) in h.iter().enumerate() {
        c += u64::from(x);
        if c >= target {
            return i as f64;
        }
    }
    HIST_US as f64
}

struct Snap {
    sched: u64,
    ticks: Option<u64>,
    relay_core: Core,
    gen_core: Core,
    gen_cpu_s: f64,
    udp: [u64; 3],
}

fn snap(a: &Args) -> Snap {
    Snap {
        sched: a.relay_pid.map_or(0, sched_ns),
        ticks: a.relay_pid.and_then(stat_ticks),
        relay_core: core(a.relay_core),
        gen_core: core(a.gen_core),
        gen_cpu_s: self_cpu_s(),
        udp: udp_errs(),
    }
}

fn main() {
    let a = args();
    let text = fs::read_to_string(&a.map).unwrap_or_else(|e| die(&format!("map {}: {e}", a.map)));
    let mut socks: Vec<Sock> = Vec::new();
    let mut by_port: HashMap<u16, usize> = HashMap::new();
    let mut streams: Vec<Stream> = Vec::new();
    let mut ncalls = 0usize;
    let mut call_ids: Vec<String> = Vec::new();
    let mut srtp_calls = 0usize;
    let relay_ip = Ipv4Addr::LOCALHOST;
    for (ln, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 5 && f.len() != 9 {
            die(&format!("map line {}: 5 or 9 columns expected", ln + 1));
        }
        let port = |i: usize| -> u16 {
            f[i].parse()
                .unwrap_or_else(|_| die(&format!("map line {}: bad port {}", ln + 1, f[i])))
        };
        let (ap, ra, bp, rb) = (port(1), port(2), port(3), port(4));
        if bp == 0 {
            die("echo mode (b_port 0) is not supported");
        }
        let keys = (f.len() == 9).then(|| [f[5], f[6], f[7], f[8]]);
        srtp_calls += usize::from(keys.is_some());
        for (src, dst, exp, tx, rx) in [
            (ap, ra, bp, keys.map(|k| k[0]), keys.map(|k| k[3])),
            (bp, rb, ap, keys.map(|k| k[2]), keys.map(|k| k[1])),
        ] {
            let src_sock = sock(&mut socks, &mut by_port, src, a.rcvbuf);
            sock(&mut socks, &mut by_port, exp, a.rcvbuf);
            let ssrc = SSRC_BASE + streams.len() as u32;
            streams.push(Stream {
                call: ncalls,
                src_sock,
                dst: SockaddrIn::from(SocketAddrV4::new(relay_ip, dst)),
                exp_port: exp,
                ssrc,
                seq: 0,
                tx: tx.map(|k| context(k, a.profile)),
                rx: rx.map(|k| context(k, a.profile)),
                sent_meas: 0,
                recv_meas: 0,
                recv_all: 0,
                reorder: 0,
                misrouted: 0,
                last_rx_seq: -1,
            });
        }
        call_ids.push(f[0].to_owned());
        ncalls += 1;
    }
    if streams.is_empty() {
        die("empty map");
    }
    let nstreams = streams.len();
    // Send order grouped by source socket (batches per socket), as rtpgen.
    let mut order: Vec<usize> = (0..nstreams).collect();
    order.sort_by_key(|&i| (streams[i].src_sock, i));

    let ep = Epoll::new(EpollCreateFlags::empty()).unwrap_or_else(|e| die(&format!("epoll: {e}")));
    for (i, s) in socks.iter().enumerate() {
        ep.add(&s.s, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .unwrap_or_else(|e| die(&format!("epoll add: {e}")));
    }

    let mut hist_k = vec![0u32; HIST_US];
    let mut hist_u = vec![0u32; HIST_US];
    let (mut nk, mut sum_k) = (0u64, 0f64);
    let period = 1_000_000_000u64 / u64::from(a.pps);
    let tick = a.tick_us * 1000;
    let step = period as f64 / nstreams as f64;
    let t0 = clock(ClockId::CLOCK_MONOTONIC) + 50_000_000;
    let t_meas0 = t0 + (a.warmup * 1e9) as u64;
    let t_meas1 = t_meas0 + (a.duration * 1e9) as u64;
    let t_end = t_meas1 + (a.drain * 1e9) as u64;
    let (mut c, mut sent, mut send_err, mut bad, mut auth_fail, mut enc_err) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut late_max = 0u64;
    let (mut s0, mut s1): (Option<Snap>, Option<Snap>) = (None, None);

    // Send batch: plaintext packets of one source socket.
    let mut plain = vec![[0xffu8; HDR + PAYLOAD]; BATCH];
    let mut batch_sid = [0usize; BATCH];
    let mut addrs: [Option<SockaddrIn>; BATCH] = [None; BATCH];
    let mut wire: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(HDR + PAYLOAD + 16))
        .collect();
    let mut send_hdrs = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    // Receive batch.
    let mut rbufs = vec![[0u8; 1500]; BATCH];
    let mut recv_hdrs = MultiHeaders::<()>::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec)));
    let mut events = vec![EpollEvent::empty(); 1024];

    // No signal handler (that would need unsafe code): SIGTERM/SIGINT end the run unreported.
    loop {
        let now = clock(ClockId::CLOCK_MONOTONIC);
        if s0.is_none() && now >= t_meas0 {
            s0 = Some(snap(&a));
        }
        if s0.is_some() && s1.is_none() && now >= t_meas1 {
            s1 = Some(snap(&a));
        }
        if now >= t_end {
            break;
        }

        // ---- send what is due, batched per source socket
        let (mut nb, mut cur) = (0usize, usize::MAX);
        // (nothing is sent from the end of the measurement window on, as rtpgen)
        loop {
            if now >= t_meas1 {
                break;
            }
            let due = t0 + (c as f64 * step) as u64;
            let more = due <= now;
            let sid = order[(c % nstreams as u64) as usize];
            let si = streams[sid].src_sock;
            let flush = nb > 0 && (!more || si != cur || nb == BATCH);
            if flush {
                let tx = clock(ClockId::CLOCK_REALTIME);
                for k in 0..nb {
                    plain[k][HDR + 12..HDR + 20].copy_from_slice(&tx.to_le_bytes());
                    let st = &mut streams[batch_sid[k]];
                    wire[k].clear();
                    match st.tx.as_mut() {
                        Some(ctx) => match ctx.encrypt_rtp(&plain[k]) {
                            Ok(p) => wire[k].extend_from_slice(&p),
                            Err(_) => {
                                enc_err += 1;
                                wire[k].extend_from_slice(&plain[k]);
                            }
                        },
                        None => wire[k].extend_from_slice(&plain[k]),
                    }
                }
                let iov: Vec<[IoSlice<'_>; 1]> =
                    wire[..nb].iter().map(|w| [IoSlice::new(w)]).collect();
                // Ok: every message was handed to the kernel but a rare partial send, which
                // then shows as loss (nix gives no count without reading unset addresses).
                match sendmmsg(
                    socks[cur].s.as_raw_fd(),
                    &mut send_hdrs,
                    &iov,
                    &addrs[..nb],
                    no_cmsgs,
                    MsgFlags::empty(),
                ) {
                    Ok(_) => sent += nb as u64,
                    Err(_) => send_err += nb as u64,
                }
                nb = 0;
            }
            if !more {
                break;
            }
            late_max = late_max.max(now.saturating_sub(due));
            cur = si;
            let st = &mut streams[sid];
            let p = &mut plain[nb];
            p[0] = 0x80;
            p[1] = 0; // PCMU
            p[2..4].copy_from_slice(&(st.seq as u16).to_be_bytes());
            p[4..8].copy_from_slice(&(st.seq.wrapping_mul(8000 / a.pps)).to_be_bytes());
            p[8..12].copy_from_slice(&st.ssrc.to_be_bytes());
            p[HDR..HDR + 4].copy_from_slice(&MAGIC.to_le_bytes());
            p[HDR + 4..HDR + 8].copy_from_slice(&(sid as u32).to_le_bytes());
            p[HDR + 8..HDR + 12].copy_from_slice(&st.seq.to_le_bytes());
            let meas = due >= t_meas0 && due < t_meas1;
            p[HDR + 20] = u8::from(meas);
            if meas {
                st.sent_meas += 1;
            }
            st.seq += 1;
            addrs[nb] = Some(st.dst);
            batch_sid[nb] = sid;
            nb += 1;
            c += 1;
        }

        // ---- sleep to the next tick (latency comes from kernel timestamps)
        let nt = clock(ClockId::CLOCK_MONOTONIC);
        let next = if nt < t0 {
            t0
        } else {
            nt - (nt - t0) % tick + tick
        };
        let _ = clock_nanosleep(
            ClockId::CLOCK_MONOTONIC,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &TimeSpec::new((next / 1_000_000_000) as _, (next % 1_000_000_000) as _),
        );

        // ---- receive
        let ne = ep.wait(&mut events, EpollTimeout::ZERO).unwrap_or(0);
        for ev in &events[..ne] {
            let si = ev.data() as usize;
            for _round in 0..64 {
                let mut got = [(0usize, 0u64); BATCH];
                let r = {
                    let mut iov: Vec<[IoSliceMut<'_>; 1]> = rbufs
                        .iter_mut()
                        .map(|b| [IoSliceMut::new(&mut b[..])])
                        .collect();
                    match recvmmsg(
                        socks[si].s.as_raw_fd(),
                        &mut recv_hdrs,
                        iov.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) {
                        Ok(res) => {
                            let mut n = 0;
                            for m in res {
                                let krx = m.cmsgs().ok().and_then(|mut it| {
                                    it.find_map(|c| match c {
                                        ControlMessageOwned::ScmTimestampns(ts) => Some(ns(ts)),
                                        _ => None,
                                    })
                                });
                                got[n] = (m.bytes, krx.unwrap_or(0));
                                n += 1;
                            }
                            n
                        }
                        Err(_) => 0,
                    }
                };
                if r == 0 {
                    break;
                }
                let urx = clock(ClockId::CLOCK_REALTIME);
                for (i, &(len, krx)) in got[..r].iter().enumerate() {
                    let p = &rbufs[i][..len];
                    if len < HDR + STAMP {
                        bad += 1;
                        continue;
                    }
                    let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
                    let sid = ssrc.wrapping_sub(SSRC_BASE) as usize;
                    if sid >= nstreams {
                        bad += 1;
                        continue;
                    }
                    let st = &mut streams[sid];
                    let dec;
                    let p: &[u8] = match st.rx.as_mut() {
                        Some(ctx) => match ctx.decrypt_rtp(p) {
                            Ok(d) => {
                                dec = d;
                                &dec
                            }
                            Err(_) => {
                                auth_fail += 1;
                                bad += 1;
                                continue;
                            }
                        },
                        None => p,
                    };
                    let hl = HDR + 4 * usize::from(p[0] & 0x0f);
                    if p.len() < hl + STAMP {
                        bad += 1;
                        continue;
                    }
                    let u32le = |o: usize| u32::from_le_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
                    let (mg, ssid, sq) = (u32le(hl), u32le(hl + 4), u32le(hl + 8));
                    if mg != MAGIC || ssid as usize != sid {
                        bad += 1;
                        continue;
                    }
                    let mut txb = [0u8; 8];
                    txb.copy_from_slice(&p[hl + 12..hl + 20]);
                    let tx = u64::from_le_bytes(txb);
                    let meas = p[hl + 20] != 0;
                    if socks[si].port != st.exp_port {
                        st.misrouted += 1;
                    }
                    st.recv_all += 1;
                    if i64::from(sq) < st.last_rx_seq {
                        st.reorder += 1;
                    } else {
                        st.last_rx_seq = i64::from(sq);
                    }
                    if !meas {
                        continue;
                    }
                    st.recv_meas += 1;
                    let krx = if krx == 0 { urx } else { krx };
                    let lk = (krx as i64 - tx as i64).max(0) as usize / 1000;
                    let lu = (urx as i64 - tx as i64).max(0) as usize / 1000;
                    hist_k[lk.min(HIST_US - 1)] += 1;
                    hist_u[lu.min(HIST_US - 1)] += 1;
                    nk += 1;
                    sum_k += lk as f64;
                }
                if r < BATCH {
                    break;
                }
            }
        }
    }

    // ---- results (rtpgen's JSON line, plus srtp fields)
    let (mut sent_meas, mut recv_meas, mut reorder, mut misrouted, mut dead) = (0, 0, 0, 0, 0);
    for s in &streams {
        sent_meas += s.sent_meas;
        recv_meas += s.recv_meas.min(s.sent_meas);
        reorder += s.reorder;
        misrouted += s.misrouted;
        dead += u64::from(s.recv_all == 0);
    }
    // Streams that never delivered a packet, by call (a diagnostic for the run's logs).
    let dead_list: Vec<String> = streams
        .iter()
        .enumerate()
        .filter(|(_, s)| s.recv_all == 0)
        .map(|(i, s)| {
            let dir = if i % 2 == 0 { "A->B" } else { "B->A" };
            format!("{} {dir} (ssrc {:#x})", call_ids[s.call], s.ssrc)
        })
        .collect();
    if !dead_list.is_empty() {
        eprintln!(
            "srtpgen: {} dead streams: {}",
            dead_list.len(),
            dead_list.join(", ")
        );
    }
    let nan = f64::NAN;
    let (relay_sched, relay_cpu, core_busy, core_soft, gen_busy, gen_cpu, udp) = match (&s0, &s1) {
        (Some(x), Some(y)) => {
            let d = a.duration;
            let rs = if a.relay_pid.is_some() {
                100.0 * (y.sched - x.sched) as f64 / 1e9 / d
            } else {
                nan
            };
            let rc = match (x.ticks, y.ticks) {
                (Some(p), Some(q)) => 100.0 * (q - p) as f64 / 100.0 / d, // CLK_TCK 100
                _ => nan,
            };
            let frac = |a: Core, b: Core, f: fn(Core) -> u64| {
                if b.total > a.total {
                    100.0 * (f(b) - f(a)) as f64 / (b.total - a.total) as f64
                } else {
                    nan
                }
            };
            (
                rs,
                rc,
                frac(x.relay_core, y.relay_core, |c| c.busy),
                frac(x.relay_core, y.relay_core, |c| c.softirq),
                frac(x.gen_core, y.gen_core, |c| c.busy),
                100.0 * (y.gen_cpu_s - x.gen_cpu_s) / d,
                [
                    y.udp[0] - x.udp[0],
                    y.udp[1] - x.udp[1],
                    y.udp[2] - x.udp[2],
                ],
            )
        }
        _ => (nan, nan, nan, nan, nan, nan, [0; 3]),
    };
    let lost = sent_meas - recv_meas;
    let loss_pct = if sent_meas > 0 {
        100.0 * lost as f64 / sent_meas as f64
    } else {
        nan
    };
    let maxk = hist_k.iter().rposition(|&x| x > 0).unwrap_or(0) as f64;
    let j = |x: f64, prec: usize| -> String {
        if x.is_finite() {
            format!("{x:.prec$}")
        } else {
            "null".into()
        }
    };
    let line = format!(
        concat!(
            "{{\"label\":\"{}\",\"calls\":{},\"streams\":{},\"gen_sockets\":{},\"pps_offered\":{},",
            "\"duration_s\":{:.1},\"sent_meas\":{},\"recv_meas\":{},\"lost\":{},\"loss_pct\":{},",
            "\"lat_us_p50\":{},\"lat_us_p90\":{},\"lat_us_p99\":{},\"lat_us_p999\":{},\"lat_us_max\":{},",
            "\"lat_us_mean\":{},\"user_lat_us_p50\":{},\"user_lat_us_p99\":{},\"user_lat_us_p999\":{},",
            "\"relay_cpu_pct\":{},\"relay_sched_cpu_pct\":{},\"core_busy_pct\":{},\"core_softirq_pct\":{},",
            "\"gen_cpu_pct\":{},\"gen_core_busy_pct\":{},\"relay_core_foreign_pct\":{},\"send_err\":{},",
            "\"bad\":{},\"reorder\":{},\"misrouted\":{},\"dead_streams\":{},\"udp_inerr\":{},",
            "\"udp_rcvbuf_err\":{},\"udp_sndbuf_err\":{},\"sched_late_max_us\":{:.0},",
            "\"generator\":\"srtpgen\",\"srtp_calls\":{},\"auth_fail\":{},\"encrypt_err\":{},\"sent_total\":{}}}"
        ),
        a.label,
        ncalls,
        nstreams,
        socks.len(),
        nstreams as u64 * u64::from(a.pps),
        a.duration,
        sent_meas,
        recv_meas,
        lost,
        j(loss_pct, 5),
        j(pct(&hist_k, nk, 0.50), 0),
        j(pct(&hist_k, nk, 0.90), 0),
        j(pct(&hist_k, nk, 0.99), 0),
        j(pct(&hist_k, nk, 0.999), 0),
        j(maxk, 0),
        j(if nk > 0 { sum_k / nk as f64 } else { nan }, 1),
        j(pct(&hist_u, nk, 0.50), 0),
        j(pct(&hist_u, nk, 0.99), 0),
        j(pct(&hist_u, nk, 0.999), 0),
        j(relay_cpu, 1),
        j(relay_sched, 1),
        j(core_busy, 1),
        j(core_soft, 1),
        j(gen_cpu, 1),
        j(gen_busy, 1),
        j(core_busy - relay_sched, 1),
        send_err,
        bad,
        reorder,
        misrouted,
        dead,
        udp[0],
        udp[1],
        udp[2],
        late_max as f64 / 1e3,
        srtp_calls,
        auth_fail,
        enc_err,
        sent,
    );
    println!("{line}");
    if let Some(out) = &a.out {
        match fs::OpenOptions::new().create(true).append(true).open(out) {
            Ok(mut f) => {
                let _ = writeln!(f, "{line}");
            }
            Err(e) => eprintln!("srtpgen: {out}: {e}"),
        }
    }
}
