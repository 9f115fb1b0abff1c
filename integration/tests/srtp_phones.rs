//! End to end, issue 14 (SDES-SRTP terminated per leg) with real phones: Debian's baresip with
//! its `srtp` module (RTP/SAVP, `a=crypto`) as the agent (through callmask's agents side) and
//! as the customer (behind Kamailio on the PBX side), all on 127.0.0.1. callmask decrypts each
//! leg with that phone's key, records plaintext with the customer's in-band keys muted, and
//! re-encrypts toward the other phone with a key of its own.
//!
//! Needs `baresip` and `kamailio` (scripts/setup.sh); fails without them unless
//! CALLMASK_ALLOW_SKIP=1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use callmask_integration::phones::{
    best_alignment, channel, correlation_outside, logs_of, press_keys, require, voice_signal,
    write_wav_at, Baresip, Kamailio, KamailioOpts, PhoneOpts,
};
use callmask_integration::{dtmf_digit_count, read_wav, Callmask, CallmaskOpts, TempDir};

const T: Duration = Duration::from_secs(20);

/// The largest WAV in `dir`: (channels, interleaved samples, path).
fn main_wav(dir: &Path) -> (u16, Vec<i16>, PathBuf) {
    let wav = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap_or_else(|| panic!("no WAV in {}", dir.display()));
    let (ch, s) = read_wav(&wav);
    (ch, s, wav)
}

/// An agent-originated PCMU call, `agent_menc` / `customer_menc` the phones' baresip
/// `mediaenc` (`None`: plain RTP), callmask started with `sets`.
fn srtp_call(
    agent_menc: Option<&str>,
    customer_menc: Option<&str>,
    sets: &[&str],
    keys: &str,
) -> (
    Callmask,
    Baresip,
    Baresip,
    Kamailio,
    Vec<i16>,
    Vec<i16>,
    TempDir,
) {
    let dir = TempDir::new("srtp-phones");
    let mut customer_voice = voice_signal(8000, 11);
    press_keys(&mut customer_voice, 8000, 2000, keys);
    let agent_voice = voice_signal(6000, 23);
    let (cust_src, agent_src) = (
        dir.path().join("customer.wav"),
        dir.path().join("agent.wav"),
    );
    write_wav_at(&cust_src, &customer_voice, 8000, 1);
    write_wav_at(&agent_src, &agent_voice, 8000, 1);
    let life = Duration::from_secs(26);
    let phone = |user: &str, source: PathBuf| PhoneOpts {
        user: user.into(),
        outbound: None,
        register: None,
        password: None,
        codecs: vec!["PCMU".into()],
        source,
        transport: "udp",
    };
    let customer = Baresip::start_menc(&phone("customer", cust_src), None, life, customer_menc);
    let kam = Kamailio::start(&KamailioOpts {
        auth_user: None,
        default_route: Some(customer.sip),
        tls: None,
    });
    let mut all_sets = vec!["masking.speech=false".to_owned()];
    all_sets.extend(sets.iter().map(|s| (*s).to_owned()));
    let cm = Callmask::start_with(CallmaskOpts {
        agents_peer: false,
        pbx_peer: Some(kam.sip),
        sets: all_sets,
        ..CallmaskOpts::default()
    });
    let agent_opts = PhoneOpts {
        outbound: Some(cm.layout.agents_listen),
        ..phone("agent", agent_src)
    };
    let agent = Baresip::start_menc(
        &agent_opts,
        Some(&format!("sip:customer@{}", kam.sip)),
        life,
        agent_menc,
    );
    (cm, agent, customer, kam, customer_voice, agent_voice, dir)
}

/// Both phones SRTP (`srtp-mand`: RTP/SAVP), callmask `mirror` on both legs: the call
/// connects, each phone hears the other (decrypted by its own baresip), the recording carries
/// both voices with the customer's 4 in-band keys muted, and no packet failed to decrypt.
#[test]
fn srtp_on_both_legs_with_baresip_is_recorded_and_masked() {
    if !(require("baresip") && require("kamailio")) {
        return;
    }
    // On a loaded machine the far phone sometimes never sees the INVITE Kamailio relays (the
    // same happens to real_phones.rs): one more attempt on fresh ports and processes.
    let mut attempt = srtp_call(Some("srtp-mand"), Some("srtp-mand"), &[], "4532");
    if !attempt.1.wait_log("Call established", T) {
        eprintln!(
            "first attempt did not connect, retrying\n{}",
            attempt.2.log_tail()
        );
        drop(attempt);
        attempt = srtp_call(Some("srtp-mand"), Some("srtp-mand"), &[], "4532");
    }
    let (mut cm, agent, customer, kam, customer_voice, agent_voice, _dir) = attempt;
    let ctx = |cm: &Callmask| {
        logs_of(&[
            ("agent", agent.log_tail()),
            ("customer", customer.log_tail()),
            ("kamailio", kam.log_tail()),
            ("callmask", cm.log_tail()),
        ])
    };
    assert!(
        agent.wait_log("Call established", T),
        "no call\n{}",
        ctx(&cm)
    );
    assert!(agent.wait_log("terminated", T), "no hang-up\n{}", ctx(&cm));
    let m = cm.wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
    let dec_pbx = m.sum("callmask_srtp_packets_decrypted_total", &["side=\"pbx\""]);
    let dec_agents = m.sum(
        "callmask_srtp_packets_decrypted_total",
        &["side=\"agents\""],
    );
    let dropped = m.sum("callmask_srtp_packets_dropped_total", &[]);
    let drops: Vec<String> = m
        .callmask_lines()
        .lines()
        .filter(|l| l.starts_with("callmask_srtp_packets_dropped_total") && !l.ends_with(" 0"))
        .map(str::to_owned)
        .collect();
    eprintln!("[figure] SRTP drops by reason: {drops:?}");
    let context = ctx(&cm);
    cm.stop(Duration::from_secs(10));
    let (ch, wav, path) = main_wav(&cm.rec_dir);
    assert_eq!(ch, 2, "{}", path.display());
    let (left, right) = (channel(&wav, 0), channel(&wav, 1));
    let (_, c_at) = best_alignment(&customer_voice[..48_000], &left);
    let c_corr = correlation_outside(&customer_voice[..48_000], &left, c_at, 15_200..24_000);
    let (a_corr, _) = best_alignment(&agent_voice[..40_000], &right);
    let keys_left = dtmf_digit_count(&left);
    eprintln!(
        "[figure] SRTP both legs (baresip srtp-mand, PCMU): decrypted pbx {dec_pbx} agents \
         {dec_agents}, dropped {dropped}; WAV {:.2} s; customer corr {c_corr:.3}, agent corr \
         {a_corr:.3}; keys left {keys_left} of 4",
        left.len() as f64 / 8000.0
    );
    assert!(
        dec_pbx > 100.0 && dec_agents > 100.0,
        "SRTP on both legs\n{context}"
    );
    // A real peer may repeat a packet (counted as a replay); nothing may fail authentication.
    let auth = m.sum("callmask_srtp_packets_dropped_total", &["reason=\"auth\""]);
    assert!(auth == 0.0 && dropped <= 3.0, "{drops:?}\n{context}");
    assert!(
        c_corr >= 0.9 && a_corr >= 0.9,
        "plaintext recorded\n{context}"
    );
    assert_eq!(keys_left, 0, "the customer's keys are muted\n{context}");
    assert!(!context.contains("inline:"), "no key in callmask's log");
}

/// A mixed call: the customer (PBX side) SRTP (`srtp-mand`), the agent plain RTP, allowed
/// with `pbx.srtp = "require"` (callmask offers its own key toward the PBX side although the
/// agent offered plain RTP) and the agents' side `mirror`: the call connects, SRTP is
/// terminated on the PBX leg only, both voices are recorded and the keys are muted.
#[test]
fn mixed_call_srtp_customer_plain_agent_is_recorded_when_allowed() {
    if !(require("baresip") && require("kamailio")) {
        return;
    }
    let sets = ["pbx.srtp=\"require\""];
    let mut attempt = srtp_call(None, Some("srtp-mand"), &sets, "4532");
    if !attempt.1.wait_log("Call established", T) {
        eprintln!("first attempt did not connect, retrying");
        drop(attempt);
        attempt = srtp_call(None, Some("srtp-mand"), &sets, "4532");
    }
    let (mut cm, agent, customer, kam, customer_voice, agent_voice, _dir) = attempt;
    let context = format!(
        "--- agent ---\n{}\n--- customer ---\n{}\n--- kamailio ---\n{}\n--- callmask ---\n{}",
        agent.log_tail(),
        customer.log_tail(),
        kam.log_tail(),
        cm.log_tail()
    );
    assert!(agent.wait_log("Call established", T), "no call\n{context}");
    assert!(agent.wait_log("terminated", T), "no hang-up\n{context}");
    let m = cm.wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
    let dec_pbx = m.sum("callmask_srtp_packets_decrypted_total", &["side=\"pbx\""]);
    let dec_agents = m.sum(
        "callmask_srtp_packets_decrypted_total",
        &["side=\"agents\""],
    );
    let auth = m.sum("callmask_srtp_packets_dropped_total", &["reason=\"auth\""]);
    cm.stop(Duration::from_secs(10));
    let (_, wav, _) = main_wav(&cm.rec_dir);
    let (left, right) = (channel(&wav, 0), channel(&wav, 1));
    let (_, c_at) = best_alignment(&customer_voice[..48_000], &left);
    let c_corr = correlation_outside(&customer_voice[..48_000], &left, c_at, 15_200..24_000);
    let (a_corr, _) = best_alignment(&agent_voice[..40_000], &right);
    let keys_left = dtmf_digit_count(&left);
    eprintln!(
        "[figure] mixed call (customer srtp-mand, agent plain; pbx.srtp=require): decrypted \
         pbx {dec_pbx} agents {dec_agents}, auth drops {auth}; customer corr {c_corr:.3}, \
         agent corr {a_corr:.3}; keys left {keys_left} of 4"
    );
    assert!(dec_pbx > 100.0, "SRTP on the PBX leg\n{context}");
    assert_eq!(dec_agents, 0.0, "the agent leg is plain\n{context}");
    assert_eq!(auth, 0.0, "{context}");
    assert!(c_corr >= 0.9 && a_corr >= 0.9, "{context}");
    assert_eq!(keys_left, 0, "the customer's keys are muted\n{context}");
}

/// `agents.srtp = "require"`: the agent's plain offer is answered 488 by callmask, nothing
/// reaches the customer, no call is recorded.
#[test]
fn plain_agent_is_refused_488_when_agents_require_srtp() {
    if !(require("baresip") && require("kamailio")) {
        return;
    }
    let sets = ["pbx.srtp=\"require\"", "agents.srtp=\"require\""];
    let (cm, agent, customer, _kam, _, _, _dir) = srtp_call(None, Some("srtp-mand"), &sets, "");
    assert!(
        agent.wait_log("488", T),
        "the agent saw no 488\n{}\n--- callmask ---\n{}",
        agent.log_tail(),
        cm.log_tail()
    );
    assert!(
        !customer.log().contains("Incoming call"),
        "the customer's phone rang\n{}",
        customer.log_tail()
    );
    let m = cm.metrics();
    assert_eq!(m.calls("completed"), 0.0);
    eprintln!(
        "[figure] agents.srtp=require: the plain agent's INVITE answered 488, nothing relayed"
    );
}
