//! End to end with real phones and a real PBX (issue 12): Debian's baresip as the customer's and
//! the agent's phones, Kamailio as the authenticating PBX/registrar, callmask in between, all on
//! 127.0.0.1. Each test prints its figures (`[figure] …`) for the README.
//!
//! Needs `baresip` and `kamailio` (scripts/setup.sh installs Debian's `baresip-core` and
//! `kamailio`); fails without them unless CALLMASK_ALLOW_SKIP=1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use callmask_integration::phones::{
    best_alignment, channel, correlation_outside, press_keys, require, voice_signal,
    voice_signal_at, write_wav_at, Baresip, Kamailio, KamailioOpts, PhoneOpts,
};
use callmask_integration::{dtmf_digit_count, read_wav, Callmask, CallmaskOpts, TempDir};

const T: Duration = Duration::from_secs(20);

fn tools() -> bool {
    require("baresip") && require("kamailio")
}

/// The recording's WAV and sidecar (exactly one call recorded with audio).
fn recordings(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The largest WAV in `dir`: (channels, interleaved samples, path).
fn main_wav(dir: &Path) -> (u16, Vec<i16>, PathBuf) {
    let wav = recordings(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap_or_else(|| panic!("no WAV in {}: {:?}", dir.display(), recordings(dir)));
    let (ch, s) = read_wav(&wav);
    (ch, s, wav)
}

struct Call {
    cm: Callmask,
    customer: Baresip,
    agent: Baresip,
    kam: Kamailio,
    customer_voice: Vec<i16>,
    agent_voice: Vec<i16>,
    _dir: TempDir,
}

/// An agent-originated call: the agent's baresip (through callmask's agents side) calls the
/// customer's baresip behind Kamailio, which challenges the agent's INVITE with a 407.
fn agent_calls_customer(codecs: &[&str], voice_ms: u32, customer_keys: &str) -> Call {
    let dir = TempDir::new("real-phones");
    // The sources at the first codec's rate (baresip's aufile needs it), the references at
    // 8 kHz (the recording's rate): the same signal sampled twice.
    let (rate, channels) = match codecs.first().map(|c| c.to_ascii_lowercase()).as_deref() {
        Some("pcmu" | "pcma") => (8000, 1),
        Some("opus") => (48_000, 2),
        _ => (16_000, 1), // G.722, and an HD phone's default offer (G.722 first)
    };
    let mut customer_voice = voice_signal(voice_ms + 2000, 11);
    press_keys(&mut customer_voice, 8000, 2000, customer_keys);
    let mut customer_src = voice_signal_at(voice_ms + 2000, 11, rate);
    press_keys(&mut customer_src, rate, 2000, customer_keys);
    let agent_voice = voice_signal(voice_ms, 23);
    let (cust_src, agent_src) = (
        dir.path().join("customer.wav"),
        dir.path().join("agent.wav"),
    );
    write_wav_at(&cust_src, &customer_src, rate, channels);
    write_wav_at(
        &agent_src,
        &voice_signal_at(voice_ms, 23, rate),
        rate,
        channels,
    );
    let codecs: Vec<String> = codecs.iter().map(|s| (*s).to_owned()).collect();
    let life = Duration::from_millis(u64::from(voice_ms) + 20_000);
    let customer = Baresip::start(
        &PhoneOpts {
            user: "customer".into(),
            outbound: None,
            register: None,
            password: None,
            codecs: codecs.clone(),
            source: cust_src,
            transport: "udp",
        },
        None,
        life,
    );
    let kam = Kamailio::start(&KamailioOpts {
        auth_user: Some(("agent".into(), "s3cret".into())),
        default_route: Some(customer.sip),
        tls: None,
    });
    let cm = Callmask::start_with(CallmaskOpts {
        agents_peer: false,
        pbx_peer: Some(kam.sip),
        sets: vec!["masking.speech=false".into()],
        ..CallmaskOpts::default()
    });
    let agent = Baresip::start(
        &PhoneOpts {
            user: "agent".into(),
            outbound: Some(cm.layout.agents_listen),
            register: None,
            password: Some("s3cret".into()),
            codecs,
            source: agent_src,
            transport: "udp",
        },
        Some(&format!("sip:customer@{}", kam.sip)),
        life,
    );
    Call {
        cm,
        customer,
        agent,
        kam,
        customer_voice,
        agent_voice,
        _dir: dir,
    }
}

impl Call {
    fn context(&self) -> String {
        format!(
            "--- agent ---\n{}\n--- customer ---\n{}\n--- kamailio ---\n{}\n--- callmask ---\n{}",
            self.agent.log_tail(),
            self.customer.log_tail(),
            self.kam.log_tail(),
            self.cm.log_tail()
        )
    }
}

/// Issue 12 item 1: an agent's outbound call challenged with 407 by the PBX connects. The
/// baresip agent re-sends its INVITE with Proxy-Authorization (same Call-ID, CSeq + 1, new
/// branch, RFC 3261 §22.2); callmask forwards it as a new attempt, Kamailio accepts the
/// credentials, the customer answers, both talk for 6 s and the agent hangs up.
#[test]
fn agent_call_through_407_challenge_connects() {
    if !tools() {
        return;
    }
    let mut call = agent_calls_customer(&["PCMU"], 6000, "");
    let established = call.agent.wait_log("Call established", T);
    assert!(established, "the call never connected\n{}", call.context());
    let klog = call.kam.log();
    assert!(
        klog.contains("challenge INVITE") && klog.contains("authenticated INVITE"),
        "no 407 round\n{}",
        call.context()
    );
    assert!(
        call.agent.wait_log("terminated", T),
        "agent did not hang up\n{}",
        call.context()
    );
    let m = call.cm.wait_metrics("1 completed call", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0
    });
    assert_eq!(
        m.calls("failed"),
        1.0,
        "the challenged attempt\n{}",
        m.callmask_lines()
    );
    let ctx = call.context();
    call.cm.stop(Duration::from_secs(10));
    let (ch, wav, path) = main_wav(&call.cm.rec_dir);
    assert_eq!(ch, 2, "{}", path.display());
    let (left, right) = (channel(&wav, 0), channel(&wav, 1));
    let agent = [&left, &right].map(|c| best_alignment(&call.agent_voice, c).0);
    let customer = [&left, &right].map(|c| best_alignment(&call.customer_voice[..48_000], c).0);
    eprintln!(
        "[figure] 407 retry: connected; WAV {:.2} s; agent voice corr L/R {:.3}/{:.3}; \
         customer voice corr L/R {:.3}/{:.3}",
        left.len() as f64 / 8000.0,
        agent[0],
        agent[1],
        customer[0],
        customer[1]
    );
    assert!(
        agent.iter().any(|&c| c >= 0.9) && customer.iter().any(|&c| c >= 0.9),
        "recording does not carry both voices\n{ctx}"
    );
}

/// Issue 12 item 2: a call in `codec` (both phones offer only it, or prefer it) is recorded:
/// both channels correlate with what each phone sent (≥ 0.9 after decoding), the customer's
/// in-band key presses are masked (no DTMF left in the recording), the PBX side is the left
/// channel and the sidecar says the agent dialled (`outbound`).
fn codec_call_is_recorded_and_masked(codecs: &[&str], label: &str) {
    if !tools() {
        return;
    }
    let mut call = agent_calls_customer(codecs, 8000, "1234");
    assert_eq!(
        dtmf_digit_count(&call.customer_voice),
        4,
        "the test signal has 4 keys"
    );
    assert!(
        call.agent.wait_log("Call established", T),
        "the call never connected\n{}",
        call.context()
    );
    let used = call
        .agent
        .log()
        .lines()
        .find(|l| l.contains("Set audio encoder"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        call.agent.wait_log("terminated", T),
        "agent did not hang up\n{}",
        call.context()
    );
    call.cm
        .wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
    let ctx = call.context();
    call.cm.stop(Duration::from_secs(10));
    let (ch, wav, path) = main_wav(&call.cm.rec_dir);
    assert_eq!(ch, 2, "{}", path.display());
    let (left, right) = (channel(&wav, 0), channel(&wav, 1));
    // The key presses (2.0–2.85 s, muted with their padding) are left out of the comparison.
    let (_, c_at) = best_alignment(&call.customer_voice[..64_000], &left);
    let c_corr = correlation_outside(&call.customer_voice[..64_000], &left, c_at, 15_200..24_000);
    let (a_corr, a_at) = best_alignment(&call.agent_voice, &right);
    let keys_left = dtmf_digit_count(&left);
    let sidecar = path.with_extension("json");
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap_or_default()).unwrap_or_default();
    eprintln!(
        "[figure] {label} ({}): WAV {:.2} s; customer (left) corr {c_corr:.3} at {:.1} ms, \
         agent (right) corr {a_corr:.3} at {:.1} ms; keys left in the recording {keys_left} of 4; \
         sidecar direction {}",
        used.trim(),
        left.len() as f64 / 8000.0,
        c_at as f64 / 8.0,
        a_at as f64 / 8.0,
        side["direction"]
    );
    assert!(
        c_corr >= 0.9,
        "customer voice not in the left channel ({c_corr:.3})\n{ctx}"
    );
    assert!(
        a_corr >= 0.9,
        "agent voice not in the right channel ({a_corr:.3})\n{ctx}"
    );
    assert_eq!(
        keys_left, 0,
        "in-band keys leaked into the recording\n{ctx}"
    );
    assert_eq!(side["direction"], "outbound");
}

#[test]
fn g722_call_is_recorded_and_masked() {
    codec_call_is_recorded_and_masked(&["G722"], "G.722");
}

#[test]
fn opus_call_is_recorded_and_masked() {
    codec_call_is_recorded_and_masked(&["opus"], "Opus");
}

/// An HD phone's default offer (G.722 first, then Opus, then G.711) is answered in G.722 and
/// recorded the same way.
#[test]
fn hd_phone_default_offer_is_recorded() {
    codec_call_is_recorded_and_masked(&[], "default offer");
}

/// Issue 12 item 4: an agent registered over TCP (baresip through callmask's agents side to
/// Kamailio) is called by the customer; Kamailio delivers the INVITE to callmask over UDP
/// (the Contact callmask registered has no transport), and callmask reaches the phone over
/// its TCP connection. The call connects and is recorded.
#[test]
fn tcp_registered_agent_answers_a_udp_delivered_call() {
    if !tools() {
        return;
    }
    let dir = TempDir::new("real-phones-tcp");
    let voice = voice_signal(6000, 31);
    let src = dir.path().join("voice.wav");
    write_wav_at(&src, &voice, 8000, 1);
    let kam = Kamailio::start(&KamailioOpts {
        auth_user: None,
        default_route: None,
        tls: None,
    });
    let cm = Callmask::start_with(CallmaskOpts {
        agents_peer: false,
        pbx_peer: Some(kam.sip),
        sets: vec!["masking.speech=false".into()],
        ..CallmaskOpts::default()
    });
    let life = Duration::from_secs(40);
    let agent = Baresip::start(
        &PhoneOpts {
            user: "agent".into(),
            outbound: Some(cm.layout.agents_listen),
            register: Some(kam.sip),
            password: None,
            codecs: vec!["PCMU".into()],
            source: src.clone(),
            transport: "tcp",
        },
        None,
        life,
    );
    let registered = agent.wait_log("200 OK", T);
    let ctx = |c: &Baresip| {
        callmask_integration::phones::logs_of(&[
            ("this phone", c.log_tail()),
            ("agent", agent.log_tail()),
            ("kamailio", kam.log_tail()),
            ("callmask", cm.log_tail()),
        ])
    };
    assert!(
        registered,
        "the agent did not register over TCP\n{}",
        ctx(&agent)
    );
    let customer = Baresip::start(
        &PhoneOpts {
            user: "customer".into(),
            outbound: None,
            register: None,
            password: None,
            codecs: vec!["PCMU".into()],
            source: src,
            transport: "udp",
        },
        Some(&format!("sip:agent@{}", kam.sip)),
        life,
    );
    assert!(
        customer.wait_log("Call established", T),
        "the TCP-registered agent was not reached\n{}",
        ctx(&customer)
    );
    assert!(customer.wait_log("terminated", T), "{}", ctx(&customer));
    let m = cm.wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
    let tcp = m.sum(
        "callmask_sip_messages_received_total",
        &["transport=\"tcp\""],
    );
    eprintln!(
        "[figure] TCP-registered agent: call connected and completed; {tcp} SIP messages over TCP"
    );
    assert!(tcp >= 3.0, "{}", m.callmask_lines());
}
