//! Real phones and a real PBX for end-to-end tests: Debian's baresip (a SIP softphone, run
//! headless with `aufile` as microphone) and Kamailio (registrar, authenticating proxy), each a
//! child process on 127.0.0.1 with its own config in a temp dir, stopped by PID on drop.
//!
//! A missing tool fails the test (`require`) unless `CALLMASK_ALLOW_SKIP=1`, in which case the
//! test returns early with a `SKIP:` line on stderr.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{
    free_media_range, free_tcp_port, free_udp_port, port_bound, tail, terminate, wait_for, TempDir,
};

/// Whether `tool` (a program name) can be run; panics when it is missing, unless
/// `CALLMASK_ALLOW_SKIP=1`, then returns false (the caller returns early).
pub fn require(tool: &str) -> bool {
    if crate::have(tool) {
        return true;
    }
    let why =
        format!("{tool} not found: run scripts/setup.sh (Debian packages baresip-core, kamailio)");
    crate::missing(&why);
    false
}

/// Where baresip's and Kamailio's binaries are looked up (`PATH`, plus /usr/sbin for
/// Kamailio, which a non-login root shell may lack).
fn kamailio_bin() -> PathBuf {
    for p in ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("kamailio")
}

/// The tails of the logs of a real-peer test's parties, each under its name, for an
/// assertion's message (`logs_of(&[("agent", agent.log_tail()), …])`).
pub fn logs_of(parts: &[(&str, String)]) -> String {
    parts
        .iter()
        .map(|(name, log)| format!("--- {name} ---\n{log}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How one baresip is set up.
#[derive(Debug, Clone)]
pub struct PhoneOpts {
    /// SIP user (`sip:USER@127.0.0.1:PORT`); incoming calls must name it in the Request-URI.
    pub user: String,
    /// Outbound proxy (every request goes there first), e.g. callmask's agents listener.
    pub outbound: Option<SocketAddr>,
    /// Registrar to REGISTER with (through the outbound proxy if any), which is also the
    /// host of the phone's address of record; `None`: no REGISTER.
    pub register: Option<SocketAddr>,
    /// Digest password (auth user = `user`).
    pub password: Option<String>,
    /// Codecs to offer/accept, in order (baresip names: `G722`, `opus`, `PCMU`, `PCMA`);
    /// empty: every loaded codec (G.722, Opus, G.711 in that order).
    pub codecs: Vec<String>,
    /// 8 kHz mono WAV played as the microphone (the call ends when it ends).
    pub source: PathBuf,
    /// SIP transport for the registration and calls (`udp` or `tcp`).
    pub transport: &'static str,
}

/// Whether a TCP socket listens on `port` on 127.0.0.1 or 0.0.0.0 (state `0A` in
/// /proc/net/tcp: not a connection that merely uses the port).
fn tcp_listening(port: u16) -> bool {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let (any, lo) = (
        format!("00000000:{port:04X}"),
        format!("0100007F:{port:04X}"),
    );
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && (f[1] == any || f[1] == lo) && f[3] == "0A"
    })
}

/// SIP over TLS for a baresip (its `sip_certificate` and `sip_cafile`): it then listens for
/// TLS on its SIP port + 1 ([`Baresip::sip`] is that address) and its account uses
/// `transport=tls`.
#[derive(Debug, Clone)]
pub struct PhoneTls {
    /// PEM holding the phone's certificate and then its private key.
    pub cert_and_key: PathBuf,
    /// PEM of the CA(s) it trusts.
    pub ca: PathBuf,
}

/// A running baresip. Dropping it stops it (SIGTERM, then SIGKILL) by PID.
#[derive(Debug)]
pub struct Baresip {
    child: Option<Child>,
    /// Its SIP address.
    pub sip: SocketAddr,
    /// Its UDP console (baresip's `cons` module): [`Baresip::command`] sends to it.
    console: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Baresip {
    /// Starts baresip; `dial` is a SIP URI to call at once (else it waits, auto-answering).
    /// `quit_after` bounds its life (baresip's `-t`).
    pub fn start(opts: &PhoneOpts, dial: Option<&str>, quit_after: Duration) -> Baresip {
        Self::start_menc(opts, dial, quit_after, None)
    }

    /// [`Self::start`] with a media encryption of baresip's `srtp` module (`srtp`: best
    /// effort, `srtp-mand`: RTP/SAVP, `srtp-mandf`: RTP/SAVPF), keyed by SDES (RFC 4568).
    pub fn start_menc(
        opts: &PhoneOpts,
        dial: Option<&str>,
        quit_after: Duration,
        menc: Option<&str>,
    ) -> Baresip {
        Self::start_inner(opts, dial, quit_after, menc, None)
    }

    /// [`Self::start_menc`] with SIP over TLS (issue 14): see [`PhoneTls`].
    pub fn start_tls(
        opts: &PhoneOpts,
        dial: Option<&str>,
        quit_after: Duration,
        menc: Option<&str>,
        tls: &PhoneTls,
    ) -> Baresip {
        Self::start_inner(opts, dial, quit_after, menc, Some(tls))
    }

    fn start_inner(
        opts: &PhoneOpts,
        dial: Option<&str>,
        quit_after: Duration,
        menc: Option<&str>,
        tls: Option<&PhoneTls>,
    ) -> Baresip {
        let dir = TempDir::new(&format!("baresip-{}", opts.user));
        // With TLS, baresip also listens on TCP port + 1: pick a port whose neighbour is free.
        let port = loop {
            let p = free_udp_port();
            let tcp_free = |q: u16| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok();
            if tls.is_none() || (p < u16::MAX && tcp_free(p) && tcp_free(p + 1)) {
                break p;
            }
        };
        // baresip listens for TLS on its SIP port + 1.
        let sip = SocketAddr::from(([127, 0, 0, 1], port + u16::from(tls.is_some())));
        let (rtp_lo, rtp_hi) = free_media_range(8);
        let console = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let codecs: Vec<&str> = if opts.codecs.is_empty() {
            vec!["g722", "opus", "g711"]
        } else {
            let mut m: Vec<&str> = Vec::new();
            for c in &opts.codecs {
                let module = match c.to_ascii_lowercase().as_str() {
                    "g722" => "g722",
                    "opus" => "opus",
                    _ => "g711",
                };
                if !m.contains(&module) {
                    m.push(module);
                }
            }
            m
        };
        let mut config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{port}\n\
             net_interface 127.0.0.1\n\
             audio_path /usr/share/baresip\n\
             audio_player aufile,{null}\n\
             audio_source aufile,{src}\n\
             audio_alert aufile,{null}\n\
             rtp_ports {rtp_lo}-{rtp_hi}\n\
             module_path /usr/lib/baresip/modules\n\
             cons_listen {console}\n",
            null = dir.path().join("null.wav").display(),
            src = opts.source.display(),
        );
        if let Some(t) = tls {
            config.push_str(&format!(
                "sip_certificate {}\nsip_cafile {}\n",
                t.cert_and_key.display(),
                t.ca.display()
            ));
        }
        for m in codecs {
            config.push_str(&format!("module {m}.so\n"));
        }
        if menc.is_some() {
            // Before `account`: it resolves each account's `mediaenc` as it loads.
            config.push_str("module srtp.so\n");
        }
        config.push_str("module aufile.so\nmodule account.so\nmodule menu.so\nmodule cons.so\n");
        fs::write(dir.path().join("config"), config).expect("baresip config");
        // The AOR's host is the registrar when registering; else the phone's own address.
        let home = opts.register.unwrap_or(sip);
        let mut account = format!("<sip:{}@{home}", opts.user);
        if tls.is_some() {
            account.push_str(";transport=tls");
        } else if opts.transport == "tcp" {
            account.push_str(";transport=tcp");
        }
        account.push('>');
        if let Some(p) = &opts.password {
            account.push_str(&format!(";auth_user={};auth_pass={p}", opts.user));
        }
        if let Some(o) = opts.outbound {
            account.push_str(&format!(
                ";outbound=\"sip:{o};transport={}\"",
                opts.transport
            ));
        }
        account.push_str(if opts.register.is_some() {
            ";regint=600"
        } else {
            ";regint=0"
        });
        if !opts.codecs.is_empty() {
            // baresip looks codecs up by name/rate/channels.
            let full: Vec<&str> = opts
                .codecs
                .iter()
                .map(|c| match c.to_ascii_lowercase().as_str() {
                    "g722" => "G722/16000/1",
                    "opus" => "opus/48000/2",
                    "pcma" => "PCMA/8000/1",
                    _ => "PCMU/8000/1",
                })
                .collect();
            account.push_str(&format!(";audio_codecs={}", full.join(",")));
        }
        if let Some(m) = menc {
            account.push_str(&format!(";mediaenc={m}"));
        }
        account.push_str(";answermode=auto\n");
        fs::write(dir.path().join("accounts"), account).expect("baresip accounts");
        let log = dir.path().join("baresip.log");
        let mut cmd = Command::new("baresip");
        cmd.arg("-f")
            .arg(dir.path())
            .arg("-t")
            .arg(quit_after.as_secs().max(1).to_string());
        if let Some(uri) = dial {
            cmd.arg("-e").arg(format!("/dial {uri}"));
        }
        let child = crate::spawn_logged(&mut cmd, &log, "baresip");
        let b = Baresip {
            child: Some(child),
            sip,
            console,
            log,
            _dir: dir,
        };
        let up = wait_for(Duration::from_secs(10), || {
            let bound = if tls.is_some() {
                tcp_listening(sip.port())
            } else {
                port_bound(port)
            };
            bound.then_some(())
        });
        assert!(up.is_some(), "baresip did not bind {sip}\n{}", b.log_tail());
        b
    }

    /// Types `line` at its console (the `cons` module on 127.0.0.1), as a user would at its
    /// menu: e.g. `/sndcode 7` sends the key 7 in the call as an RFC 4733 event.
    pub fn command(&self, line: &str) {
        let sock = std::net::UdpSocket::bind(("127.0.0.1", 0)).expect("a UDP socket");
        sock.send_to(format!("{line}\n").as_bytes(), self.console)
            .expect("send to baresip's console");
    }

    /// Its log (ANSI colours and status lines stripped).
    pub fn log(&self) -> String {
        let raw = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&raw)
            .split(['\r', '\n'])
            .filter(|l| !l.contains("bit/s)") && !l.trim().is_empty())
            .map(|l| l.replace("\u{1b}[31m", "").replace("\u{1b}[;m", ""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last 4 KB of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log(), 4000).to_owned()
    }

    /// Waits until its log has a line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.log().contains(needle).then_some(())).is_some()
    }

    /// Stops it now (SIGTERM: baresip un-REGISTERs before it exits, up to `grace`; then
    /// SIGKILL).
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, grace);
        }
    }

    /// Waits for it to exit (its `-t` or the call's end), up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return true;
        };
        wait_for(timeout, || c.try_wait().ok().flatten().map(|_| ())).is_some()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

/// How Kamailio is set up: a registrar (usrloc in memory) and proxy that challenges INVITEs
/// from `auth_user` with a 407 (RFC 3261 §22.3) and sends calls for unregistered users to
/// `default_route`.
#[derive(Debug, Clone, Default)]
pub struct KamailioOpts {
    /// The user whose INVITEs are challenged (password `password`, realm = From host).
    pub auth_user: Option<(String, String)>,
    /// Where a call to a user without a registration goes.
    pub default_route: Option<SocketAddr>,
    /// A TLS listener too (Debian's `kamailio-tls-modules`), and calls to `default_route`
    /// over TLS.
    pub tls: Option<KamailioTls>,
}

/// Kamailio's TLS settings (PEM files): its certificate and key, presented as server and as
/// client, and the CA it verifies the other end against (both ways).
#[derive(Debug, Clone)]
pub struct KamailioTls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// CAs to verify peers against.
    pub ca: PathBuf,
}

/// A running Kamailio (UDP and TCP on one port). Dropping it stops it by PID.
#[derive(Debug)]
pub struct Kamailio {
    child: Option<Child>,
    /// Its SIP address (UDP and TCP).
    pub sip: SocketAddr,
    /// Its TLS listener, with [`KamailioOpts::tls`].
    pub tls: Option<SocketAddr>,
    log: PathBuf,
    _dir: TempDir,
}

impl Kamailio {
    /// Starts Kamailio in the foreground (`-DD -E`) and waits until it listens.
    pub fn start(opts: &KamailioOpts) -> Kamailio {
        let dir = TempDir::new("kamailio");
        let port = free_udp_port();
        let sip = SocketAddr::from(([127, 0, 0, 1], port));
        let auth = match &opts.auth_user {
            Some((user, pass)) => format!(
                "    if (is_method(\"INVITE\") && $fU == \"{user}\") {{\n\
                 \x20       if (!pv_proxy_authenticate(\"$fd\", \"{pass}\", \"0\")) {{\n\
                 \x20           xlog(\"L_NOTICE\", \"challenge INVITE cseq $cs\\n\");\n\
                 \x20           proxy_challenge(\"$fd\", \"0\");\n\
                 \x20           exit;\n\
                 \x20       }}\n\
                 \x20       xlog(\"L_NOTICE\", \"authenticated INVITE cseq $cs\\n\");\n\
                 \x20       consume_credentials();\n\
                 \x20   }}\n"
            ),
            None => String::new(),
        };
        let route_tls = if opts.tls.is_some() {
            ";transport=tls"
        } else {
            ""
        };
        let default_route = match opts.default_route {
            Some(a) => format!("        $du = \"sip:{a}{route_tls}\";\n"),
            None => "        sl_send_reply(\"404\", \"Not Found\");\n        exit;\n".into(),
        };
        let tls_port = opts.tls.as_ref().map(|_| free_tcp_port());
        let tls = match (&opts.tls, tls_port) {
            (Some(t), Some(p)) => {
                let side = |kind: &str, verify: &str| {
                    format!(
                        "[{kind}:default]\nmethod = TLSv1.2+\nverify_certificate = {verify}\n\
                         require_certificate = {verify}\ncertificate = {}\nprivate_key = {}\n\
                         ca_list = {}\n\n",
                        t.cert.display(),
                        t.key.display(),
                        t.ca.display()
                    )
                };
                let tls_cfg = dir.path().join("tls.cfg");
                fs::write(
                    &tls_cfg,
                    format!("{}{}", side("server", "yes"), side("client", "yes")),
                )
                .expect("kamailio tls.cfg");
                format!(
                    "enable_tls=yes\nlisten=tls:127.0.0.1:{p}\n\
                     loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n",
                    tls_cfg.display()
                )
            }
            _ => String::new(),
        };
        let cfg = format!(
            "#!KAMAILIO\n\
             debug=2\nlog_stderror=yes\nfork=no\nchildren=1\ntcp_children=1\nauto_aliases=no\n\
             listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\nalias=\"127.0.0.1:{port}\"\n\
             mpath=\"/usr/lib/x86_64-linux-gnu/kamailio/modules/\"\n\
             {tls}\
             loadmodule \"tm.so\"\nloadmodule \"sl.so\"\nloadmodule \"rr.so\"\nloadmodule \"pv.so\"\n\
             loadmodule \"maxfwd.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
             loadmodule \"textops.so\"\nloadmodule \"siputils.so\"\nloadmodule \"xlog.so\"\n\
             loadmodule \"auth.so\"\nloadmodule \"kex.so\"\nloadmodule \"corex.so\"\n\
             modparam(\"usrloc\", \"db_mode\", 0)\n\
             request_route {{\n\
             \x20   if (!mf_process_maxfwd_header(\"10\")) {{ sl_send_reply(\"483\", \"Too Many Hops\"); exit; }}\n\
             \x20   if (has_totag()) {{\n\
             \x20       if (loose_route()) {{ t_relay(); exit; }}\n\
             \x20       if (is_method(\"ACK\")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}\n\
             \x20       sl_send_reply(\"404\", \"Not here\"); exit;\n\
             \x20   }}\n\
             \x20   if (is_method(\"CANCEL\")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}\n\
             \x20   t_check_trans();\n\
             \x20   if (is_method(\"REGISTER\")) {{ xlog(\"L_NOTICE\", \"register $tu contact $ct\\n\"); save(\"location\"); exit; }}\n\
             {auth}\
             \x20   record_route();\n\
             \x20   if (!lookup(\"location\")) {{\n\
             {default_route}\
             \x20   }}\n\
             \x20   xlog(\"L_NOTICE\", \"relay $rm to $ru via $du\\n\");\n\
             \x20   t_relay();\n\
             }}\n"
        );
        let cfg_path = dir.path().join("kamailio.cfg");
        fs::write(&cfg_path, cfg).expect("kamailio cfg");
        let log = dir.path().join("kamailio.log");
        let out = fs::File::create(&log).expect("kamailio log");
        let child = Command::new(kamailio_bin())
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-w"])
            .arg(dir.path())
            .args(["-P"])
            .arg(dir.path().join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start kamailio: {e}"));
        let k = Kamailio {
            child: Some(child),
            sip,
            tls: tls_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            log,
            _dir: dir,
        };
        let up = wait_for(Duration::from_secs(10), || port_bound(port).then_some(()));
        assert!(
            up.is_some(),
            "kamailio did not bind {sip}\n{}",
            k.log_tail()
        );
        k
    }

    /// Its log.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last 4 KB of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log(), 4000).to_owned()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

/// A voice-like test signal at 8 kHz, `ms` long: harmonic bursts (a 120–220 Hz gliding
/// fundamental with 6 harmonics) of pseudo-random 120–420 ms lengths separated by 60–200 ms
/// pauses, so the amplitude envelope alone pins the alignment and no two seconds look alike.
pub fn voice_signal(ms: u32, seed: u32) -> Vec<i16> {
    voice_signal_at(ms, seed, 8000)
}

/// [`voice_signal`] sampled at `rate` Hz (the same signal: its harmonics stay below 2 kHz).
pub fn voice_signal_at(ms: u32, seed: u32, rate: u32) -> Vec<i16> {
    let per_ms = (rate / 1000) as usize;
    let n = ms as usize * per_ms;
    let mut out = vec![0i16; n];
    let mut rng = seed | 1;
    let mut next = |lo: u32, hi: u32| {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        lo + rng % (hi - lo)
    };
    let mut i = 0usize;
    let mut phase = 0.0f64;
    while i < n {
        let burst = next(120, 420) as usize * per_ms;
        let f0 = f64::from(next(120, 220));
        for k in 0..burst.min(n - i) {
            let glide = f0 * (1.0 + 0.15 * (k as f64 / burst as f64));
            phase += 2.0 * std::f64::consts::PI * glide / f64::from(rate);
            let env = (std::f64::consts::PI * k as f64 / burst as f64).sin();
            let v: f64 = (1..=6)
                .map(|h| (phase * f64::from(h)).sin() / f64::from(h))
                .sum();
            out[i + k] = (5000.0 * env * v) as i16;
        }
        i += burst + next(60, 200) as usize * per_ms;
    }
    out
}

/// Where `reference` best lines up inside `recorded`: (normalized correlation, offset in
/// samples of `reference[0]` within `recorded`). A coarse search on 10 ms energy envelopes
/// finds the offset, then a sample-exact search ±20 ms around it gives the correlation.
pub fn best_alignment(reference: &[i16], recorded: &[i16]) -> (f64, usize) {
    const B: usize = 80;
    let env = |s: &[i16]| -> Vec<f64> {
        s.chunks(B)
            .map(|c| (c.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / B as f64).sqrt())
            .collect()
    };
    let (er, eo) = (env(reference), env(recorded));
    let mut coarse = (f64::MIN, 0usize);
    for lag in 0..eo.len().saturating_sub(er.len() / 2) {
        let c = ncc(&er, &eo[lag..]);
        if c > coarse.0 {
            coarse = (c, lag);
        }
    }
    let centre = coarse.1 * B;
    let mut best = (f64::MIN, centre);
    let r: Vec<f64> = reference.iter().map(|&x| f64::from(x)).collect();
    let o: Vec<f64> = recorded.iter().map(|&x| f64::from(x)).collect();
    for lag in centre.saturating_sub(160)..=centre + 160 {
        if lag >= recorded.len() {
            break;
        }
        let c = ncc(&r, &o[lag..]);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// Normalized cross-correlation of the overlap of `a` and `b` (both from index 0).
fn ncc(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        ab += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-9)
}

/// One channel of an interleaved stereo buffer.
pub fn channel(interleaved: &[i16], ch: usize) -> Vec<i16> {
    interleaved.iter().skip(ch).step_by(2).copied().collect()
}

/// Writes 16-bit PCM at `rate` Hz as a WAV of `channels` identical channels (baresip's
/// `aufile` needs the codec's rate and channel count: Opus is 48 kHz stereo).
pub fn write_wav_at(path: &Path, samples: &[i16], rate: u32, channels: u16) {
    let data = (samples.len() * 2 * usize::from(channels)) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    b.extend_from_slice(&(2 * channels).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        for _ in 0..channels {
            b.extend_from_slice(&s.to_le_bytes());
        }
    }
    fs::write(path, b).expect("write wav");
}

/// Keypad presses in `pcm` (sampled at `rate`): 100 ms tones 250 ms apart from `at_ms`,
/// replacing the voice (about −7 dBm0 per tone).
pub fn press_keys(pcm: &mut [i16], rate: u32, at_ms: u32, keys: &str) {
    let per_ms = (rate / 1000) as usize;
    for (k, d) in keys.chars().enumerate() {
        let Some(digit) = dsp::dtmf::Digit::from_char(d) else {
            continue;
        };
        let (lo, hi) = digit.frequencies();
        let start = (at_ms as usize + 250 * k) * per_ms;
        for (i, x) in pcm.iter_mut().enumerate().skip(start).take(100 * per_ms) {
            let t = i as f32 / rate as f32;
            *x = (7000.0 * (2.0 * std::f32::consts::PI * lo * t).sin()
                + 7000.0 * (2.0 * std::f32::consts::PI * hi * t).sin()) as i16;
        }
    }
}

/// Normalized correlation of `reference` placed at `at` in `recorded`, leaving out the
/// reference's samples in `skip` (e.g. key presses the recording rightly muted).
pub fn correlation_outside(
    reference: &[i16],
    recorded: &[i16],
    at: usize,
    skip: std::ops::Range<usize>,
) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (i, &x) in reference.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let Some(&y) = recorded.get(at + i) else {
            break;
        };
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-9)
}
