//! Issue 13, "safe to put inline", the flood proof: sipp places valid calls at 50 calls/s
//! (PBX peer on 127.0.0.1 → callmask → agent on 127.0.0.1) while a flooder on another loopback
//! address (127.1.0.5: outside both allow-lists, and outside the /24 of the signalled media
//! address, so its RTP may never latch) fires 5,000 malformed or unsolicited messages per
//! second at both SIP listeners and the media range for 30 s. Every valid call must complete,
//! callmask's peak RSS (`VmHWM`) must stay under [`RSS_BOUND_MB`], the flood must have been
//! seen and counted by callmask, and the CPU it cost is reported (`[figure]` lines).
//!
//! Alone in its own test binary so that no other e2e test shares the two CI cores with it.
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use callmask_integration::*;

/// Peak resident set size callmask may reach during the whole test (calls + flood), MB.
/// Measured (debug build, this test): see the `[figure]` lines and README "Access control and
/// limits"; the bound leaves a wide margin over that peak while still catching a table or
/// queue that grows with the flood.
const RSS_BOUND_MB: f64 = 150.0;
/// Valid call rate and the seconds of calls before the flood starts (the no-flood CPU
/// baseline), during it, and after it.
const CALL_RATE: u32 = 50;
const BASELINE_S: u64 = 5;
const FLOOD_S: u64 = 30;
/// Flood messages per second, in total (SIP to both listeners, RTP/RTCP to the media range).
const FLOOD_RATE: u64 = 5_000;
/// The flooder's address: loopback (Linux routes all of 127/8 to `lo`), not a peer.
const FLOODER_IP: &str = "127.1.0.5";

/// What the flooder sent, by kind, and what came back.
#[derive(Debug, Default)]
struct FloodCounts {
    garbage: AtomicU64,
    malformed: AtomicU64,
    too_large: AtomicU64,
    responses: AtomicU64,
    requests: AtomicU64,
    rtp: AtomicU64,
    send_errors: AtomicU64,
    replies: AtomicU64,
}

impl FloodCounts {
    fn sip(&self) -> u64 {
        self.garbage.load(Ordering::Relaxed)
            + self.malformed.load(Ordering::Relaxed)
            + self.too_large.load(Ordering::Relaxed)
            + self.responses.load(Ordering::Relaxed)
            + self.requests.load(Ordering::Relaxed)
    }
    fn total(&self) -> u64 {
        self.sip() + self.rtp.load(Ordering::Relaxed)
    }
}

/// xorshift64*: deterministic, dependency-free noise for the flood.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Flood message `i` to one of the SIP listeners `sip` or the media range `media`; returns
/// (bytes, destination, the counter it belongs to).
fn flood_message<'a>(
    i: u64,
    rng: &mut Rng,
    sip: [SocketAddr; 2],
    media: (u16, u16),
    me: SocketAddr,
    c: &'a FloodCounts,
) -> (Vec<u8>, SocketAddr, &'a AtomicU64) {
    let r = rng.next();
    // The side from the noise, not from `i`: every kind goes to both listeners.
    let to = sip[(r >> 63) as usize];
    let branch = format!("z9hG4bK-flood-{r:x}");
    let call_id = format!("flood-{r:x}@{FLOODER_IP}");
    match i % 20 {
        // Garbage bytes.
        0..=2 => {
            let len = 1 + rng.below(1200) as usize;
            let b = (0..len).map(|_| rng.next() as u8).collect();
            (b, to, &c.garbage)
        }
        // Malformed SIP: a bad start line, a header without a colon, a Content-Length past
        // the end, no Via.
        3 => (
            format!("INVITE sip:agent@{to} SIP/3.7\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n\r\n")
                .into_bytes(),
            to,
            &c.malformed,
        ),
        4 => (
            format!(
                "OPTIONS sip:agent@{to} SIP/2.0\r\nVia SIP/2.0/UDP {me}\r\nCall-ID: {call_id}\r\n\r\n"
            )
            .into_bytes(),
            to,
            &c.malformed,
        ),
        5 => (
            format!(
                "INVITE sip:agent@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n\
                 From: <sip:x@{me}>;tag=1\r\nTo: <sip:agent@{to}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 900\r\n\r\nv=0\r\n"
            )
            .into_bytes(),
            to,
            &c.malformed,
        ),
        6 => (
            format!("BYE sip:agent@{to} SIP/2.0\r\nCSeq: x BYE\r\nCall-ID: {call_id}\r\n\r\n")
                .into_bytes(),
            to,
            &c.malformed,
        ),
        // Over the header-count limit (sip.max_headers).
        7 if i % 100 == 7 => {
            let mut m = format!(
                "OPTIONS sip:agent@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n"
            );
            for k in 0..300 {
                m.push_str(&format!("X-Flood-{k}: {r:x}\r\n"));
            }
            m.push_str("Content-Length: 0\r\n\r\n");
            (m.into_bytes(), to, &c.too_large)
        }
        // Unsolicited responses (no transaction of callmask's matches them).
        7..=10 => {
            let (code, reason, method) = match rng.below(4) {
                0 => (200, "OK", "INVITE"),
                1 => (180, "Ringing", "INVITE"),
                2 => (487, "Request Terminated", "INVITE"),
                _ => (200, "OK", "BYE"),
            };
            (
                format!(
                    "SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP {to};branch={branch}\r\n\
                     From: <sip:pbx@{to}>;tag=a{r:x}\r\nTo: <sip:agent@{me}>;tag=b{r:x}\r\n\
                     Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
                )
                .into_bytes(),
                to,
                &c.responses,
            )
        }
        // Well-formed requests from outside the allow-list: INVITE with SDP, OPTIONS,
        // REGISTER, BYE and CANCEL of calls that do not exist, ACK.
        11..=16 => {
            let method = ["INVITE", "OPTIONS", "REGISTER", "BYE", "CANCEL", "ACK"]
                [rng.below(6) as usize];
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 {FLOODER_IP}\r\ns=-\r\nc=IN IP4 {FLOODER_IP}\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            );
            let body = if method == "INVITE" { sdp.as_str() } else { "" };
            let ctype = if method == "INVITE" {
                "Content-Type: application/sdp\r\n"
            } else {
                ""
            };
            (
                format!(
                    "{method} sip:agent@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n\
                     From: <sip:flood@{me}>;tag={r:x}\r\nTo: <sip:agent@{to}>\r\n\
                     Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:flood@{me}>\r\n\
                     Max-Forwards: 70\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
                to,
                &c.requests,
            )
        }
        // Stray RTP (and RTCP) at the media range: live calls' ports and idle ones.
        _ => {
            let span = u64::from(media.1 - media.0 + 1);
            let port = media.0 + rng.below(span) as u16;
            let mut p = vec![0x80, 0x00];
            p.extend_from_slice(&(r as u16).to_be_bytes());
            p.extend_from_slice(&(r as u32).to_be_bytes());
            p.extend_from_slice(&((r >> 32) as u32).to_be_bytes());
            p.extend([0xffu8; 160]);
            (p, SocketAddr::from(([127, 0, 0, 1], port)), &c.rtp)
        }
    }
}

/// Sends `FLOOD_RATE` messages per second for `dur` from `sock` (paced: every 5 ms, the
/// messages due by then), while another thread counts what comes back.
fn flood(
    sock: UdpSocket,
    sip: [SocketAddr; 2],
    media: (u16, u16),
    dur: Duration,
    c: Arc<FloodCounts>,
) {
    let me = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rx = {
        let sock = sock.try_clone().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (stop, c) = (stop.clone(), c.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                if sock.recv_from(&mut buf).is_ok() {
                    c.replies.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < dur {
        let due = (started.elapsed().as_secs_f64() * FLOOD_RATE as f64) as u64;
        while i < due {
            let (bytes, to, counter) = flood_message(i, &mut rng, sip, media, me, &c);
            if sock.send_to(&bytes, to).is_ok() {
                counter.fetch_add(1, Ordering::Relaxed);
            } else {
                // ICMP port unreachable from an earlier stray RTP packet surfaces here.
                c.send_errors.fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
        }
        thread::sleep(Duration::from_millis(5));
    }
    // Late replies still in flight.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    rx.join().unwrap();
}

/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system, all threads) the process `pid` has used so far.
fn cpu_s(pid: u32, tck: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // "pid (comm) S ppid …": utime and stime are fields 14 and 15, i.e. the 12th and 13th
    // after the state that follows the last ')'.
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / tck
}

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`), as MB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// UDP receive-buffer overflows on this host so far (`/proc/net/snmp` `Udp: RcvbufErrors`):
/// datagrams the kernel dropped because a socket's queue was full.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Datagrams the kernel dropped on the UDP socket bound to `port` on 127.0.0.1 (its queue
/// was full: the process did not read fast enough), from the `drops` column of /proc/net/udp.
fn udp_socket_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn valid_calls_complete_through_a_flood_of_malformed_and_unsolicited_messages() {
    if !have("sipp") {
        return missing("sipp (Debian sip-tester) not found");
    }
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 1024,
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let pid = cm.pid().unwrap();
    let tck = clk_tck();
    let flooder = UdpSocket::bind((FLOODER_IP, 0)).unwrap_or_else(|e| {
        panic!("cannot bind {FLOODER_IP} (all of 127/8 is loopback on Linux): {e}")
    });

    let total_s = BASELINE_S + FLOOD_S + 1;
    let calls = CALL_RATE * total_s as u32;
    let mut uas = Sipp::new(Scenario::Builtin("uas"), l.agents_peer.port())
        .calls(calls)
        .timeout_s(total_s as u32 + 40)
        .spawn();
    let mut uac = Sipp::new(Scenario::Builtin("uac"), l.pbx_peer.port())
        .remote(l.pbx_listen)
        .calls(calls)
        .rate(CALL_RATE)
        .pause_ms(1000)
        .timeout_s(total_s as u32 + 40)
        .spawn();

    // RSS every 250 ms until the calls are done.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let on = sampling.clone();
        thread::spawn(move || {
            let mut samples = Vec::new();
            let t0 = Instant::now();
            while on.load(Ordering::Relaxed) {
                samples.push((t0.elapsed().as_secs_f64(), status_mb(pid, "VmRSS")));
                thread::sleep(Duration::from_millis(250));
            }
            samples
        })
    };

    let cpu0 = cpu_s(pid, tck);
    let rss0 = status_mb(pid, "VmRSS");
    thread::sleep(Duration::from_secs(BASELINE_S));
    let cpu1 = cpu_s(pid, tck);
    let rss1 = status_mb(pid, "VmRSS");
    let before = cm.metrics();
    let kernel_drops0 = udp_rcvbuf_errors();
    let sock_drops0 = [l.pbx_listen, l.agents_listen].map(|a| udp_socket_drops(a.port()));

    let counts = Arc::new(FloodCounts::default());
    let flood_started = Instant::now();
    flood(
        flooder,
        [l.pbx_listen, l.agents_listen],
        l.media,
        Duration::from_secs(FLOOD_S),
        counts.clone(),
    );
    let flood_wall = flood_started.elapsed().as_secs_f64();
    let cpu2 = cpu_s(pid, tck);
    let rss2 = status_mb(pid, "VmRSS");
    let kernel_drops = udp_rcvbuf_errors().saturating_sub(kernel_drops0);
    let sock_drops = [l.pbx_listen, l.agents_listen]
        .map(|a| udp_socket_drops(a.port()))
        .iter()
        .zip(sock_drops0)
        .map(|(now, then)| now.saturating_sub(then))
        .collect::<Vec<u64>>();

    let uac = uac.wait();
    let uas = uas.wait();
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let hwm = status_mb(pid, "VmHWM");
    let rss_end = status_mb(pid, "VmRSS");

    let sent = counts.total();
    let sip_sent = counts.sip();
    let after = cm.metrics();
    let d = |name: &str, labels: &[&str]| after.sum(name, labels) - before.sum(name, labels);
    let denied = d("callmask_sip_access_denied_total", &[]);
    let denied_pbx = d("callmask_sip_access_denied_total", &["side=\"pbx\""]);
    let denied_agents = d("callmask_sip_access_denied_total", &["side=\"agents\""]);
    let malformed = d(
        "callmask_sip_messages_rejected_total",
        &["reason=\"malformed\""],
    );
    let unsupported = d(
        "callmask_sip_messages_rejected_total",
        &["reason=\"unsupported_version\""],
    );
    let too_large = d(
        "callmask_sip_messages_rejected_total",
        &["reason=\"too_large\""],
    );
    let rejected = d("callmask_sip_messages_rejected_total", &[]);
    let limits = d("callmask_limit_refusals_total", &[]);
    let rtp_dropped = d("callmask_rtp_packets_dropped_total", &[]);
    let counted = denied + rejected + limits;
    let wellformed =
        counts.requests.load(Ordering::Relaxed) + counts.responses.load(Ordering::Relaxed);
    let broken = counts.garbage.load(Ordering::Relaxed)
        + counts.malformed.load(Ordering::Relaxed)
        + counts.too_large.load(Ordering::Relaxed);
    let replies = counts.replies.load(Ordering::Relaxed);

    let baseline_cpu_per_s = (cpu1 - cpu0) / BASELINE_S as f64;
    let flood_cpu = cpu2 - cpu1;
    let flood_extra = flood_cpu - baseline_cpu_per_s * flood_wall;
    let rss_peak_sampled = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    eprintln!(
        "[figure] flood: {calls} valid calls at {CALL_RATE}/s, {} completed, 0 failed; \
         flood {sent} messages in {flood_wall:.1} s ({:.0}/s) from {FLOODER_IP}: {} garbage, \
         {} malformed, {} too large, {} unsolicited responses, {} requests from outside the \
         allow-list, {} stray RTP/RTCP; {replies} replies came back to the flooder \
         ({:.2} per SIP message)",
        uac.counts().0.unwrap_or(0),
        sent as f64 / flood_wall,
        counts.garbage.load(Ordering::Relaxed),
        counts.malformed.load(Ordering::Relaxed),
        counts.too_large.load(Ordering::Relaxed),
        counts.responses.load(Ordering::Relaxed),
        counts.requests.load(Ordering::Relaxed),
        counts.rtp.load(Ordering::Relaxed),
        replies as f64 / sip_sent.max(1) as f64,
    );
    eprintln!(
        "[figure] flood: sipp UAC {:?} successful/failed, UAS {:?}",
        uac.counts(),
        uas.counts()
    );
    eprintln!(
        "[figure] flood: callmask CPU {:.2} s/s with calls only ({BASELINE_S} s), {:.2} s/s \
         during the flood ({:.1} CPU-s in {flood_wall:.1} s; {:.1} CPU-s over the calls-only \
         rate = {:.1} µs per flood message)",
        baseline_cpu_per_s,
        flood_cpu / flood_wall,
        flood_cpu,
        flood_extra,
        flood_extra / sent.max(1) as f64 * 1e6,
    );
    eprintln!(
        "[figure] flood: callmask RSS {rss0:.1} MB at the start, {rss1:.1} MB before the \
         flood, {rss2:.1} MB at its end, {rss_end:.1} MB after the calls; peak {hwm:.1} MB \
         (VmHWM; sampled peak {rss_peak_sampled:.1} MB; bound {RSS_BOUND_MB} MB)"
    );
    eprintln!(
        "[figure] flood: counted by callmask during the flood: access denied {denied} \
         (pbx {denied_pbx}, agents {denied_agents}), rejected {rejected} (malformed \
         {malformed}, unsupported version {unsupported}, too large {too_large}), limit \
         refusals {limits}, RTP dropped {rtp_dropped}; dropped by the kernel on callmask's full \
         SIP socket queues: pbx {} agents {} (all UDP sockets of the host: {kernel_drops}; \
         net.core.rmem_max {})",
        sock_drops[0],
        sock_drops[1],
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap_or_default()
            .trim(),
    );

    // The flood was sent at the rate asked (else this test proves nothing).
    assert!(
        sent as f64 >= 0.9 * (FLOOD_RATE * FLOOD_S) as f64,
        "the flooder sent only {sent} messages in {flood_wall:.1} s"
    );
    // Every valid call completed.
    uac.assert_success("UAC (valid calls during the flood)", &cm);
    uas.assert_success("UAS (valid calls during the flood)", &cm);
    assert_eq!(
        uac.counts(),
        (Some(u64::from(calls)), Some(0)),
        "{}",
        uac.report()
    );
    assert_eq!(uas.counts().0, Some(u64::from(calls)), "{}", uas.report());
    assert!(cm.is_running(), "callmask died\n{}", cm.log_tail());
    assert_eq!(cm.healthz(), Some(200));
    cm.wait_metrics("every call ended", Duration::from_secs(10), |m| {
        m.active() == 0.0
    });

    assert!(
        hwm < RSS_BOUND_MB,
        "callmask's peak RSS {hwm:.1} MB is over the {RSS_BOUND_MB} MB bound"
    );
    assert!(
        denied_pbx > 0.0 && denied_agents > 0.0,
        "no access denial counted on one side\n{}",
        after.callmask_lines()
    );
    assert!(
        rtp_dropped > 0.0,
        "no stray RTP packet counted\n{}",
        after.callmask_lines()
    );
    assert!(
        malformed > 0.0 && too_large > 0.0,
        "malformed or oversized messages not counted\n{}",
        after.callmask_lines()
    );
    // The flood was seen by callmask: every SIP message of it is counted once (refused by access control, rejected
    // by the parser, or dropped by a limit), less what the kernel dropped before callmask
    // read it.
    assert!(
        counted + sock_drops.iter().sum::<u64>() as f64 >= 0.95 * sip_sent as f64,
        "callmask counted {counted} of the {sip_sent} SIP flood messages ({wellformed} well \
         formed, {broken} broken; kernel drops {kernel_drops})\n{}",
        after.callmask_lines()
    );
}
