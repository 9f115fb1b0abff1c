//! Issue 14, SIP over TLS, end to end with the real binary on 127.0.0.1: both sides
//! `transport = "tls"`, OpenSSL as the PBX (`openssl s_client`, with a client certificate)
//! and as the agent (`openssl s_server`, asking for callmask's client certificate). Debian's
//! sipp is built without TLS, so the test speaks SIP itself through the two OpenSSL
//! processes' stdin/stdout. Certificates are made at test time with `openssl req`/`x509`.
//!
//! - a basic call (INVITE / 100 / 180 / 200 / ACK / BYE / 200) crosses callmask over TLS on
//!   both legs, with `SIP/2.0/TLS` Vias and `transport=tls` Record-Routes, and its RTP is
//!   anchored and relayed both ways; the agent's in-dialog INFO reaches the PBX over the
//!   PBX's own connection (RFC 5923 `alias`);
//! - with `pbx.tls.client_ca_file` set, a client without a certificate, one with a
//!   certificate of another CA, and plaintext SIP sent to the TLS port are refused, and
//!   counted in `callmask_sip_tls_handshake_failures_total` by reason.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use callmask_integration::{
    have, missing, sip_header, sip_status, terminate, wait_for, Callmask, CallmaskOpts,
    RtpEndpoint, TempDir,
};

const T: Duration = Duration::from_secs(10);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and leaf certificates signed by it (EC P-256, valid two days), plus a client
/// certificate of another CA (`rogue`).
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca_name in ["ca", "rogue-ca"] {
        let (key, pem, subj) = (
            format!("{ca_name}.key"),
            format!("{ca_name}.pem"),
            format!("/CN=callmask test {ca_name}"),
        );
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        openssl(dir, &ca);
    }
    for (name, san, ca_name) in [
        ("callmask", "IP:127.0.0.1", "ca"),
        ("pbx", "IP:127.0.0.1", "ca"),
        ("agent", "DNS:agent.test,IP:127.0.0.1", "ca"),
        // A well-formed client certificate of a CA callmask does not trust.
        ("rogue", "IP:127.0.0.1", "rogue-ca"),
    ] {
        leaf(dir, name, san, ca_name);
    }
}

/// An EC P-256 leaf `name.pem` / `name.key` (CN `name`, SAN `san`) signed by `ca_name`.
fn leaf(dir: &Path, name: &str, san: &str, ca_name: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        ),
    )
    .expect("ext file");
    let (key, csr, pem, ext, subj) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
        format!("/CN={name}"),
    );
    let (ca_pem, ca_key) = (format!("{ca_name}.pem"), format!("{ca_name}.key"));
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &req);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// Bytes a reader thread collects.
type Shared = Arc<Mutex<Vec<u8>>>;

/// A child whose stdout is collected by a thread, framed into SIP messages on demand.
struct SipPipe {
    child: Child,
    stdin: ChildStdin,
    out: Shared,
    err: Shared,
    label: &'static str,
}

impl SipPipe {
    fn spawn(label: &'static str, mut cmd: Command) -> SipPipe {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start openssl");
        let stdin = child.stdin.take().expect("stdin");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers: [(Box<dyn Read + Send>, &Shared); 2] = [
            (Box::new(child.stdout.take().expect("stdout")), &out),
            (Box::new(child.stderr.take().expect("stderr")), &err),
        ];
        for (mut r, sink) in readers {
            let sink = sink.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .expect("buffer lock")
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        SipPipe {
            child,
            stdin,
            out,
            err,
            label,
        }
    }

    fn send(&mut self, msg: &str) {
        self.stdin
            .write_all(msg.as_bytes())
            .expect("write to openssl");
        self.stdin.flush().expect("flush");
    }

    /// The next complete SIP message (headers and Content-Length body), within `T`.
    fn next(&self) -> String {
        let got = wait_for(T, || {
            let mut buf = self.out.lock().expect("buffer lock");
            // Leading CRLFs (keep-alives) are skipped.
            while buf.starts_with(b"\r\n") {
                buf.drain(..2);
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            let end = text.find("\r\n\r\n")? + 4;
            let len: usize = sip_header(&text[..end], "Content-Length")
                .or_else(|| sip_header(&text[..end], "l"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() < end + len {
                return None;
            }
            let msg: Vec<u8> = buf.drain(..end + len).collect();
            Some(String::from_utf8_lossy(&msg).into_owned())
        });
        got.unwrap_or_else(|| {
            panic!(
                "{}: no SIP message within {T:?}; got so far: {:?}\nits stderr: {}",
                self.label,
                String::from_utf8_lossy(&self.out.lock().expect("buffer lock")),
                String::from_utf8_lossy(&self.err.lock().expect("buffer lock"))
            )
        })
    }

    /// Skip provisional responses until a message that is not 100/180.
    fn next_final_or_request(&self) -> String {
        loop {
            let m = self.next();
            if !matches!(sip_status(&m), Some(100..=199)) {
                return m;
            }
        }
    }
}

impl Drop for SipPipe {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(2));
    }
}

/// The response to `req` with its Vias, Record-Routes, From, To (+ tag), Call-ID, CSeq.
fn answer(req: &str, status: &str, contact: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in req.lines().take_while(|l| !l.is_empty()) {
        let l = line.to_ascii_lowercase();
        if ["via:", "record-route:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|p| l.starts_with(p))
        {
            out.push_str(line.trim_end());
            out.push_str("\r\n");
        } else if l.starts_with("to:") {
            out.push_str(line.trim_end());
            if !l.contains("tag=") {
                out.push_str(";tag=agent1");
            }
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Contact: <{contact}>\r\n"));
    if !body.is_empty() {
        out.push_str("Content-Type: application/sdp\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// The media address an SDP points at (`c=` and `m=audio`).
fn sdp_target(msg: &str) -> SocketAddr {
    let body = &msg[msg.find("\r\n\r\n").expect("body") + 4..];
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line");
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("m=audio port");
    SocketAddr::new(ip.trim().parse().expect("ip"), port)
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn start_callmask(certs: &Path) -> Callmask {
    let f = |n: &str| file(certs, n);
    Callmask::start_with(CallmaskOpts {
        sets: vec![
            "pbx.transport=\"tls\"".into(),
            format!("pbx.tls.cert_file=\"{}\"", f("callmask.pem")),
            format!("pbx.tls.key_file=\"{}\"", f("callmask.key")),
            format!("pbx.tls.client_ca_file=\"{}\"", f("ca.pem")),
            format!("pbx.tls.ca_file=\"{}\"", f("ca.pem")),
            "agents.transport=\"tls\"".into(),
            format!("agents.tls.cert_file=\"{}\"", f("callmask.pem")),
            format!("agents.tls.key_file=\"{}\"", f("callmask.key")),
            format!("agents.tls.ca_file=\"{}\"", f("ca.pem")),
            "agents.tls.server_name=\"agent.test\"".into(),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    })
}

/// SIP messages callmask received over TLS on `side`.
fn tls_received(m: &callmask_integration::Metrics, side: &str) -> f64 {
    m.sum(
        "callmask_sip_messages_received_total",
        &[&format!("side=\"{side}\""), "transport=\"tls\""],
    )
}

/// Every TLS handshake of the test succeeded.
fn assert_no_handshake_failures(m: &callmask_integration::Metrics) {
    assert_eq!(
        m.sum("callmask_sip_tls_handshake_failures_total", &[]),
        0.0,
        "{}",
        m.callmask_lines()
    );
}

fn tls_prereqs() -> Option<(TempDir, PathBuf)> {
    if !have("openssl") {
        missing("openssl (package openssl) is not installed: the SIP-over-TLS test needs s_client/s_server");
        return None;
    }
    let dir = TempDir::new("sip-tls");
    let certs = dir.path().to_path_buf();
    make_certs(&certs);
    Some((dir, certs))
}

#[test]
fn call_over_tls_on_both_legs_with_rtp_anchored() {
    let Some((_dir, certs)) = tls_prereqs() else {
        return;
    };
    let cm = start_callmask(&certs);
    let l = cm.layout;
    let f = |n: &str| file(&certs, n);

    // The agent: a TLS server on agents.peer that wants callmask's client certificate.
    let mut agent_cmd = Command::new("openssl");
    agent_cmd.args([
        "s_server",
        "-accept",
        &l.agents_peer.to_string(),
        "-cert",
        &f("agent.pem"),
        "-key",
        &f("agent.key"),
        "-CAfile",
        &f("ca.pem"),
        "-Verify",
        "2",
        "-verify_return_error",
        "-quiet",
        "-naccept",
        "1",
    ]);
    let mut agent = SipPipe::spawn("agent (s_server)", agent_cmd);
    assert!(
        wait_for(T, || callmask_integration::port_bound(l.agents_peer.port())
            .then_some(()))
        .is_some(),
        "s_server did not listen on {}",
        l.agents_peer
    );

    // The PBX: a TLS client with a certificate of the CA, verifying callmask's.
    let mut pbx_cmd = Command::new("openssl");
    pbx_cmd.args([
        "s_client",
        "-connect",
        &l.pbx_listen.to_string(),
        "-cert",
        &f("pbx.pem"),
        "-key",
        &f("pbx.key"),
        "-CAfile",
        &f("ca.pem"),
        "-verify_ip",
        "127.0.0.1",
        "-verify_return_error",
        "-quiet",
    ]);
    let mut pbx = SipPipe::spawn("pbx (s_client)", pbx_cmd);

    let mut pbx_rtp = RtpEndpoint::bind();
    let mut agent_rtp = RtpEndpoint::bind();
    let body = sdp(pbx_rtp.port());
    let invite = format!(
        "INVITE sip:agent@{agents} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {pbx_peer};branch=z9hG4bKtls1;rport;alias\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:pbx@127.0.0.1>;tag=pbx1\r\n\
         To: <sip:agent@127.0.0.1>\r\n\
         Call-ID: tls-call-1@test\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:pbx@127.0.0.1:5999;transport=tls>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        agents = l.agents_listen,
        pbx_peer = l.pbx_peer,
    );
    pbx.send(&invite);

    let inv = agent.next();
    assert!(inv.starts_with("INVITE "), "{inv}");
    let via = sip_header(&inv, "Via").expect("Via");
    assert!(
        via.starts_with(&format!("SIP/2.0/TLS {}", l.agents_listen)),
        "callmask's Via names TLS: {via}\n{inv}"
    );
    let rr: Vec<&str> = inv
        .lines()
        .filter(|x| x.to_ascii_lowercase().starts_with("record-route:"))
        .collect();
    assert!(
        rr.iter().all(|x| x.contains(";transport=tls")) && rr.len() == 2,
        "both Record-Routes say transport=tls: {rr:?}"
    );
    let to_callmask_agents_side = sdp_target(&inv);
    assert!(l.in_media_range(to_callmask_agents_side.port()), "{inv}");

    let ringing = answer(&inv, "180 Ringing", "sip:agent@127.0.0.1;transport=tls", "");
    agent.send(&ringing);
    let ok_body = sdp(agent_rtp.port());
    agent.send(&answer(
        &inv,
        "200 OK",
        "sip:agent@127.0.0.1;transport=tls",
        &ok_body,
    ));

    let ok = pbx.next_final_or_request();
    assert_eq!(sip_status(&ok), Some(200), "{ok}");
    let to_callmask_pbx_side = sdp_target(&ok);
    assert!(l.in_media_range(to_callmask_pbx_side.port()), "{ok}");
    let to_tag = sip_header(&ok, "To").expect("To").to_string();
    let ack = format!(
        "ACK sip:agent@127.0.0.1;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKtls2;rport\r\n\
         Route: <sip:{pbx_side};transport=tls;lr>,<sip:{agents_side};transport=tls;lr>\r\n\
         Max-Forwards: 70\r\nFrom: <sip:pbx@127.0.0.1>;tag=pbx1\r\nTo: {to_tag}\r\n\
         Call-ID: tls-call-1@test\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        pbx_side = l.pbx_listen,
        agents_side = l.agents_listen,
    );
    pbx.send(&ack);
    let got_ack = agent.next();
    assert!(got_ack.starts_with("ACK "), "{got_ack}");

    // RTP both ways through callmask's anchored ports.
    for i in 0..10 {
        pbx_rtp.send_pcmu(to_callmask_pbx_side, &RtpEndpoint::payload(1, i));
        agent_rtp.send_pcmu(to_callmask_agents_side, &RtpEndpoint::payload(2, i));
        thread::sleep(Duration::from_millis(20));
    }
    let at_agent = agent_rtp.wait_received(10, T);
    let at_pbx = pbx_rtp.wait_received(10, T);
    assert!(
        at_agent.len() >= 8 && at_pbx.len() >= 8,
        "RTP relayed: {} at the agent, {} at the PBX\n{}",
        at_agent.len(),
        at_pbx.len(),
        cm.log_tail()
    );
    assert!(at_agent.iter().all(|p| p.from == to_callmask_agents_side));
    assert_eq!(at_agent[0].payload, RtpEndpoint::payload(1, 0));

    // RFC 5923: the PBX's Via asked (`alias`) for its connection to serve requests to its
    // sent-by, pbx.peer, and its certificate names 127.0.0.1: the agent's in-dialog INFO
    // reaches the PBX over that connection (nothing listens on pbx.peer itself: without the
    // alias callmask would answer 503).
    let info = format!(
        "INFO sip:pbx@127.0.0.1:5999;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS {agent_peer};branch=z9hG4bKagentinfo\r\n\
         Route: <sip:{agents_side};transport=tls;lr>,<sip:{pbx_side};transport=tls;lr>\r\n\
         Max-Forwards: 70\r\nFrom: {to_tag}\r\nTo: <sip:pbx@127.0.0.1>;tag=pbx1\r\n\
         Call-ID: tls-call-1@test\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n",
        agent_peer = l.agents_peer,
        pbx_side = l.pbx_listen,
        agents_side = l.agents_listen,
    );
    agent.send(&info);
    let got_info = pbx.next();
    assert!(got_info.starts_with("INFO "), "{got_info}");
    pbx.send(&answer(&got_info, "200 OK", "sip:pbx@127.0.0.1:5999", ""));
    let info_ok = agent.next();
    assert_eq!(sip_status(&info_ok), Some(200), "{info_ok}");
    assert!(info_ok.contains("CSeq: 1 INFO"), "{info_ok}");

    let bye = ack
        .replace("ACK sip:", "BYE sip:")
        .replace("z9hG4bKtls2", "z9hG4bKtls3")
        .replace("CSeq: 1 ACK", "CSeq: 2 BYE");
    pbx.send(&bye);
    let got_bye = agent.next();
    assert!(got_bye.starts_with("BYE "), "{got_bye}");
    agent.send(&answer(&got_bye, "200 OK", "sip:agent@127.0.0.1", ""));
    let bye_ok = pbx.next_final_or_request();
    assert_eq!(sip_status(&bye_ok), Some(200), "{bye_ok}");
    assert!(bye_ok.contains("CSeq: 2 BYE"), "{bye_ok}");

    let m = cm.wait_metrics("the TLS call completed", T, |m| m.calls("completed") == 1.0);
    assert!(tls_received(&m, "pbx") >= 3.0, "{}", m.callmask_lines());
    assert!(tls_received(&m, "agents") >= 3.0, "{}", m.callmask_lines());
    assert_no_handshake_failures(&m);
}

#[test]
fn clients_without_a_good_certificate_are_refused_and_counted() {
    let Some((_dir, certs)) = tls_prereqs() else {
        return;
    };
    let cm = start_callmask(&certs);
    let l = cm.layout;
    let f = |n: &str| file(&certs, n);
    let options = format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKopt\r\n\
         Max-Forwards: 70\r\nFrom: <sip:pbx@127.0.0.1>;tag=o\r\nTo: <sip:x@127.0.0.1>\r\n\
         Call-ID: opt@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        l.pbx_listen
    );

    let try_client = |extra: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &l.pbx_listen.to_string(),
            "-CAfile",
            &f("ca.pem"),
            "-quiet",
        ])
        .args(extra);
        let mut c = SipPipe::spawn("client", cmd);
        c.send(&options);
        // Whatever the client saw, callmask must not have answered the OPTIONS.
        thread::sleep(Duration::from_millis(700));
        let out = String::from_utf8_lossy(&c.out.lock().expect("buffer lock")).into_owned();
        assert!(
            !out.contains("SIP/2.0 "),
            "answered over a refused handshake: {out}"
        );
    };
    let reason = |m: &callmask_integration::Metrics, r: &str| {
        m.value(&format!(
            "callmask_sip_tls_handshake_failures_total{{reason=\"{r}\",side=\"pbx\"}}"
        ))
    };

    // 1. No client certificate.
    try_client(&[]);
    let m = cm.wait_metrics("no_certificate counted", T, |m| {
        reason(m, "no_certificate") >= 1.0
    });
    assert_eq!(reason(&m, "no_certificate"), 1.0, "{}", m.callmask_lines());

    // 2. A certificate no configured CA signed.
    try_client(&["-cert", &f("rogue.pem"), "-key", &f("rogue.key")]);
    let m = cm.wait_metrics("a rogue certificate counted", T, |m| {
        m.sum("callmask_sip_tls_handshake_failures_total", &[]) >= 2.0
    });
    assert_eq!(reason(&m, "unknown_ca"), 1.0, "{}", m.callmask_lines());

    // 3. Plaintext SIP to the TLS port.
    let mut plain = TcpStream::connect(l.pbx_listen).expect("connect");
    plain.write_all(options.as_bytes()).expect("write");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).contains("SIP/2.0 "),
        "plaintext answered"
    );
    let m = cm.wait_metrics("plaintext counted", T, |m| reason(m, "protocol") >= 1.0);
    assert_eq!(reason(&m, "protocol"), 1.0, "{}", m.callmask_lines());

    // A good client is still served (the refusals closed only their own connections).
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &l.pbx_listen.to_string(),
        "-cert",
        &f("pbx.pem"),
        "-key",
        &f("pbx.key"),
        "-CAfile",
        &f("ca.pem"),
        "-quiet",
    ]);
    let mut good = SipPipe::spawn("good client", cmd);
    good.send(&options);
    // OPTIONS is forwarded toward the agents' peer (nothing listens there: 503 / 408 back)
    // or answered by callmask; either way an answer comes back over TLS.
    let resp = good.next();
    assert!(sip_status(&resp).is_some(), "{resp}");
    let m = cm.metrics();
    assert!(tls_received(&m, "pbx") >= 1.0, "{}", m.callmask_lines());
}

fn recv_udp(sock: &std::net::UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    sock.set_read_timeout(Some(T)).expect("timeout");
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("a SIP datagram within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Registration mode with the agents' side on TLS and the PBX on UDP: a phone (s_client)
/// registers over TLS; the PBX's INVITE for its Contact reaches the phone over the phone's
/// own TLS connection (no new connection: phones rarely accept any), with callmask's TLS
/// Via; the phone's 486 is ACKed by callmask over TLS and reaches the PBX over UDP.
#[test]
fn registration_mode_reaches_a_tls_phone_over_its_own_connection() {
    let Some((_dir, certs)) = tls_prereqs() else {
        return;
    };
    let f = |n: &str| file(&certs, n);
    let cm = Callmask::start_with(CallmaskOpts {
        agents_peer: false,
        sets: vec![
            "agents.transport=\"tls\"".into(),
            format!("agents.tls.cert_file=\"{}\"", f("callmask.pem")),
            format!("agents.tls.key_file=\"{}\"", f("callmask.key")),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let pbx = std::net::UdpSocket::bind(l.pbx_peer).expect("bind the PBX address");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &l.agents_listen.to_string(),
        "-CAfile",
        &f("ca.pem"),
        "-verify_ip",
        "127.0.0.1",
        "-verify_return_error",
        "-quiet",
    ]);
    let mut phone = SipPipe::spawn("phone (s_client)", cmd);
    let register = "REGISTER sip:pbx.test SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-treg-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@pbx.test>;tag=ph1\r\n\
         To: <sip:1001@pbx.test>\r\n\
         Call-ID: treg-1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:1001@127.0.0.1:5999;transport=tls>;expires=120\r\n\
         Content-Length: 0\r\n\r\n";
    phone.send(register);

    let at_pbx = recv_udp(&pbx);
    assert!(at_pbx.starts_with("REGISTER "), "{at_pbx}");
    let via = sip_header(&at_pbx, "Via").expect("Via");
    assert!(via.starts_with("SIP/2.0/UDP "), "toward the UDP PBX: {via}");
    let contact = sip_header(&at_pbx, "Contact").expect("Contact").to_string();
    let uri = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("uri")
        .to_string();
    assert!(uri.starts_with("sip:rg-"), "callmask's own Contact: {uri}");
    let ok = answer(&at_pbx, "200 OK", &uri, "").replace(
        &format!("Contact: <{uri}>"),
        &format!("Contact: <{uri}>;expires=120"),
    );
    pbx.send_to(ok.as_bytes(), l.pbx_listen).expect("send");
    let at_phone = phone.next();
    assert_eq!(sip_status(&at_phone), Some(200), "{at_phone}");
    cm.wait_metrics("one registration", T, |m| {
        m.value("callmask_registrations_active") == 1.0
    });

    let pbx_addr = pbx.local_addr().expect("addr");
    let invite = format!(
        "INVITE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {pbx_addr};branch=z9hG4bK-tinv-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@pbx.test>;tag=pbx1\r\n\
         To: <sip:1001@pbx.test>\r\n\
         Call-ID: tcall-1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{pbx_addr}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    pbx.send_to(invite.as_bytes(), l.pbx_listen).expect("send");
    assert_eq!(sip_status(&recv_udp(&pbx)), Some(100));
    let inv = phone.next();
    assert!(
        inv.starts_with("INVITE sip:1001@127.0.0.1:5999;transport=tls SIP/2.0"),
        "{inv}"
    );
    let via = sip_header(&inv, "Via").expect("Via");
    assert!(
        via.starts_with(&format!("SIP/2.0/TLS {}", l.agents_listen)),
        "{via}"
    );
    phone.send(&answer(
        &inv,
        "486 Busy Here",
        "sip:1001@127.0.0.1:5999",
        "",
    ));
    let ack = phone.next();
    assert!(
        ack.starts_with("ACK sip:1001@127.0.0.1:5999;transport=tls "),
        "{ack}"
    );
    let busy = recv_udp(&pbx);
    assert_eq!(sip_status(&busy), Some(486), "{busy}");
    let m = cm.metrics();
    assert!(tls_received(&m, "agents") >= 2.0, "{}", m.callmask_lines());
    assert_no_handshake_failures(&m);
}

/// Outbound verification: with `agents.tls.server_name` naming something the agent's
/// certificate does not, callmask refuses the agent's certificate, counts `name_mismatch` on
/// the agents' side, and answers the PBX's INVITE 503 at once (RFC 3261 §16.9).
#[test]
fn a_peer_certificate_for_another_name_is_refused_with_503() {
    let Some((_dir, certs)) = tls_prereqs() else {
        return;
    };
    let f = |n: &str| file(&certs, n);
    let cm = Callmask::start_with(CallmaskOpts {
        sets: vec![
            "agents.transport=\"tls\"".into(),
            format!("agents.tls.cert_file=\"{}\"", f("callmask.pem")),
            format!("agents.tls.key_file=\"{}\"", f("callmask.key")),
            format!("agents.tls.ca_file=\"{}\"", f("ca.pem")),
            "agents.tls.server_name=\"someone-else.test\"".into(),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let mut agent_cmd = Command::new("openssl");
    agent_cmd.args([
        "s_server",
        "-accept",
        &l.agents_peer.to_string(),
        "-cert",
        &f("agent.pem"),
        "-key",
        &f("agent.key"),
        "-quiet",
        "-naccept",
        "1",
    ]);
    let agent = SipPipe::spawn("agent (s_server)", agent_cmd);
    assert!(
        wait_for(T, || callmask_integration::port_bound(l.agents_peer.port())
            .then_some(()))
        .is_some(),
        "s_server did not listen on {}",
        l.agents_peer
    );
    let pbx = std::net::UdpSocket::bind(l.pbx_peer).expect("bind the PBX address");
    let invite = format!(
        "INVITE sip:agent@{agents} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKmis1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:pbx@127.0.0.1>;tag=pbx1\r\n\
         To: <sip:agent@127.0.0.1>\r\n\
         Call-ID: tls-mismatch@test\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:pbx@{me}>\r\n\
         Content-Length: 0\r\n\r\n",
        agents = l.agents_listen,
        me = l.pbx_peer,
    );
    pbx.send_to(invite.as_bytes(), l.pbx_listen).expect("send");
    assert_eq!(sip_status(&recv_udp(&pbx)), Some(100));
    let refused = recv_udp(&pbx);
    assert_eq!(sip_status(&refused), Some(503), "{refused}");
    let m = cm.wait_metrics("name_mismatch counted", T, |m| {
        m.sum("callmask_sip_tls_handshake_failures_total", &[]) >= 1.0
    });
    assert_eq!(
        m.value(
            "callmask_sip_tls_handshake_failures_total{reason=\"name_mismatch\",side=\"agents\"}"
        ),
        1.0,
        "{}",
        m.callmask_lines()
    );
    let got = String::from_utf8_lossy(&agent.out.lock().expect("buffer lock")).into_owned();
    assert!(got.is_empty(), "nothing reached the agent: {got}");
}

/// The largest WAV in `dir`: (channels, interleaved samples).
fn main_wav(dir: &Path) -> (u16, Vec<i16>) {
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
    callmask_integration::read_wav(&wav)
}

/// A finished call between two baresip phones, each with SIP over TLS (certificates of the
/// test CA) and SDES-SRTP (`srtp-mand`), through callmask with `transport = "tls"` on both
/// sides (verifying both phones' certificates), its wire captured with tshark.
struct TlsSrtpCall {
    /// callmask, stopped (its recording written).
    cm: Callmask,
    /// Its metrics after the call.
    m: callmask_integration::Metrics,
    /// The capture (pcapng).
    wire: PathBuf,
    /// The phones' and callmask's logs.
    context: String,
}

/// Plays `cust_src` (customer, dialling) against `agent_src` (agent, answering) over TLS +
/// SRTP on both legs; `during` runs once the call is established (e.g. key presses at the
/// customer's menu). `None` when a prerequisite is missing (already reported).
fn tls_srtp_phone_call(
    dir: &Path,
    certs: &Path,
    cust_src: PathBuf,
    agent_src: PathBuf,
    during: impl FnOnce(&callmask_integration::phones::Baresip),
) -> Option<TlsSrtpCall> {
    let phones = TlsSrtpPhones::start(dir, certs, cust_src, agent_src, AgentLeg::TlsSrtp, &[])?;
    Some(phones.finish(during))
}

/// How the agent's phone is connected in [`TlsSrtpPhones`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum AgentLeg {
    /// SIP over TLS and `srtp-mand`, like the customer.
    TlsSrtp,
    /// SIP over UDP and plain RTP (callmask's agents' side `udp+tcp`).
    Plain,
}

/// The customer (TLS + SRTP) dialling through callmask to the agent, not yet finished.
struct TlsSrtpPhones {
    cm: Callmask,
    customer: callmask_integration::phones::Baresip,
    agent: callmask_integration::phones::Baresip,
    capture: Capture,
}

impl TlsSrtpPhones {
    /// Starts the agent, callmask (with `sets` added) and the customer, who dials at once.
    /// `None` when a prerequisite is missing (already reported).
    fn start(
        dir: &Path,
        certs: &Path,
        cust_src: PathBuf,
        agent_src: PathBuf,
        agent_leg: AgentLeg,
        sets: &[&str],
    ) -> Option<TlsSrtpPhones> {
        use callmask_integration::phones::{require, Baresip, PhoneTls};
        if !require("baresip") {
            return None;
        }
        let f = |n: &str| file(certs, n);
        let bundle = |name: &str| {
            let path = certs.join(format!("{name}-all.pem"));
            let mut pem = std::fs::read(certs.join(format!("{name}.pem"))).expect("cert");
            pem.extend(std::fs::read(certs.join(format!("{name}.key"))).expect("key"));
            std::fs::write(&path, pem).expect("bundle");
            PhoneTls {
                cert_and_key: path,
                ca: certs.join("ca.pem"),
            }
        };
        // The phones quit after `life`: build (or find) callmask first, so the agent's clock
        // does not run down while cargo works.
        let _ = callmask_integration::callmask_bin();
        let life = Duration::from_secs(40);
        let phone = |user: &str, source: PathBuf| pcmu_phone(user, source, "tcp");
        let agent = match agent_leg {
            AgentLeg::TlsSrtp => Baresip::start_tls(
                &phone("agent", agent_src),
                None,
                life,
                Some("srtp-mand"),
                &bundle("agent"),
            ),
            AgentLeg::Plain => Baresip::start(&pcmu_phone("agent", agent_src, "udp"), None, life),
        };
        let mut all_sets = vec![
            "pbx.transport=\"tls\"".to_owned(),
            format!("pbx.tls.cert_file=\"{}\"", f("callmask.pem")),
            format!("pbx.tls.key_file=\"{}\"", f("callmask.key")),
            format!("pbx.tls.ca_file=\"{}\"", f("ca.pem")),
            format!("agents.peer=\"{}\"", agent.sip),
            "masking.speech=false".into(),
        ];
        if agent_leg == AgentLeg::TlsSrtp {
            all_sets.extend([
                "agents.transport=\"tls\"".to_owned(),
                format!("agents.tls.cert_file=\"{}\"", f("callmask.pem")),
                format!("agents.tls.key_file=\"{}\"", f("callmask.key")),
                format!("agents.tls.ca_file=\"{}\"", f("ca.pem")),
            ]);
        }
        all_sets.extend(sets.iter().map(|s| (*s).to_owned()));
        let cm = Callmask::start_with(CallmaskOpts {
            agents_peer: false,
            sets: all_sets,
            ..CallmaskOpts::default()
        });
        // The wire, from before the customer dials: callmask's two TLS ports, the agent's, and
        // the media range.
        let l = cm.layout;
        let filter = format!(
            "tcp port {} or tcp port {} or tcp port {} or udp portrange {}-{}",
            l.pbx_listen.port(),
            l.agents_listen.port(),
            agent.sip.port(),
            l.media.0,
            l.media.1
        );
        let capture = Capture::start(dir, &filter)?;
        let customer = Baresip::start_tls(
            &phone("customer", cust_src),
            Some(&format!("sip:agent@{};transport=tls", cm.layout.pbx_listen)),
            life,
            Some("srtp-mand"),
            &bundle("pbx"),
        );
        Some(TlsSrtpPhones {
            cm,
            customer,
            agent,
            capture,
        })
    }

    /// The phones' and callmask's logs.
    fn context(&self) -> String {
        format!(
            "--- customer ---\n{}\n--- agent ---\n{}\n--- callmask ---\n{}",
            self.customer.log_tail(),
            self.agent.log_tail(),
            self.cm.log_tail()
        )
    }

    /// Waits for the call to be established, runs `during`, waits for the hang-up and stops
    /// callmask.
    fn finish(self, during: impl FnOnce(&callmask_integration::phones::Baresip)) -> TlsSrtpCall {
        assert!(
            self.customer
                .wait_log("Call established", Duration::from_secs(20)),
            "no call\n{}",
            self.context()
        );
        during(&self.customer);
        assert!(
            self.agent.wait_log("terminated", Duration::from_secs(20)),
            "no hang-up\n{}",
            self.context()
        );
        let m = self
            .cm
            .wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
        let context = self.context();
        let TlsSrtpPhones {
            mut cm, capture, ..
        } = self;
        let wire = capture.stop();
        cm.stop(Duration::from_secs(10));
        TlsSrtpCall {
            cm,
            m,
            wire,
            context,
        }
    }
}

/// The phone call's recording in `rec_dir` against the phones' voices (`phone_voices`):
/// the customer's correlation outside its in-band keys, the agent's, the keys still
/// decodable in the customer's channel.
fn voices_recorded(
    rec_dir: &Path,
    customer_voice: &[i16],
    agent_voice: &[i16],
) -> (f64, f64, usize) {
    use callmask_integration::phones::{best_alignment, channel, correlation_outside};
    let (ch, wav) = main_wav(rec_dir);
    assert_eq!(ch, 2, "a stereo recording");
    let (left, right) = (channel(&wav, 0), channel(&wav, 1));
    let (_, c_at) = best_alignment(&customer_voice[..40_000], &left);
    let c_corr = correlation_outside(&customer_voice[..40_000], &left, c_at, 15_200..24_000);
    let (a_corr, _) = best_alignment(&agent_voice[..40_000], &right);
    let keys_left = callmask_integration::dtmf_digit_count(&left);
    (c_corr, a_corr, keys_left)
}

/// The issue's proof with real phones: Debian's baresip as the customer (PBX side) and as
/// the agent, each with SIP over TLS and SDES-SRTP (see [`tls_srtp_phone_call`]). The call
/// connects, the recording carries both voices with the customer's in-band keys muted, the
/// keys it presses at its menu (RFC 4733 events inside its SRTP) are seen and muted, every
/// SIP message callmask got came over TLS, and the wire is ciphertext.
#[test]
fn baresip_call_with_tls_and_srtp_on_both_legs() {
    let Some((dir, certs)) = tls_prereqs() else {
        return;
    };
    // The customer (the caller) hangs up first: its voice is the shorter one.
    let (customer_voice, agent_voice, cust_src, agent_src) = phone_voices(dir.path());
    let Some(call) = tls_srtp_phone_call(dir.path(), &certs, cust_src, agent_src, |customer| {
        // Past the in-band keys (at 2 s of the customer's voice) and the first 5 s the voice
        // is compared over: the customer presses 7 and 9 at its menu, sent as RFC 4733
        // events inside its SRTP (the recording's alignment was checked on both sides of
        // them: the same offset).
        thread::sleep(Duration::from_secs(6));
        customer.command("/sndcode 79");
    }) else {
        return;
    };
    let TlsSrtpCall {
        cm,
        m,
        wire,
        context,
    } = call;
    let tls = m.sum(
        "callmask_sip_messages_received_total",
        &["transport=\"tls\""],
    );
    let plain = m.sum("callmask_sip_messages_received_total", &[]) - tls;
    let dec = |side: &str| {
        m.sum(
            "callmask_srtp_packets_decrypted_total",
            &[&format!("side=\"{side}\"")],
        )
    };
    let (dec_pbx, dec_agents) = (dec("pbx"), dec("agents"));
    let auth = m.sum("callmask_srtp_packets_dropped_total", &["reason=\"auth\""]);
    let failures = m.sum("callmask_sip_tls_handshake_failures_total", &[]);
    let events = m.sum("callmask_dtmf_detected_total", &["source=\"rfc4733\""]);
    let events_muted = m.sum("callmask_masked_seconds_total", &["reason=\"rfc4733\""]);
    let (c_corr, a_corr, keys_left) = voices_recorded(&cm.rec_dir, &customer_voice, &agent_voice);
    eprintln!(
        "[figure] baresip TLS + SRTP both legs: SIP over TLS {tls} messages, plain {plain}; \
         SRTP decrypted pbx {dec_pbx} agents {dec_agents}, auth failures {auth}; TLS handshake \
         failures {failures}; customer corr {c_corr:.3}, agent corr {a_corr:.3}; keys left \
         {keys_left} of 4; RFC 4733 keys detected {events}, muted {events_muted:.2} s"
    );
    // INVITE, ACK and BYE from the customer; the agent's 200s to INVITE and BYE.
    assert!(tls >= 5.0 && plain == 0.0, "SIP over TLS only\n{context}");
    assert_eq!(failures, 0.0, "{context}");
    assert!(
        dec_pbx > 100.0 && dec_agents > 100.0 && auth == 0.0,
        "SRTP on both legs\n{context}"
    );
    assert!(
        c_corr >= 0.9 && a_corr >= 0.9,
        "plaintext recorded\n{context}"
    );
    assert_eq!(keys_left, 0, "the customer's keys are muted\n{context}");
    assert!(
        events >= 1.0 && events_muted > 0.0,
        "the RFC 4733 keys inside the SRTP were seen and muted\n{context}"
    );
    check_wire(&wire, &customer_voice);
}

/// The same TLS + SRTP phone call with a labelled corpus call as the customer's voice (the
/// cut of dev call 007 that `ng_kamailio` plays: in-band DTMF and negative controls), its
/// recording scored with `../shared/eval/score.py` like the other end-to-end runs: 0 in-band
/// keys leaked or still decodable (spandsp, multimon-ng), 0 negative controls muted.
#[test]
fn baresip_tls_srtp_call_of_a_corpus_cut_scores_clean() {
    use callmask_integration::ng::{cut_call, ng_prerequisites, score_caller_channel};
    use callmask_integration::phones::{voice_signal, write_wav_at};
    let Some(eval) = callmask_integration::eval_dir("data/dev/call_007.json") else {
        return missing("../shared/eval/data/dev/call_007 not found (set CALLMASK_SHARED)");
    };
    if let Some(why) = ng_prerequisites(&eval) {
        return missing(&why);
    }
    let Some((dir, certs)) = tls_prereqs() else {
        return;
    };
    let base = dir.path().join("cut");
    let counts = cut_call(
        &eval,
        "call_007",
        (26_000, 35_860),
        &base,
        &dir.path().join("cut.pcap"),
    );
    let agent_src = dir.path().join("agent.wav");
    write_wav_at(&agent_src, &voice_signal(14_000, 23), 8000, 1);
    let Some(call) = tls_srtp_phone_call(
        dir.path(),
        &certs,
        base.with_extension("wav"),
        agent_src,
        |_| {},
    ) else {
        return;
    };
    let dec = call
        .m
        .sum("callmask_srtp_packets_decrypted_total", &["side=\"pbx\""]);
    assert!(dec > 300.0, "SRTP from the customer\n{}", call.context);
    let rec = std::fs::read_dir(&call.cm.rec_dir)
        .expect("recordings")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "wav"))
        .expect("a recording");
    let v = score_caller_channel(&eval, &rec, &base, dir.path());
    eprintln!(
        "[figure] baresip TLS + SRTP, dev call 007 cut (in-band, RFC 4733, negatives {counts:?}): \
         {dec} SRTP packets decrypted from the customer; score.py: {} in-band spans, {} leaked, \
         {}/{} still decodable (spandsp/multimon), {} negatives muted",
        v[0], v[1], v[2], v[3], v[6]
    );
    assert!(v[0] > 0, "the cut holds in-band DTMF: {v:?}");
    assert_eq!(
        (v[1], v[2], v[3], v[6]),
        (0, 0, 0, 0),
        "in-band leaked, still decodable (spandsp, multimon), negatives muted\n{}",
        call.context
    );
}

/// A mixed call (issue 14's proof): the customer on TLS + SRTP, the agent a plain phone (SIP
/// over UDP, RTP/AVP). Allowed with `agents.srtp = "optional"`: the call connects, SRTP is
/// terminated on the PBX leg only, both voices are recorded and the customer's keys muted.
/// Refused with `agents.srtp = "require"`: callmask offers the agent RTP/SAVP with its own
/// key, the plain phone cannot take it (488), and the customer gets the 488: no call.
#[test]
fn mixed_call_tls_srtp_customer_plain_agent_allowed_and_refused_with_require() {
    let Some((dir, certs)) = tls_prereqs() else {
        return;
    };
    let (customer_voice, agent_voice, cust_src, agent_src) = phone_voices(dir.path());
    let Some(phones) = TlsSrtpPhones::start(
        dir.path(),
        &certs,
        cust_src.clone(),
        agent_src.clone(),
        AgentLeg::Plain,
        &["agents.srtp=\"optional\""],
    ) else {
        return;
    };
    let TlsSrtpCall { cm, m, context, .. } = phones.finish(|_| {});
    let dec = |side: &str| {
        m.sum(
            "callmask_srtp_packets_decrypted_total",
            &[&format!("side=\"{side}\"")],
        )
    };
    let (dec_pbx, dec_agents) = (dec("pbx"), dec("agents"));
    let (c_corr, a_corr, keys_left) = voices_recorded(&cm.rec_dir, &customer_voice, &agent_voice);
    eprintln!(
        "[figure] mixed call (customer TLS + srtp-mand, agent UDP + plain RTP; \
         agents.srtp=optional): decrypted pbx {dec_pbx} agents {dec_agents}; customer corr \
         {c_corr:.3}, agent corr {a_corr:.3}; keys left {keys_left} of 4"
    );
    assert!(dec_pbx > 100.0, "SRTP on the PBX leg\n{context}");
    assert_eq!(dec_agents, 0.0, "the agent leg is plain\n{context}");
    assert!(c_corr >= 0.9 && a_corr >= 0.9, "{context}");
    assert_eq!(keys_left, 0, "the customer's keys are muted\n{context}");

    // The same call with agents.srtp = "require": refused.
    let Some(phones) = TlsSrtpPhones::start(
        dir.path(),
        &certs,
        cust_src,
        agent_src,
        AgentLeg::Plain,
        &["agents.srtp=\"require\""],
    ) else {
        return;
    };
    assert!(
        phones.customer.wait_log("488", Duration::from_secs(20)),
        "the customer saw no 488\n{}",
        phones.context()
    );
    let m = phones.cm.metrics();
    assert_eq!(m.calls("completed"), 0.0, "{}", phones.context());
    assert!(
        !phones.customer.log().contains("Call established"),
        "{}",
        phones.context()
    );
    eprintln!(
        "[figure] agents.srtp=require with a plain agent: the customer's TLS + SRTP call \
         answered 488, never established"
    );
}

/// tshark capturing loopback into a pcapng file until stopped.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing what `filter` (BPF) passes; `None` (after [`missing`]) without
    /// tshark.
    fn start(dir: &Path, filter: &str) -> Option<Capture> {
        if !have("tshark") {
            missing("tshark (package tshark) is not installed: the wire check needs it");
            return None;
        }
        let file = dir.join("wire.pcapng");
        let log = std::fs::File::create(dir.join("tshark.log")).expect("tshark log");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-q", "-f", filter, "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start tshark");
        let c = Capture { child, file };
        // Capturing once the file has its header (and a moment for the filter to apply).
        let up = callmask_integration::wait_for(Duration::from_secs(10), || {
            (std::fs::metadata(&c.file).is_ok_and(|m| m.len() > 0)).then_some(())
        });
        assert!(up.is_some(), "tshark did not start capturing");
        thread::sleep(Duration::from_millis(300));
        Some(c)
    }

    /// Stops it (SIGTERM: the file is completed) and returns the file.
    fn stop(mut self) -> PathBuf {
        callmask_integration::terminate(&mut self.child, Duration::from_secs(5));
        self.file.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        callmask_integration::terminate(&mut self.child, Duration::from_secs(2));
    }
}

/// The TLS + SRTP call's wire, as tshark captured it: no SIP in plaintext (TLS records only),
/// and every RTP packet's payload (SRTP: encrypted), decoded as G.711 µ-law per destination
/// port, holds none of the customer's in-band keys — while the customer's voice itself does.
fn check_wire(pcap: &Path, customer_voice: &[i16]) {
    let raw = std::fs::read(pcap).expect("the capture");
    let find = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!find(b"SIP/2.0"), "plaintext SIP on the wire");
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(pcap)
        .args([
            "-o",
            "rtp.heuristic_rtp:TRUE",
            "-Y",
            "rtp",
            "-T",
            "fields",
            "-e",
            "udp.dstport",
            "-e",
            "rtp.payload",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run tshark -r");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut streams: std::collections::BTreeMap<u16, Vec<i16>> = Default::default();
    let mut packets = 0;
    for line in text.lines() {
        let mut f = line.split('\t');
        let (Some(port), Some(hex)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let hex: String = hex.chars().filter(char::is_ascii_hexdigit).collect();
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        packets += 1;
        streams
            .entry(port)
            .or_default()
            .extend(bytes.iter().map(|&b| dsp::g711::ulaw_to_linear(b)));
    }
    let tls_records = raw.windows(3).filter(|w| w == &[0x17, 0x03, 0x03]).count();
    let digits: Vec<(u16, usize)> = streams
        .iter()
        .map(|(p, pcm)| (*p, callmask_integration::dtmf_digit_count(pcm)))
        .collect();
    eprintln!(
        "[figure] wire (tshark): {packets} RTP packets in {} streams, DTMF digits decodable as G.711 per stream {digits:?} (the customer's voice holds {}), {tls_records} TLS application-data record headers, no plaintext SIP",
        streams.len(),
        callmask_integration::dtmf_digit_count(customer_voice)
    );
    assert!(packets >= 400, "only {packets} RTP packets captured");
    assert!(tls_records >= 5, "no TLS records captured");
    assert!(
        digits.iter().all(|(_, d)| *d == 0),
        "a key decodable on the wire: {digits:?}"
    );
    assert!(callmask_integration::dtmf_digit_count(customer_voice) >= 4);
}

/// The subject of the certificate the TLS server at `addr` presents, as `openssl s_client`
/// prints it (the client shows the PBX's certificate, as callmask asks for one).
fn served_subject(certs: &Path, addr: SocketAddr) -> String {
    let f = |n: &str| file(certs, n);
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-cert",
            &f("pbx.pem"),
            "-key",
            &f("pbx.key"),
            "-CAfile",
            &f("ca.pem"),
            "-verify_return_error",
            "-brief",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Peer certificate: "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no peer certificate in s_client's output:\n{text}"))
}

/// Certificate rotation end to end: callmask serves its certificate; the files are replaced
/// by a new certificate (same paths) and SIGHUP: the next handshake gets the new one, the
/// reload counts as a success. A broken replacement (a key of another certificate) is refused
/// at the next SIGHUP and the certificate in force stays.
#[test]
fn sighup_rotates_the_served_certificate() {
    let Some((_dir, certs)) = tls_prereqs() else {
        return;
    };
    let cm = start_callmask(&certs);
    let pbx = cm.layout.pbx_listen;
    let before = served_subject(&certs, pbx);
    assert!(
        before.contains("CN = callmask") || before.contains("CN=callmask"),
        "{before}"
    );
    // A new certificate at the same paths.
    leaf(&certs, "rotated", "IP:127.0.0.1", "ca");
    std::fs::copy(certs.join("rotated.pem"), certs.join("callmask.pem")).unwrap();
    std::fs::copy(certs.join("rotated.key"), certs.join("callmask.key")).unwrap();
    cm.signal("HUP");
    cm.wait_metrics("the reload applied", T, |m| {
        m.value("callmask_config_reloads_total{result=\"success\"}") == 1.0
    });
    let after = served_subject(&certs, pbx);
    assert!(after.contains("rotated"), "still serving {after}");
    // A half-rotated pair: refused, the rotated certificate stays in force.
    std::fs::copy(certs.join("agent.key"), certs.join("callmask.key")).unwrap();
    cm.signal("HUP");
    cm.wait_metrics("the broken reload refused", T, |m| {
        m.value("callmask_config_reloads_total{result=\"failure\"}") == 1.0
    });
    let kept = served_subject(&certs, pbx);
    assert!(kept.contains("rotated"), "after a refused reload: {kept}");
    eprintln!(
        "[figure] certificate rotation: {before} -> {after}; a mismatched key refused, {kept} kept"
    );
}

/// TLS interop with a real proxy as the PBX: Debian's Kamailio 5.6 with its `tls` module
/// takes the customer's call (baresip, UDP) and relays it to callmask over TLS (Kamailio's
/// client certificate checked against `pbx.tls.client_ca_file`, callmask's certificate checked
/// by Kamailio); callmask's `pbx.peer` is Kamailio's TLS listener, so its requests and
/// responses toward the PBX side go over TLS and are verified against `pbx.tls.ca_file`. The
/// call connects and is recorded with the customer's keys muted; every SIP message callmask
/// got from the PBX side came over TLS.
#[test]
fn kamailio_tls_proxy_as_the_pbx() {
    use callmask_integration::phones::Baresip;
    let Some((dir, certs)) = tls_prereqs() else {
        return;
    };
    let (customer_voice, agent_voice, cust_src, agent_src) = phone_voices(dir.path());
    let _ = callmask_integration::callmask_bin();
    let life = Duration::from_secs(40);
    let phone = |user: &str, source: PathBuf| pcmu_phone(user, source, "udp");
    let agent = Baresip::start_menc(&phone("agent", agent_src), None, life, None);
    // callmask's PBX-side TLS port, known before Kamailio starts (its default route).
    let cm_pbx = SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        callmask_integration::free_tcp_port(),
    ));
    let Some(kam) = kamailio_tls(&certs, Some(cm_pbx)) else {
        return;
    };
    let mut sets = tls_pbx_sets(&certs, cm_pbx);
    sets.push(format!("agents.peer=\"{}\"", agent.sip));
    let mut cm = Callmask::start_with(CallmaskOpts {
        pbx_peer: kam.tls,
        sets,
        ..CallmaskOpts::default()
    });
    let customer = Baresip::start_menc(
        &phone("customer", cust_src),
        Some(&format!("sip:agent@{}", kam.sip)),
        life,
        None,
    );
    let ctx = |cm: &Callmask| {
        format!(
            "--- customer ---\n{}\n--- agent ---\n{}\n--- kamailio ---\n{}\n--- callmask ---\n{}",
            customer.log_tail(),
            agent.log_tail(),
            kam.log_tail(),
            cm.log_tail()
        )
    };
    assert!(
        customer.wait_log("Call established", Duration::from_secs(20)),
        "no call\n{}",
        ctx(&cm)
    );
    assert!(
        customer.wait_log("terminated", Duration::from_secs(25)),
        "no hang-up\n{}",
        ctx(&cm)
    );
    let m = cm.wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
    let tls = tls_received(&m, "pbx");
    let pbx_all = m.sum("callmask_sip_messages_received_total", &["side=\"pbx\""]);
    let failures = m.sum("callmask_sip_tls_handshake_failures_total", &[]);
    let context = ctx(&cm);
    cm.stop(Duration::from_secs(10));
    let (c_corr, a_corr, keys_left) = voices_recorded(&cm.rec_dir, &customer_voice, &agent_voice);
    eprintln!(
        "[figure] Kamailio 5.6 (tls module) as the PBX over TLS: {tls} of {pbx_all} PBX-side \
         SIP messages over TLS, {failures} handshake failures; customer corr {c_corr:.3}, agent \
         corr {a_corr:.3}; keys left {keys_left} of 4"
    );
    assert!(
        tls >= 3.0 && tls == pbx_all,
        "PBX side over TLS only\n{context}"
    );
    assert_eq!(failures, 0.0, "{context}");
    assert!(c_corr >= 0.9 && a_corr >= 0.9, "{context}");
    assert_eq!(keys_left, 0, "{context}");
}

/// Kamailio (SIP on UDP/TCP and a TLS listener, the `pbx` certificate of the test CA,
/// verifying the other end both ways) as the PBX; `default_route`: where calls to users
/// without a registration go, over TLS. `None` when baresip, Kamailio or its `tls` module
/// is missing (reported).
fn kamailio_tls(
    certs: &Path,
    default_route: Option<SocketAddr>,
) -> Option<callmask_integration::phones::Kamailio> {
    use callmask_integration::phones::{require, Kamailio, KamailioOpts, KamailioTls};
    if !(require("baresip") && require("kamailio")) {
        return None;
    }
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so").exists() {
        missing("Kamailio's tls module (package kamailio-tls-modules) is not installed");
        return None;
    }
    Some(Kamailio::start(&KamailioOpts {
        default_route,
        tls: Some(KamailioTls {
            cert: certs.join("pbx.pem"),
            key: certs.join("pbx.key"),
            ca: certs.join("ca.pem"),
        }),
        ..KamailioOpts::default()
    }))
}

/// callmask's settings for a TLS-only PBX side listening on `listen` (its certificate,
/// client certificates verified, the peer verified against the test CA); speech off.
fn tls_pbx_sets(certs: &Path, listen: SocketAddr) -> Vec<String> {
    let f = |n: &str| file(certs, n);
    vec![
        format!("pbx.listen=\"{listen}\""),
        "pbx.transport=\"tls\"".into(),
        format!("pbx.tls.cert_file=\"{}\"", f("callmask.pem")),
        format!("pbx.tls.key_file=\"{}\"", f("callmask.key")),
        format!("pbx.tls.client_ca_file=\"{}\"", f("ca.pem")),
        format!("pbx.tls.ca_file=\"{}\"", f("ca.pem")),
        "masking.speech=false".into(),
    ]
}

/// Registration mode with a TLS PBX side, end to end: an agent phone (baresip, UDP)
/// registers through callmask; callmask relays the REGISTER to Kamailio (the registrar) over
/// TLS with a Contact of its own PBX-side TLS address (`;transport=tls`); a customer's call
/// to the agent's address of record is delivered by Kamailio to that Contact over TLS, and
/// callmask brings it to the phone. The call connects and completes; every PBX-side message
/// callmask received came over TLS.
#[test]
fn registration_mode_with_a_tls_pbx_registrar() {
    use callmask_integration::phones::{Baresip, PhoneOpts};
    let Some((dir, certs)) = tls_prereqs() else {
        return;
    };
    let (_, _, cust_src, agent_src) = phone_voices(dir.path());
    let _ = callmask_integration::callmask_bin();
    let cm_pbx = SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        callmask_integration::free_tcp_port(),
    ));
    let Some(kam) = kamailio_tls(&certs, None) else {
        return;
    };
    let cm = Callmask::start_with(CallmaskOpts {
        agents_peer: false,
        pbx_peer: kam.tls,
        sets: tls_pbx_sets(&certs, cm_pbx),
        ..CallmaskOpts::default()
    });
    let life = Duration::from_secs(40);
    let agent = Baresip::start(
        &PhoneOpts {
            outbound: Some(cm.layout.agents_listen),
            register: Some(kam.sip),
            ..pcmu_phone("agent", agent_src, "udp")
        },
        None,
        life,
    );
    let ctx = |c: &Baresip| {
        callmask_integration::phones::logs_of(&[
            ("this phone", c.log_tail()),
            ("agent", agent.log_tail()),
            ("kamailio", kam.log_tail()),
            ("callmask", cm.log_tail()),
        ])
    };
    assert!(
        agent.wait_log("200 OK", T),
        "the agent did not register\n{}",
        ctx(&agent)
    );
    assert!(
        kam.log().contains("transport=tls"),
        "Kamailio did not save a TLS Contact\n{}",
        ctx(&agent)
    );
    let customer = Baresip::start(
        &pcmu_phone("customer", cust_src, "udp"),
        Some(&format!("sip:agent@{}", kam.sip)),
        life,
    );
    assert!(
        customer.wait_log("Call established", Duration::from_secs(20)),
        "the registered agent was not reached\n{}",
        ctx(&customer)
    );
    assert!(
        customer.wait_log("terminated", Duration::from_secs(25)),
        "{}",
        ctx(&customer)
    );
    let m = cm.wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
    let tls = tls_received(&m, "pbx");
    let pbx_all = m.sum("callmask_sip_messages_received_total", &["side=\"pbx\""]);
    assert_no_handshake_failures(&m);
    eprintln!(
        "[figure] registration mode, Kamailio registrar over TLS: agent registered with a \
         transport=tls Contact, the customer's call delivered over TLS and completed; {tls} of \
         {pbx_all} PBX-side SIP messages over TLS"
    );
    assert!(
        tls >= 4.0 && tls == pbx_all,
        "PBX side over TLS only\n{}",
        ctx(&customer)
    );
}

/// SIPREC over TLS with SRTP streams: a `sips:` SRS (openssl s_server with the test CA's
/// certificate, asking for callmask's client certificate) gets the recording INVITE over TLS
/// with a TLS Via and an RTP/SAVP offer (its keys travel inside TLS only), and the ACK and the
/// BYE at the call's end on the same connection; its RTP/SAVP answer directs the two
/// streams, which arrive as SRTP that decrypts with the offered keys.
#[test]
fn siprec_over_tls_with_srtp_to_a_sips_srs() {
    let Some((_dir, certs)) = tls_prereqs() else {
        return;
    };
    let f = |n: &str| file(&certs, n);
    let srs_addr = SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        callmask_integration::free_tcp_port(),
    ));
    let mut srs_cmd = Command::new("openssl");
    srs_cmd.args([
        "s_server",
        "-accept",
        &srs_addr.to_string(),
        "-cert",
        &f("agent.pem"),
        "-key",
        &f("agent.key"),
        "-CAfile",
        &f("ca.pem"),
        "-Verify",
        "2",
        "-verify_return_error",
        "-quiet",
        "-naccept",
        "1",
    ]);
    let mut srs = SipPipe::spawn("SRS (s_server)", srs_cmd);
    assert!(
        wait_for(T, || callmask_integration::port_bound(srs_addr.port())
            .then_some(()))
        .is_some(),
        "s_server did not listen"
    );
    let cm = Callmask::start_with(CallmaskOpts {
        sets: vec![
            format!(
                "recorder=[{{kind=\"siprec\",srs=[\"sips:srs@{srs_addr}\"],tls_ca_file=\"{}\",\
                 tls_cert_file=\"{}\",tls_key_file=\"{}\",probe_s=0,keepalive_s=0,srtp=true,\
                 timeout_ms=5000,bind=\"127.0.0.1:0\"}}]",
                f("ca.pem"),
                f("callmask.pem"),
                f("callmask.key")
            ),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    let (caller_rx, agent_rx) = (
        callmask_integration::UdpCapture::bind(),
        callmask_integration::UdpCapture::bind(),
    );
    // The customer's voice with two in-band keys (at 0.8 s and 1.6 s of 3 s), the agent's
    // tagged frames; the first 10 frames each way start the recording.
    let (frames, sent) = callmask_integration::synth_call_with_dtmf(3000, 800, "48");
    assert_eq!(callmask_integration::dtmf_digit_count(&sent), 2);
    let mut call = callmask_integration::MediaCall::start(&cm, 4000);
    let play = |call: &mut callmask_integration::MediaCall, range: std::ops::Range<usize>| {
        for i in range {
            call.pbx_media.send_pcmu(call.cm_pbx, &frames[i]);
            call.agent_media.send_pcmu(
                call.cm_agents,
                &callmask_integration::RtpEndpoint::payload(2, i as u32),
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    play(&mut call, 0..10);
    let invite = srs.next();
    assert!(invite.starts_with("INVITE sips:srs@"), "{invite}");
    assert!(invite.contains("Via: SIP/2.0/TLS "), "{invite}");
    assert!(invite.contains("Require: siprec"), "{invite}");
    let key1 = invite
        .split("a=label:1\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .unwrap_or_else(|| panic!("no SRTP key for stream 1 in the offer: {invite}"))
        .to_owned();
    let crypto =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let body = format!(
        "v=0\r\no=srs 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/SAVP 0\r\n{crypto}\r\na=label:1\r\na=recvonly\r\n\
         m=audio {} RTP/SAVP 0\r\n{crypto}\r\na=label:2\r\na=recvonly\r\n",
        caller_rx.addr().port(),
        agent_rx.addr().port()
    );
    srs.send(&answer(
        &invite,
        "200 OK",
        &format!("sips:srs@{srs_addr}"),
        &body,
    ));
    let ack = srs.next();
    assert!(ack.starts_with("ACK "), "{ack}");
    play(&mut call, 10..frames.len());
    call.assert_completed(&cm);
    let bye = srs.next();
    assert!(bye.starts_with("BYE "), "{bye}");
    srs.send(&answer(&bye, "200 OK", &format!("sips:srs@{srs_addr}"), ""));
    let wire = wait_for(T, || {
        let d = caller_rx.datagrams();
        (d.len() >= 80).then_some(d)
    })
    .expect("the caller stream reached the SRS");
    let caller = callmask_integration::srtp_decrypt(&key1, &wire);
    let got = caller.len();
    assert!(got >= 80, "the SRS decrypted {got} caller packets");
    // Scored as the SRS would hear it: the customer's voice is there, its keys are not.
    let pcm = callmask_integration::rtp_to_pcm(&caller);
    assert!(
        callmask_integration::rms(&pcm) > 1000.0,
        "the customer's voice"
    );
    let digits = callmask_integration::dtmf_digit_count(&pcm);
    assert_eq!(digits, 0, "DTMF reached the SRS");
    assert!(
        !cm.stderr().contains(&key1),
        "an SRTP key in callmask's log"
    );
    let m = cm.metrics();
    assert_eq!(m.value("callmask_siprec_sessions_established_total"), 1.0);
    eprintln!(
        "[figure] SIPREC over TLS + SRTP: INVITE/ACK/BYE over one verified TLS connection \
         (client certificate asked), {got} caller SRTP packets decrypted at the SRS, 0 of 2 \
         in-band keys left in them"
    );
}

/// The customer's voice (8 s, keys "4532" pressed in-band at 2 s) and the agent's (12 s),
/// written as the phones' sources in `dir`: (customer, agent, customer file, agent file).
fn phone_voices(dir: &Path) -> (Vec<i16>, Vec<i16>, PathBuf, PathBuf) {
    use callmask_integration::phones::{press_keys, voice_signal, write_wav_at};
    let mut customer_voice = voice_signal(8000, 11);
    press_keys(&mut customer_voice, 8000, 2000, "4532");
    let agent_voice = voice_signal(12_000, 23);
    let (cust_src, agent_src) = (dir.join("customer.wav"), dir.join("agent.wav"));
    write_wav_at(&cust_src, &customer_voice, 8000, 1);
    write_wav_at(&agent_src, &agent_voice, 8000, 1);
    (customer_voice, agent_voice, cust_src, agent_src)
}

/// A baresip phone `user` speaking PCMU from `source` over `transport`, not registering.
fn pcmu_phone(
    user: &str,
    source: PathBuf,
    transport: &'static str,
) -> callmask_integration::phones::PhoneOpts {
    callmask_integration::phones::PhoneOpts {
        user: user.into(),
        outbound: None,
        register: None,
        password: None,
        codecs: vec!["PCMU".into()],
        source,
        transport,
    }
}
