//! Registrations survive a callmask restart (issue 12 item 5), with real peers on 127.0.0.1:
//! Debian's baresip as the agent's phone registers through callmask (registration mode) at
//! Kamailio; callmask is stopped and a new process started with the same `sip.state_dir` and
//! `log.hash_key`; the PBX side (sipp, through Kamailio) then calls the agent, and baresip
//! rings and answers. Then the phone un-REGISTERs (baresip on SIGTERM) through the new process,
//! and the registrar no longer has the binding: a second call gets Kamailio's 404.
//!
//! Needs `baresip`, `kamailio` and `sipp` (scripts/setup.sh); fails without them unless
//! CALLMASK_ALLOW_SKIP=1.

#![allow(clippy::disallowed_methods)] // an e2e test times its stages with the wall clock

use std::time::Duration;

use callmask_integration::phones::{require, voice_signal, write_wav_at};
use callmask_integration::phones::{Baresip, Kamailio, KamailioOpts, PhoneOpts};
use callmask_integration::{
    free_udp_port, wait_for, Callmask, CallmaskOpts, Scenario, Sipp, TempDir,
};

const T: Duration = Duration::from_secs(20);
/// A fixed test key (64 hex digits): contact tokens derive from it, so they are the same
/// before and after the restart.
const HASH_KEY: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

#[test]
fn registered_agent_receives_calls_after_restart() {
    if !(require("baresip") && require("kamailio") && require("sipp")) {
        return;
    }
    let t0 = std::time::Instant::now();
    let stage = |what: &str| eprintln!("[restart] {:>6.1} s {what}", t0.elapsed().as_secs_f64());
    let dir = TempDir::new("restart");
    let state_dir = dir.path().join("state");
    let src = dir.path().join("voice.wav");
    write_wav_at(&src, &voice_signal(30_000, 41), 8000, 1);
    let kam = Kamailio::start(&KamailioOpts {
        auth_user: None,
        default_route: None,
        tls: None,
    });
    let mut cm = Callmask::start_with(CallmaskOpts {
        agents_peer: false,
        pbx_peer: Some(kam.sip),
        sets: vec![
            "masking.speech=false".into(),
            format!("sip.state_dir=\"{}\"", state_dir.display()),
            format!("log.hash_key=\"{HASH_KEY}\""),
        ],
        ..CallmaskOpts::default()
    });
    let mut agent = Baresip::start(
        &PhoneOpts {
            user: "agent".into(),
            outbound: Some(cm.layout.agents_listen),
            register: Some(kam.sip),
            password: None,
            codecs: vec!["PCMU".into()],
            source: src,
            transport: "udp",
        },
        None,
        Duration::from_secs(90),
    );
    let ctx = |agent: &Baresip, cm: &Callmask| {
        callmask_integration::phones::logs_of(&[
            ("agent", agent.log_tail()),
            ("kamailio", kam.log_tail()),
            ("callmask", cm.log_tail()),
        ])
    };
    assert!(
        agent.wait_log("200 OK", T),
        "the agent did not register\n{}",
        ctx(&agent, &cm)
    );
    stage("registered");
    let bindings = state_dir.join("bindings");
    let saved = wait_for(T, || {
        std::fs::metadata(&bindings)
            .is_ok_and(|m| m.len() > 0)
            .then_some(())
    });
    assert!(
        saved.is_some(),
        "no state file written\n{}",
        ctx(&agent, &cm)
    );

    // A new process, same ports and state directory.
    stage("bindings saved");
    cm.restart(Duration::from_secs(10));
    stage("restarted");
    let restored = wait_for(T, || {
        cm.stderr()
            .contains("registrations restored bindings=1")
            .then_some(())
    });
    assert!(restored.is_some(), "{}", ctx(&agent, &cm));

    // The PBX side calls the agent through Kamailio, which has the binding callmask registered
    // before the restart; the new callmask finds the phone and baresip answers.
    let re = cm.layout.media_rtp_port_regex();
    let portfile = dir.path().join("uac.port");
    let call = Sipp::new(
        Scenario::file("uac_call.xml").with("MEDIA_RE", re),
        free_udp_port(),
    )
    .remote(kam.sip)
    .pause_ms(2000)
    .set("mport", free_udp_port())
    .set("portfile", portfile.display())
    .run();
    assert!(
        call.success(),
        "the call after the restart failed\n{}\n{}",
        call.report(),
        ctx(&agent, &cm)
    );
    stage("call done");
    assert!(
        agent.wait_log("Call established", T),
        "the agent never answered\n{}",
        ctx(&agent, &cm)
    );
    let m = cm.wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
    eprintln!(
        "[figure] restart: call to the agent registered before the restart connected and \
         completed ({} completed, {} failed after the restart)",
        m.calls("completed"),
        m.calls("failed")
    );

    // The phone's un-REGISTER (same token as before the restart) removes the binding at the
    // registrar: a new call to the agent finds none.
    agent.stop(Duration::from_secs(5));
    stage("agent stopped");
    let unregistered = wait_for(T, || {
        kam.log()
            .lines()
            .any(|l| l.contains("register sip:agent@") && l.contains("expires=0"))
            .then_some(())
    });
    let gone = Sipp::new(
        Scenario::file("uac_expect_status.xml").with("STATUS", "404"),
        free_udp_port(),
    )
    .remote(kam.sip)
    .run();
    stage("second call done");
    eprintln!(
        "[figure] restart: un-REGISTER seen at Kamailio: {}; next call to the agent: {}",
        unregistered.is_some(),
        if gone.success() {
            "404 (no binding)"
        } else {
            "not 404"
        }
    );
    assert!(
        gone.success(),
        "the un-REGISTER after the restart left a binding at the registrar\n{}\n{}",
        gone.report(),
        ctx(&agent, &cm)
    );
}
