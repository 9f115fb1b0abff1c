//! Scale-out with the engine admins already run (issue 17): Kamailio 5.6 (Debian) running
//! the documented trunk config (`deploy/kamailio/kamailio-trunk.cfg`, only its addresses
//! filled in) with an `rtpengine` set of two callmask media nodes, on two loopback addresses
//! (127.0.0.10 and 127.0.0.11, weight 1 each), between a sipp PBX (127.0.0.2) and a sipp
//! ACD (127.0.0.3).
//!
//! Every call plays a 10 s cut of dev call 007 (in-band keys sent together with RFC 4733
//! events, off-frequency negative controls, speech) as real-time RTP. Call-IDs are fixed
//! (`p1-1` …), so which node Kamailio's Call-ID hash picks for each call is the same on every
//! run. Three phases:
//! 1. eight calls: both nodes take calls (per the set's weights), every call is recorded on
//!    the node that carried it, and no key is decodable in any recording's caller channel;
//! 2. eight long calls; three seconds in, node A is killed (SIGKILL: a crashed machine);
//! 3. while phase 2's calls go on, eight new calls: Kamailio finds A silent (the config's
//!    500 ms timeout, one try), marks it disabled and sends every new call to B, so all eight complete and are
//!    recorded on B; phase 2's calls on B are unaffected: each recording is the whole call
//!    with no key decodable. Phase 2's calls on A lose their media with the node (the SIP
//!    dialog still ends: Kamailio relays the BYE after the failed `delete`).
//!
//! Needs kamailio (+ its rtpengine module), sipp, python3 with numpy/scipy/soundfile and
//! `../shared/eval` (or `CALLMASK_SHARED`); a missing one fails the test unless
//! `CALLMASK_ALLOW_SKIP=1`.
#![allow(clippy::disallowed_methods)] // test harness: reads env, the clock

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callmask_integration::ng::{cut_call, kamailio_bin, ng_prerequisites, python, NgKamailio};
use callmask_integration::{
    free_udp_port, missing, Callmask, CallmaskOpts, Metrics, Scenario, Sipp, SippChild, TempDir,
    UdpCapture,
};

/// The sipp PBX's and ACD's addresses (Kamailio's config tells them apart by source IP).
const PBX_IP: &str = "127.0.0.2";
const ACD_IP: &str = "127.0.0.3";

/// The cut of dev call 007 every call plays (the one `ng_kamailio.rs` plays).
const CUT_MS: (u64, u64) = (26_000, 35_860);
/// Calls per phase.
const CALLS: u32 = 8;
/// How long phase 2's calls stay up after their audio (so they outlive node A).
const LONG_TAIL_MS: u32 = 9_000;
/// When node A dies, after phase 2 starts.
const KILL_AFTER: Duration = Duration::from_secs(3);

/// Per recording in the given folders: node, SIP Call-ID, seconds of audio, keys spandsp
/// decodes in the caller (left) channel. One line each: `node call_id seconds keys`.
const RECORDINGS: &str = r#"
import glob, json, os, sys
sys.path.insert(0, os.environ["EVAL_DIR"])
import soundfile as sf
import score
for arg in sys.argv[1:]:
    node, folder = arg.split("=", 1)
    for wav in sorted(glob.glob(os.path.join(folder, "*.wav"))):
        side = json.load(open(wav[:-4] + ".json"))
        x, fs = sf.read(wav, dtype="int16", always_2d=True)
        assert fs == 8000 and x.shape[1] == 2, (fs, x.shape)
        keys = len(score.spandsp_digits(x[:, 0]))
        print(node, side["sip_call_id"], round(x.shape[0] / fs, 2), keys)
"#;

struct Recording {
    node: String,
    call_id: String,
    seconds: f64,
    keys: u32,
}

fn recordings(eval: &Path, nodes: &[(&str, &Path)]) -> Vec<Recording> {
    let args: Vec<String> = nodes
        .iter()
        .map(|(n, d)| format!("{n}={}", d.display()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(eval, RECORDINGS, &args)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4).then(|| Recording {
                node: f[0].to_string(),
                call_id: f[1].to_string(),
                seconds: f[2].parse().unwrap_or(0.0),
                keys: f[3].parse().unwrap_or(u32::MAX),
            })
        })
        .collect()
}

/// `deploy/kamailio/kamailio-trunk.cfg` with this test's addresses: each line replaced must
/// be in the file as documented (a doc edit that breaks the test fails here, loudly).
fn trunk_config(sip: SocketAddr, pbx: SocketAddr, acd: SocketAddr, nodes: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kamailio/kamailio-trunk.cfg");
    let mut cfg =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let ip = |a: SocketAddr| a.ip().to_string();
    for (from, to) in [
        (
            "listen=udp:10.0.0.2:5060".to_string(),
            format!("listen=udp:{sip}"),
        ),
        (
            r#"#!define PBX_IP "10.0.0.5""#.into(),
            format!(r#"#!define PBX_IP "{}""#, ip(pbx)),
        ),
        (
            r#"#!define PBX_URI "sip:10.0.0.5:5060""#.into(),
            format!(r#"#!define PBX_URI "sip:{pbx}""#),
        ),
        (
            r#"#!define ACD_IP "10.0.1.9""#.into(),
            format!(r#"#!define ACD_IP "{}""#, ip(acd)),
        ),
        (
            r#"#!define ACD_URI "sip:10.0.1.9:5060""#.into(),
            format!(r#"#!define ACD_URI "sip:{acd}""#),
        ),
        (
            r#"#!define MEDIA_NODES "udp:10.0.0.21:2223=1 udp:10.0.0.22:2223=1""#.into(),
            format!(r#"#!define MEDIA_NODES "{nodes}""#),
        ),
        ("log_stderror=no".into(), "log_stderror=yes".into()),
    ] {
        assert!(
            cfg.contains(&from),
            "{} no longer has `{from}`",
            path.display()
        );
        cfg = cfg.replace(&from, &to);
    }
    cfg
}

/// A media node: callmask in NG mode whose NG socket and media are on `ip`.
fn node(ip: &str) -> (Callmask, SocketAddr) {
    let ng: SocketAddr = format!("{ip}:{}", free_udp_port()).parse().expect("addr");
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 48,
        sets: vec![
            format!("ng.listen=\"{ng}\""),
            // The media address follows the listen address: put both sides on `ip`.
            format!("pbx.listen=\"{ip}:{}\"", free_udp_port()),
            format!("agents.listen=\"{ip}:{}\"", free_udp_port()),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    (cm, ng)
}

fn offers_ok(m: &Metrics) -> u32 {
    m.sum(
        "callmask_ng_commands_total",
        &["command=\"offer\"", "result=\"ok\""],
    ) as u32
}

fn callers(pcap: &Path, kamailio: SocketAddr, prefix: &str, rate: u32, tail_ms: u32) -> SippChild {
    let call_ms = (CUT_MS.1 - CUT_MS.0) as u32;
    Sipp::new(
        Scenario::file("ng_uac_calls.xml").with("PCAP", pcap.display().to_string()),
        free_udp_port(),
    )
    .local_ip(PBX_IP)
    .arg("-cid_str")
    .arg(format!("{prefix}-%u"))
    .remote(kamailio)
    .calls(CALLS)
    .rate(rate)
    .limit(CALLS)
    .pause_ms(call_ms + tail_ms)
    .arg("-mi")
    .arg("127.0.0.1")
    .arg("-mp")
    .arg(free_udp_port().to_string())
    .timeout_s(90)
    .spawn()
}

#[test]
fn two_callmask_nodes_behind_kamailio_fail_over() {
    let Some(eval) = callmask_integration::eval_dir("data/dev/call_007.json") else {
        return missing("../shared/eval/data/dev/call_007 not found (set CALLMASK_SHARED)");
    };
    if let Some(why) = ng_prerequisites(&eval) {
        return missing(&why);
    }
    let kamailio = kamailio_bin().expect("checked above");
    let t0 = Instant::now();
    let phase =
        |what: &str| eprintln!("[ng_scaleout] {:>6.1} s {what}", t0.elapsed().as_secs_f64());

    let work = TempDir::new("ng-scaleout");
    let base = work.path().join("call_ng");
    let pcap = work.path().join("call.pcap");
    let (inband, events, _) = cut_call(&eval, "call_007", CUT_MS, &base, &pcap);
    assert!(inband > 0 && events > 0, "the cut holds DTMF");

    let (mut a, ng_a) = node("127.0.0.10");
    let (b, ng_b) = node("127.0.0.11");
    let (rec_a, rec_b): (PathBuf, PathBuf) = (a.rec_dir.clone(), b.rec_dir.clone());
    phase("two nodes up");
    let callee_media = UdpCapture::bind();
    let acd: SocketAddr = format!("{ACD_IP}:{}", free_udp_port())
        .parse()
        .expect("addr");
    // The config knows the PBX by its address; requests toward it (none here: the callers
    // hang up) would go to this port. Each run of callers binds a port of its own.
    let pbx: SocketAddr = format!("{PBX_IP}:{}", free_udp_port())
        .parse()
        .expect("addr");
    let sip = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let cfg = trunk_config(sip, pbx, acd, &format!("udp:{ng_a}=1 udp:{ng_b}=1"));
    let k = NgKamailio::with_config(&kamailio, TempDir::new("kamailio-trunk"), sip, &cfg);
    let mut uas = Sipp::new(
        Scenario::file("ng_uas_calls.xml").with("C_RE", r"127\.0\.0\.1[01]"),
        acd.port(),
    )
    .local_ip(ACD_IP)
    .calls(3 * CALLS)
    .set("mport", callee_media.addr().port())
    .timeout_s(150)
    .spawn();

    // Phase 1: both nodes carry calls.
    let p1 = callers(&pcap, k.sip, "p1", 10, 1_000).wait();
    phase("phase 1 done");
    assert!(
        p1.success(),
        "phase 1 calls failed\n{}\n--- kamailio ---\n{}",
        p1.report(),
        k.log_tail()
    );
    let (a1, b1) = (offers_ok(&a.metrics()), offers_ok(&b.metrics()));
    eprintln!("[figure] phase 1: node A {a1} calls, node B {b1} calls");
    assert_eq!(a1 + b1, CALLS, "every offer answered by one node");
    assert!(a1 > 0 && b1 > 0, "the set spreads calls: A {a1}, B {b1}");

    // Phase 2: long calls; node A dies while they are up.
    let mut p2 = callers(&pcap, k.sip, "p2", 10, LONG_TAIL_MS);
    std::thread::sleep(KILL_AFTER);
    let a2 = offers_ok(&a.metrics()) - a1;
    let b2 = offers_ok(&b.metrics()) - b1;
    eprintln!("[figure] phase 2: node A {a2} calls, node B {b2} calls; killing node A");
    assert_eq!(a2 + b2, CALLS, "phase 2 calls all set up before the kill");
    assert!(
        a2 > 0 && b2 > 0,
        "phase 2 has calls on both nodes: A {a2}, B {b2}"
    );
    a.signal("KILL");
    assert!(
        a.wait_exit(Duration::from_secs(5)).is_some(),
        "node A still running"
    );
    phase("node A killed");

    // Phase 3: new calls while phase 2 goes on: all go to B.
    let p3 = callers(&pcap, k.sip, "p3", 4, 1_000).wait();
    phase("phase 3 done");
    assert!(
        p3.success(),
        "phase 3 calls failed after node A died\n{}\n--- kamailio ---\n{}",
        p3.report(),
        k.log_tail()
    );
    let p2 = p2.wait();
    let uas_run = uas.wait();
    phase("phase 2 done");
    eprintln!(
        "[figure] phase 2 callers: {:?} (successful, failed); callee: {:?}",
        p2.counts(),
        uas_run.counts()
    );
    let b3 = offers_ok(&b.metrics()) - b1 - b2;
    eprintln!("[figure] phase 3: node B {b3} of {CALLS} calls");
    assert_eq!(b3, CALLS, "every new call went to the surviving node");

    // Recordings: every call that finished on a live node, whole and without keys.
    let want_b = (b1 + b2 + CALLS) as usize;
    let recs = callmask_integration::wait_for(Duration::from_secs(15), || {
        let r = recordings(&eval, &[("A", &rec_a), ("B", &rec_b)]);
        (r.iter().filter(|r| r.node == "B").count() >= want_b).then_some(r)
    })
    .unwrap_or_else(|| panic!("node B did not write {want_b} recordings\n{}", b.log_tail()));
    let count = |node: &str, prefix: &str| {
        recs.iter()
            .filter(|r| r.node == node && r.call_id.starts_with(prefix))
            .count()
    };
    eprintln!(
        "[figure] recordings: A p1 {} p2 {} | B p1 {} p2 {} p3 {}",
        count("A", "p1-"),
        count("A", "p2-"),
        count("B", "p1-"),
        count("B", "p2-"),
        count("B", "p3-")
    );
    assert_eq!(
        count("A", "p1-"),
        a1 as usize,
        "node A's phase 1 recordings"
    );
    assert_eq!(
        count("B", "p1-"),
        b1 as usize,
        "node B's phase 1 recordings"
    );
    assert_eq!(
        count("B", "p2-"),
        b2 as usize,
        "node B's phase 2 recordings"
    );
    assert_eq!(
        count("B", "p3-"),
        CALLS as usize,
        "node B's phase 3 recordings"
    );
    let call_s = (CUT_MS.1 - CUT_MS.0) as f64 / 1000.0;
    for r in &recs {
        assert_eq!(
            r.keys, 0,
            "{} on node {}: {} keys decodable",
            r.call_id, r.node, r.keys
        );
        if r.node == "B" && r.call_id.starts_with("p2-") {
            // Unaffected by A's death: the whole call (audio + the long tail) is there.
            let want = call_s + f64::from(LONG_TAIL_MS) / 1000.0 - 1.0;
            assert!(
                r.seconds >= want,
                "{} on node B: {} s recorded, the call lasted ≥ {want} s",
                r.call_id,
                r.seconds
            );
        }
    }
    let relayed = callee_media.rtp().len();
    eprintln!("[figure] callee got {relayed} RTP packets in all");
    drop(k);
}

/// Both documented configs (trunk, registration) pass `kamailio -c` with the Debian modules
/// (the registration one is checked only here; the trunk one also runs above).
#[test]
fn deploy_configs_pass_kamailio_check() {
    let Some(kamailio) = kamailio_bin() else {
        return missing("kamailio not found: run scripts/setup.sh (Debian package kamailio)");
    };
    let dir = TempDir::new("kamailio-check");
    for name in ["kamailio-trunk.cfg", "kamailio-registrar.cfg"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/kamailio")
            .join(name);
        let cfg = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let listen = "listen=udp:10.0.0.2:5060";
        assert!(cfg.contains(listen), "{name} no longer has `{listen}`");
        // Kamailio checks that it can bind the listen address: use a loopback one.
        let cfg = cfg.replace(listen, &format!("listen=udp:127.0.0.1:{}", free_udp_port()));
        let file = dir.path().join(name);
        fs::write(&file, cfg).expect("write cfg");
        let out = std::process::Command::new(&kamailio)
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output()
            .expect("kamailio -c runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("config file ok"),
            "kamailio -c {name} failed:\n{text}"
        );
    }
}
