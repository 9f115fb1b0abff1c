//! Media-node mode with a real controller: Kamailio 5.6 (Debian) with its `rtpengine` module
//! pointed at callmask's NG socket (`ng.listen`) relays a call from a sipp caller to a sipp
//! callee, all on 127.0.0.1. Kamailio does SIP only; callmask answers `offer` / `answer` /
//! `delete`, anchors the media and records it.
//!
//! The caller plays a 10 s cut of dev call 007 (in-band DTMF sent together with RFC 4733
//! events, off-frequency negative controls, speech) as real-time RTP. Checked: the callee's
//! SDP points at callmask, its RTP arrives from callmask, the NG commands were answered `ok`,
//! the recording's sidecar keeps Call-ID and both tags, and `../shared/eval/score.py` on the
//! recorded caller channel finds 0 in-band DTMF leaked, 0 RFC 4733 events forwarded (every
//! digit spandsp decodes in the recording counts as forwarded) and 0 negative controls muted.
//! Two seconds in, the caller's in-dialog INFO makes Kamailio call `block_dtmf()` (NG `block
//! DTMF`): the callee then receives no RFC 4733 packet and hears no key.
//!
//! Needs kamailio (+ its rtpengine module), sipp, python3 with numpy/scipy/soundfile and
//! `../shared/eval` (or `CALLMASK_SHARED`); a missing one fails the test unless
//! `CALLMASK_ALLOW_SKIP=1`.
#![allow(clippy::disallowed_methods)] // test harness: reads env, the clock

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callmask_integration::{
    free_udp_port, missing, tail, terminate, udp_port_bound, wait_for, Callmask, CallmaskOpts,
    Scenario, Sipp, TempDir, UdpCapture,
};

const KAMAILIO_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";
/// The cut of dev call 007 played: quiet at both ends (no label crosses them).
const CUT_MS: (u64, u64) = (26_000, 35_860);
/// When the caller's INFO makes Kamailio call `block_dtmf()`: before the cut's keys (4.25 s).
const BLOCK_MS: u32 = 2_000;

fn eval_dir() -> Option<PathBuf> {
    callmask_integration::eval_dir("data/dev/call_007.json")
}

fn kamailio_bin() -> Option<PathBuf> {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| callmask_integration::have("kamailio").then(|| PathBuf::from("kamailio")))
}

/// Kamailio as a stateful proxy: every INVITE's SDP goes through `rtpengine_offer`, every
/// reply's through `rtpengine_answer`, BYE through `rtpengine_delete`, flags as common configs
/// write them. Stopped by PID on drop.
struct Kamailio {
    child: Option<Child>,
    sip: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Kamailio {
    fn start(bin: &Path, ng: SocketAddr, callee: SocketAddr) -> Kamailio {
        let dir = TempDir::new("kamailio-ng");
        let port = free_udp_port();
        let sip = SocketAddr::from(([127, 0, 0, 1], port));
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=no
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{KAMAILIO_MODULES}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:{ng}")
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (has_totag()) {{
        loose_route();
        if (is_method("INFO")) {{
            if (!block_dtmf()) {{ sl_send_reply("500", "block DTMF failed"); exit; }}
            sl_send_reply("200", "DTMF blocked");
            exit;
        }}
        if (is_method("BYE")) {{ rtpengine_delete(); }}
        if (is_method("ACK") && !t_check_trans()) {{ $du = "sip:{callee}"; forward(); exit; }}
    }} else {{
        t_check_trans();
        record_route();
        if (is_method("INVITE") && has_body("application/sdp")) {{
            if (!rtpengine_offer("replace-origin replace-session-connection ICE=remove RTP/AVP trust-address symmetric direction=internal direction=external label=caller record-call=yes DTMF-security=silence via-branch=1")) {{
                sl_send_reply("503", "Media relay refused"); exit;
            }}
            t_on_reply("ANSWER");
        }}
    }}
    $du = "sip:{callee}";
    t_relay();
}}
onreply_route[ANSWER] {{
    if (has_body("application/sdp")) {{
        rtpengine_answer("replace-origin replace-session-connection ICE=remove RTP/AVP trust-address symmetric via-branch=1");
    }}
}}
"#
        );
        let cfg_path = dir.path().join("kamailio.cfg");
        fs::write(&cfg_path, cfg).expect("kamailio cfg");
        let log = dir.path().join("kamailio.log");
        let out = fs::File::create(&log).expect("kamailio log");
        let child = Command::new(bin)
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-w"])
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start kamailio: {e}"));
        let k = Kamailio {
            child: Some(child),
            sip,
            log,
            _dir: dir,
        };
        let up = wait_for(Duration::from_secs(10), || {
            udp_port_bound(port).then_some(())
        });
        assert!(
            up.is_some(),
            "kamailio did not bind {sip}\n{}",
            k.log_tail()
        );
        k
    }

    fn log_tail(&self) -> String {
        let text = String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned();
        tail(&text, 4000).to_owned()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

fn python(eval: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("EVAL_DIR", eval)
        .env(
            "SPANDSP_DTMF_BIN",
            std::env::var("SPANDSP_DTMF_BIN")
                .unwrap_or_else(|_| "/tmp/callmask-eval/spandsp_dtmf".into()),
        )
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `dir/call_ng.{json,ulaw,wav}`: dev call 007 between `CUT_MS`, labels shifted.
const CUT: &str = r#"
import json, os, sys
sys.path.insert(0, os.environ["EVAL_DIR"])
import soundfile as sf
src, dst, a, b = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lab = json.load(open(src + ".json"))
ul = open(src + ".ulaw", "rb").read()[a * 8:b * 8]
open(dst + ".ulaw", "wb").write(ul)
x, fs = sf.read(src + ".wav", dtype="int16")
sf.write(dst + ".wav", x[a * 8:b * 8], fs, subtype="PCM_16")
def keep(v):
    s = v.get("start_ms", v.get("send_ms"))
    e = v.get("end_ms", s + v.get("duration_ms", 0))
    return a <= s and e <= b
out = {"meta": dict(lab["meta"], duration_ms=b - a)}
for k, items in lab.items():
    if k == "meta":
        continue
    out[k] = []
    for v in items:
        if not keep(v):
            continue
        v = dict(v)
        for t in ("start_ms", "end_ms", "send_ms"):
            if t in v:
                v[t] -= a
        if "rtp_ts" in v:
            v["rtp_ts"] -= a * 8
        out[k].append(v)
json.dump(out, open(dst + ".json", "w"))
print(len(out["dtmf_inband"]), len(out["rfc4733_events"]), len(out["negative_control"]))
"#;

/// Caller channel of the recording → `out`; every digit spandsp decodes in it → `events`.
const CHANNEL: &str = r#"
import json, os, sys
sys.path.insert(0, os.environ["EVAL_DIR"])
import soundfile as sf
import score
from common import read_audio
x, fs = sf.read(sys.argv[1], dtype="int16", always_2d=True)
assert fs == 8000 and x.shape[1] == 2, (fs, x.shape)
sf.write(sys.argv[2], x[:, 0], fs, subtype="PCM_16")
m = read_audio(sys.argv[2])
ev = [dict(digit=e[2], start_ms=round(e[1] * 1000 / 8000, 1), duration_ms=40)
      for e in score.run_spandsp(m) if e[0] == "ON"]
json.dump(ev, open(sys.argv[3], "w"))
print(len(ev))
"#;

/// DTMF keys the callee can hear in the PCMU it received.
fn callee_media_digits(rtp: &[callmask_integration::RtpPacket]) -> usize {
    callmask_integration::dtmf_digit_count(&callmask_integration::rtp_to_pcm(rtp))
}

#[test]
fn kamailio_drives_callmask_over_ng() {
    let Some(eval) = eval_dir() else {
        return missing("../shared/eval/data/dev/call_007 not found (set CALLMASK_SHARED)");
    };
    let Some(kamailio) = kamailio_bin() else {
        return missing("kamailio not found: run scripts/setup.sh (Debian package kamailio)");
    };
    if !Path::new(KAMAILIO_MODULES).join("rtpengine.so").exists() {
        return missing("kamailio's rtpengine module not found (Debian package kamailio)");
    }
    for tool in ["sipp", "python3"] {
        if !callmask_integration::have(tool) {
            return missing(&format!("{tool} not found: run scripts/setup.sh"));
        }
    }
    let spandsp = std::env::var("SPANDSP_DTMF_BIN")
        .unwrap_or_else(|_| "/tmp/callmask-eval/spandsp_dtmf".into());
    if !Path::new(&spandsp).exists() {
        let st = Command::new("bash")
            .arg(eval.join("tools/build.sh"))
            .env("SPANDSP_DTMF_BIN", &spandsp)
            .stdout(Stdio::null())
            .status();
        if !st.is_ok_and(|s| s.success()) {
            return missing("cannot build the spandsp DTMF decoder (libspandsp-dev)");
        }
    }

    let t0 = std::time::Instant::now();
    let phase =
        |what: &str| eprintln!("[ng_kamailio] {:>6.1} s {what}", t0.elapsed().as_secs_f64());
    // The call: a 10 s cut of dev call 007, as sipp's pcap.
    let work = TempDir::new("ng-kamailio");
    let base = work.path().join("call_ng");
    let base_s = base.display().to_string();
    let src = eval.join("data/dev/call_007").display().to_string();
    let counts = python(
        &eval,
        CUT,
        &[&src, &base_s, &CUT_MS.0.to_string(), &CUT_MS.1.to_string()],
    );
    eprintln!(
        "cut: in-band, RFC 4733, negative controls = {}",
        counts.trim()
    );
    let pcap = work.path().join("call.pcap");
    let st = Command::new("python3")
        .arg(eval.join("rtp/make_pcap.py"))
        .arg(&base)
        .arg("-o")
        .arg(&pcap)
        .stdout(Stdio::null())
        .status()
        .expect("make_pcap.py");
    assert!(st.success(), "make_pcap.py failed");

    phase("pcap written");
    let ng = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 16,
        sets: vec![format!("ng.listen=\"{ng}\""), "masking.speech=false".into()],
        ..CallmaskOpts::default()
    });
    phase("callmask up");
    let callee_media = UdpCapture::bind();
    let callee_port = free_udp_port();
    let callee = SocketAddr::from(([127, 0, 0, 1], callee_port));
    let k = Kamailio::start(&kamailio, ng, callee);

    let portfile = work.path().join("offer_port");
    let mut uas = Sipp::new(
        Scenario::file("uas_call.xml").with("MEDIA_RE", cm.layout.media_rtp_port_regex()),
        callee_port,
    )
    .set("mport", callee_media.addr().port())
    .set("portfile", portfile.display())
    .timeout_s(60)
    .spawn();
    let call_ms = CUT_MS.1 - CUT_MS.0;
    let uac = Sipp::new(
        Scenario::file("ng_uac_play.xml")
            .with("PCAP", pcap.display().to_string())
            .with("BLOCK_MS", BLOCK_MS.to_string()),
        free_udp_port(),
    )
    .remote(k.sip)
    .pause_ms(call_ms as u32 + 1500)
    .arg("-mi")
    .arg("127.0.0.1")
    .arg("-mp")
    .arg(free_udp_port().to_string())
    .timeout_s(60)
    .run();
    phase("caller done");
    let uas_run = uas.wait();
    phase("callee done");
    assert!(
        uac.success() && uas_run.success(),
        "call through Kamailio failed\n--- uac ---\n{}\n--- uas ---\n{}\n--- kamailio ---\n{}\n--- callmask ---\n{}",
        uac.report(),
        uas_run.report(),
        k.log_tail(),
        cm.log_tail()
    );

    // The NG commands were answered ok, and media went through callmask's ports.
    let m = cm.wait_metrics("the NG delete", Duration::from_secs(10), |m| {
        m.sum(
            "callmask_ng_commands_total",
            &["command=\"delete\"", "result=\"ok\""],
        ) >= 1.0
    });
    for c in ["offer", "answer"] {
        let ok = m.sum(
            "callmask_ng_commands_total",
            &[&format!("command=\"{c}\""), "result=\"ok\""],
        );
        assert!(ok >= 1.0, "no ok {c}:\n{}", m.callmask_lines());
    }
    let errors = m.sum("callmask_ng_commands_total", &["result=\"error\""]);
    assert_eq!(
        errors,
        0.0,
        "NG errors:\n{}\n{}",
        m.callmask_lines(),
        cm.log_tail()
    );
    let relayed = callee_media.texts();
    assert!(
        relayed.len() > 400,
        "the callee got {} RTP packets (expected ~{} from the caller, through callmask)",
        relayed.len(),
        call_ms / 20
    );
    // Kamailio's block_dtmf() (NG `block DTMF`) clamped the callee's leg before the keys: no
    // RFC 4733 packet reached the callee and no key is heard in its audio.
    let blocked = m.sum(
        "callmask_ng_commands_total",
        &["command=\"block_dtmf\"", "result=\"ok\""],
    );
    assert_eq!(
        blocked,
        1.0,
        "block DTMF not answered ok:\n{}",
        k.log_tail()
    );
    let rtp = callee_media.rtp();
    let events = rtp.iter().filter(|p| p.pt == 101).count();
    let heard = callee_media_digits(&rtp);
    eprintln!(
        "[figure] callee leg after block DTMF: {} RTP packets, {events} RFC 4733, {heard} keys decodable",
        rtp.len()
    );
    assert_eq!(
        (events, heard),
        (0, 0),
        "DTMF reached the callee after block DTMF"
    );
    let from_callmask = relayed.iter().all(|(_, from)| {
        from.ip().is_loopback() && (cm.layout.media.0..=cm.layout.media.1).contains(&from.port())
    });
    assert!(from_callmask, "callee RTP not from callmask's media ports");
    let offered: u16 = fs::read_to_string(&portfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("the callee saw the offer's port");
    assert!((cm.layout.media.0..=cm.layout.media.1).contains(&offered));

    // The recording: sidecar with the NG dictionary's identifiers, caller channel scored.
    let rec = wait_for(Duration::from_secs(10), || {
        let wav = fs::read_dir(&cm.rec_dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "wav"))?;
        wav.with_extension("json").exists().then_some(wav)
    })
    .unwrap_or_else(|| panic!("no recording\n{}", cm.log_tail()));
    let sidecar = fs::read_to_string(rec.with_extension("json")).expect("sidecar");
    for key in ["\"sip_call_id\"", "\"from_tag\"", "\"to_tag\""] {
        assert!(sidecar.contains(key), "sidecar lacks {key}:\n{sidecar}");
    }
    phase("recording written");
    let masked = work.path().join("masked.wav");
    let events = work.path().join("masked.events.json");
    let rec_s = rec.display().to_string();
    let (masked_s, events_s) = (masked.display().to_string(), events.display().to_string());
    python(&eval, CHANNEL, &[&rec_s, &masked_s, &events_s]);
    let report = work.path().join("score.json");
    let out = Command::new("python3")
        .arg(eval.join("score.py"))
        .args(["--labels", &format!("{base_s}.json")])
        .args(["--original", &format!("{base_s}.wav")])
        .args(["--masked", &masked_s])
        .args(["--masked-events", &events_s])
        .args(["--json", &report.display().to_string()])
        .output()
        .expect("score.py");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "score.py failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    let verdict = python(
        &eval,
        r#"
import json, sys
a = json.load(open(sys.argv[1]))["aggregate"]
d, r, n = a["dtmf"], a["rfc4733"], a["negative_control"]
neg = sum(v["falsely_muted"] for v in n.values())
print(d["spans"], d["leaked"], d["still_detected_spandsp"], d["still_detected_multimon"], r["events"], r["leaked"], neg)
"#,
        &[&report.display().to_string()],
    );
    phase("scored");
    let v: Vec<u64> = verdict
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 7, "score summary: {verdict}");
    assert!(v[0] > 0 && v[4] > 0, "the cut holds DTMF: {verdict}");
    assert_eq!(
        (v[1], v[2], v[3], v[5], v[6]),
        (0, 0, 0, 0, 0),
        "in-band leaked, still decodable (spandsp, multimon), RFC 4733 forwarded, negatives muted\n{text}"
    );
}
