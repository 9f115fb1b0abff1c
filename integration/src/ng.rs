//! Shared by the media-node tests (`ng_kamailio.rs`, `ng_scaleout.rs`): Kamailio 5.6 (Debian)
//! with its `rtpengine` module pointed at one or more callmask NG sockets, and the dev-corpus
//! helpers they score recordings with (a labelled cut of a call, spandsp on a channel).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{
    free_udp_port, have, spawn_logged, tail, terminate, udp_port_bound, wait_for, TempDir,
};

/// Where Debian's kamailio package keeps its modules.
pub const KAMAILIO_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// The kamailio binary, if installed.
pub fn kamailio_bin() -> Option<PathBuf> {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| have("kamailio").then(|| PathBuf::from("kamailio")))
}

/// Why the media-node tests cannot run here (kamailio, its rtpengine module, sipp, python3
/// or the spandsp decoder missing), or `None`. Builds the spandsp decoder when needed.
pub fn ng_prerequisites(eval: &Path) -> Option<String> {
    if kamailio_bin().is_none() {
        return Some("kamailio not found: run scripts/setup.sh (Debian package kamailio)".into());
    }
    if !Path::new(KAMAILIO_MODULES).join("rtpengine.so").exists() {
        return Some("kamailio's rtpengine module not found (Debian package kamailio)".into());
    }
    for tool in ["sipp", "python3"] {
        if !have(tool) {
            return Some(format!("{tool} not found: run scripts/setup.sh"));
        }
    }
    let spandsp = spandsp_bin();
    if !Path::new(&spandsp).exists() {
        let st = Command::new("bash")
            .arg(eval.join("tools/build.sh"))
            .env("SPANDSP_DTMF_BIN", &spandsp)
            .stdout(Stdio::null())
            .status();
        if !st.is_ok_and(|s| s.success()) {
            return Some("cannot build the spandsp DTMF decoder (libspandsp-dev)".into());
        }
    }
    None
}

fn spandsp_bin() -> String {
    std::env::var("SPANDSP_DTMF_BIN").unwrap_or_else(|_| "/tmp/callmask-eval/spandsp_dtmf".into())
}

/// Kamailio as a stateful proxy in front of the callee: every INVITE's SDP goes through
/// `rtpengine_offer`, every reply's through `rtpengine_answer`, BYE through
/// `rtpengine_delete`, flags as common configs write them; an in-dialog INFO calls
/// `block_dtmf()`, or `silence_media()` when it carries `X-Media: silence`. Stopped by PID
/// on drop.
pub struct NgKamailio {
    child: Option<Child>,
    /// Kamailio's SIP address (UDP): the caller sends here.
    pub sip: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl NgKamailio {
    /// `rtpengine_sock` is the module parameter as written in a kamailio.cfg (one node
    /// `udp:IP:PORT`, or a set `udp:IP:PORT=W udp:IP:PORT=W`); `modparams` adds more
    /// `modparam("rtpengine", …)` lines.
    pub fn start(
        bin: &Path,
        rtpengine_sock: &str,
        modparams: &str,
        callee: SocketAddr,
    ) -> NgKamailio {
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
modparam("rtpengine", "rtpengine_sock", "{rtpengine_sock}")
{modparams}
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (has_totag()) {{
        loose_route();
        if (is_method("INFO")) {{
            if ($hdr(X-Media) == "silence") {{
                if (!silence_media()) {{ sl_send_reply("500", "silence media failed"); exit; }}
                sl_send_reply("200", "Media silenced");
                exit;
            }}
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
        Self::with_config(bin, dir, sip, &cfg)
    }

    /// Kamailio running `cfg` (a whole kamailio.cfg listening on `sip`, UDP), in `dir`.
    pub fn with_config(bin: &Path, dir: TempDir, sip: SocketAddr, cfg: &str) -> NgKamailio {
        let port = sip.port();
        let cfg_path = dir.path().join("kamailio.cfg");
        fs::write(&cfg_path, cfg).expect("kamailio cfg");
        let log = dir.path().join("kamailio.log");
        let child = spawn_logged(
            Command::new(bin)
                .arg("-f")
                .arg(&cfg_path)
                .args(["-DD", "-E", "-w"])
                .arg(dir.path())
                .arg("-P")
                .arg(dir.path().join("kamailio.pid")),
            &log,
            "kamailio",
        );
        let k = NgKamailio {
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

    /// The end of Kamailio's log.
    pub fn log_tail(&self) -> String {
        let text = String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned();
        tail(&text, 4000).to_owned()
    }
}

impl Drop for NgKamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

/// Runs `python3 -c script args…` with `EVAL_DIR` (the scorer's folder, for `import score`)
/// and `SPANDSP_DTMF_BIN` set; panics with its output when it fails; returns its stdout.
pub fn python(eval: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("EVAL_DIR", eval)
        .env("SPANDSP_DTMF_BIN", spandsp_bin())
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

/// Caller channel of a recording → `out`; every digit spandsp decodes in it → `events`.
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

/// Scores the caller channel (left) of the stereo recording `rec` with `score.py` against
/// the labels of the cut `base` (from [`cut_call`]), writing its files under `work`; prints
/// the report and returns, from its aggregate: in-band spans, leaked, still decodable by
/// spandsp, by multimon-ng, RFC 4733 events, RFC 4733 forwarded, negatives falsely muted.
pub fn score_caller_channel(eval: &Path, rec: &Path, base: &Path, work: &Path) -> Vec<u64> {
    let masked = work.join("masked.wav");
    let events = work.join("masked.events.json");
    let report = work.join("score.json");
    let s = |p: &Path| p.display().to_string();
    python(eval, CHANNEL, &[&s(rec), &s(&masked), &s(&events)]);
    let out = Command::new("python3")
        .arg(eval.join("score.py"))
        .args(["--labels", &format!("{}.json", s(base))])
        .args(["--original", &format!("{}.wav", s(base))])
        .args(["--masked", &s(&masked)])
        .args(["--masked-events", &s(&events)])
        .args(["--json", &s(&report)])
        .env("SPANDSP_DTMF_BIN", spandsp_bin())
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
        eval,
        r#"
import json, sys
a = json.load(open(sys.argv[1]))["aggregate"]
d, r, n = a["dtmf"], a["rfc4733"], a["negative_control"]
neg = sum(v["falsely_muted"] for v in n.values())
print(d["spans"], d["leaked"], d["still_detected_spandsp"], d["still_detected_multimon"], r["events"], r["leaked"], neg)
"#,
        &[&s(&report)],
    );
    let v: Vec<u64> = verdict
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 7, "score summary: {verdict}");
    v
}

/// Writes `dst.{json,ulaw,wav}`: corpus call `src` between `a` and `b` ms, labels shifted;
/// prints the in-band, RFC 4733 and negative-control counts of the cut.
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

/// A labelled cut of a dev-corpus call as sipp plays it: writes `base.{json,ulaw,wav}` (the
/// cut, labels shifted) and `pcap` (make_pcap.py: PCMU + the labelled RFC 4733 packets);
/// returns the cut's (in-band keys, RFC 4733 events, negative controls).
pub fn cut_call(
    eval: &Path,
    call: &str,
    cut_ms: (u64, u64),
    base: &Path,
    pcap: &Path,
) -> (u32, u32, u32) {
    let src = eval.join("data/dev").join(call).display().to_string();
    let base_s = base.display().to_string();
    let counts = python(
        eval,
        CUT,
        &[&src, &base_s, &cut_ms.0.to_string(), &cut_ms.1.to_string()],
    );
    let n: Vec<u32> = counts
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(n.len(), 3, "cut counts: {counts}");
    let st = Command::new("python3")
        .arg(eval.join("rtp/make_pcap.py"))
        .arg(base)
        .arg("-o")
        .arg(pcap)
        .stdout(Stdio::null())
        .status()
        .expect("make_pcap.py");
    assert!(st.success(), "make_pcap.py failed");
    (n[0], n[1], n[2])
}
