//! Helpers for end-to-end tests: spawn the real binary on 127.0.0.1, reap by PID.
//!
//! Every test starts its own `callmask run` (all ports picked free on 127.0.0.1, a private
//! media range, a private recorder directory) and drives it with sipp (Debian `sip-tester`)
//! as the PBX (UAC) and agent (UAS) peers, with the Rust RTP endpoints below as their media.
//! Every process started here is owned by a guard whose `Drop` ends *that* process by PID
//! (SIGTERM, a grace period, then SIGKILL), so a panicking test leaves nothing behind.
//!
//! Environment:
//! - `CALLMASK_BIN`: use this binary as is (no build).
//! - `CALLMASK_E2E_NO_BUILD=1`: do not run `cargo build -p callmask` before the first test;
//!   use the binary next to the test executable.
//! - `SIPP`: sipp binary (default `sipp` from `PATH`).
#![allow(clippy::disallowed_methods)] // an e2e harness reads the clock
#![allow(clippy::unwrap_used)] // panics are test failures here

pub mod ng;
pub mod phones;

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Whether `tool` (a program name) is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The eval kit (`../shared/eval`, or `$CALLMASK_SHARED/eval`) when `probe` (a path inside
/// it, e.g. `data/dev/call_007.json`) is there.
pub fn eval_dir(probe: &str) -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let shared = std::env::var_os("CALLMASK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.parent().map(|p| p.join("shared")).unwrap_or_default());
    let eval = shared.join("eval");
    eval.join(probe).is_file().then_some(eval)
}

/// Loopback, the only address these tests use.
pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

// ---------------------------------------------------------------------------------------------
// Temp dirs and small utilities
// ---------------------------------------------------------------------------------------------

fn entropy() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = DefaultHasher::new();
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .hash(&mut h);
    std::process::id().hash(&mut h);
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    thread::current().id().hash(&mut h);
    h.finish()
}

/// A directory under the system temp dir, removed on drop unless `CALLMASK_E2E_KEEP` is set
/// (then its path is printed so a failed run can be inspected).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh empty directory named after `label`.
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "callmask-e2e-{label}-{}-{:x}",
            std::process::id(),
            entropy()
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CALLMASK_E2E_KEEP").is_some() {
            eprintln!("[e2e] keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn read_lossy(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `max` bytes of `s` (on a char boundary), for failure messages.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = s.len() - max;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Ends the process `child` by PID: SIGTERM, up to `grace` to exit, then SIGKILL. Returns its
/// exit status (None if it could not be reaped).
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    // `kill` by PID (no libc, no unsafe): only this child is signalled.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill(); // SIGKILL to this PID
    child.wait().ok()
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// A UDP port on 127.0.0.1 that was free a moment ago (bound to :0 and released).
pub fn free_udp_port() -> u16 {
    loop {
        let s = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let p = s.local_addr().unwrap().port();
        drop(s);
        // Also free for TCP, so one number can serve either.
        if TcpListener::bind((LOCALHOST, p)).is_ok() {
            return p;
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let l = TcpListener::bind((LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// The kernel's ephemeral port range (where `bind(:0)` draws from).
fn ephemeral_range() -> (u16, u16) {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A media range `(start, end)` of `pairs` RTP/RTCP pairs: a random even base in
/// 20000–60000 whose ports are all free for UDP right now. Ranges that overlap the kernel's
/// ephemeral range are avoided when there is room, so that no `bind(:0)` of another test
/// (sipp, RTP endpoints) lands inside callmask's range between the check and callmask's bind.
pub fn free_media_range(pairs: u16) -> (u16, u16) {
    let span = pairs * 2;
    let (eph_lo, eph_hi) = ephemeral_range();
    for attempt in 0..400u64 {
        let r = entropy().wrapping_add(attempt);
        let base = 20_000 + ((r % ((40_000 - u64::from(span)) / 2)) as u16) * 2;
        let end = base + span - 1;
        let overlaps = base <= eph_hi && end >= eph_lo;
        if overlaps && attempt < 300 {
            continue;
        }
        let all_free = (base..=end).all(|p| UdpSocket::bind((LOCALHOST, p)).is_ok());
        if all_free {
            return (base, end);
        }
    }
    panic!("no free media range of {pairs} pairs found in 20000-60000");
}

/// Whether something holds UDP `port` on 127.0.0.1 or 0.0.0.0, read from /proc/net/udp (no
/// probe bind, which could race with the process starting).
pub fn udp_port_bound(port: u16) -> bool {
    port_in_table("/proc/net/udp", port)
}

/// Whether something holds UDP or TCP `port` on a loopback address (127/8) or 0.0.0.0 (sipp
/// with `-t t1` binds TCP only).
pub fn port_bound(port: u16) -> bool {
    port_in_table("/proc/net/udp", port) || port_in_table("/proc/net/tcp", port)
}

fn port_in_table(path: &str, port: u16) -> bool {
    let table = fs::read_to_string(path).unwrap_or_default();
    // /proc shows IPv4 addresses as little-endian hex: 127.a.b.c ends in "7F".
    let any = format!("00000000:{port:04X}");
    let lo = format!("7F:{port:04X}");
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|local| local == any || (local.len() == 13 && local.ends_with(&lo)))
    })
}

// ---------------------------------------------------------------------------------------------
// The callmask binary
// ---------------------------------------------------------------------------------------------

/// Path of the `callmask` binary: `CALLMASK_BIN`, else the one `cargo` puts next to this test
/// executable (`…/target/<profile>/deps/<test>` → `…/target/<profile>/callmask`). Unless
/// `CALLMASK_BIN` or `CALLMASK_E2E_NO_BUILD` is set, the first call runs
/// `cargo build -p callmask` into that target dir so the binary is never stale (a failed build
/// falls back to the existing binary, with a warning).
pub fn callmask_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CALLMASK_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "CALLMASK_BIN={} is not a file", p.display());
            return p;
        }
        let exe = std::env::current_exe().unwrap();
        let mut dir = exe.parent().unwrap().to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let bin = dir.join("callmask");
        if std::env::var_os("CALLMASK_E2E_NO_BUILD").is_none() {
            build_callmask(&dir);
        }
        assert!(
            bin.is_file(),
            "callmask binary not found at {}: run `cargo build -p callmask` with the same \
             CARGO_TARGET_DIR, or set CALLMASK_BIN",
            bin.display()
        );
        bin
    })
    .clone()
}

fn build_callmask(profile_dir: &Path) {
    let Some(target_dir) = profile_dir.parent() else {
        return;
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "callmask", "--bin", "callmask"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "[e2e] warning: `cargo build -p callmask` failed ({}); using the existing binary\n{}",
            o.status,
            tail(&String::from_utf8_lossy(&o.stderr), 4000)
        ),
        Err(e) => eprintln!("[e2e] warning: cannot run cargo ({e}); using the existing binary"),
    }
}

/// Addresses of one callmask instance and its two peers.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// callmask's PBX-side SIP listener (`pbx.listen`): the UAC sends here.
    pub pbx_listen: SocketAddr,
    /// callmask's agents-side SIP listener (`agents.listen`).
    pub agents_listen: SocketAddr,
    /// The PBX (`pbx.peer`): the UAC sipp binds this.
    pub pbx_peer: SocketAddr,
    /// The agent (`agents.peer`): the UAS sipp binds this.
    pub agents_peer: SocketAddr,
    /// HTTP (`http.listen`).
    pub http: SocketAddr,
    /// Media range, inclusive.
    pub media: (u16, u16),
}

impl Layout {
    /// Fresh free ports for everything; `media_pairs` RTP/RTCP pairs of media range.
    pub fn pick(media_pairs: u16) -> Layout {
        let a = |p: u16| SocketAddr::from((LOCALHOST, p));
        let mut seen = Vec::new();
        let mut fresh = |f: fn() -> u16| loop {
            let p = f();
            if !seen.contains(&p) {
                seen.push(p);
                return p;
            }
        };
        Layout {
            pbx_listen: a(fresh(free_udp_port)),
            agents_listen: a(fresh(free_udp_port)),
            pbx_peer: a(fresh(free_udp_port)),
            agents_peer: a(fresh(free_udp_port)),
            http: a(fresh(free_tcp_port)),
            media: free_media_range(media_pairs),
        }
    }

    /// Whether `port` lies in the media range.
    pub fn in_media_range(&self, port: u16) -> bool {
        (self.media.0..=self.media.1).contains(&port)
    }

    /// A POSIX ERE alternation matching exactly the even (RTP) ports of the media range, for
    /// sipp `<ereg>` checks (`(30000|30002|…)`).
    pub fn media_rtp_port_regex(&self) -> String {
        let ports: Vec<String> = (self.media.0..=self.media.1)
            .step_by(2)
            .map(|p| p.to_string())
            .collect();
        format!("({})", ports.join("|"))
    }
}

/// A running `callmask run`. Dropping it stops the process (SIGTERM, then SIGKILL) by PID.
#[derive(Debug)]
pub struct Callmask {
    child: Option<Child>,
    /// Its addresses.
    pub layout: Layout,
    /// The wav recorder directory.
    pub rec_dir: PathBuf,
    stderr_path: PathBuf,
    exit: Option<ExitStatus>,
    /// The `callmask` command line (for [`Callmask::restart`]).
    args: Vec<String>,
    _dir: TempDir,
}

/// Extra `--set` overrides and the size of the media range.
#[derive(Debug, Clone)]
pub struct CallmaskOpts {
    /// RTP/RTCP pairs in the media range.
    pub media_pairs: u16,
    /// More `--set KEY=VALUE` overrides.
    pub sets: Vec<String>,
    /// Configure `agents.peer` (trunk mode); `false` starts registration mode.
    pub agents_peer: bool,
    /// `pbx.peer` when the PBX is a real one started first (Kamailio); default: a free port
    /// of the layout (`Layout::pbx_peer`), where a sipp UAC binds.
    pub pbx_peer: Option<SocketAddr>,
    /// `--config FILE` (the `--set`s above still apply over it, as on the command line).
    pub config: Option<PathBuf>,
    /// The `[[recorder]]` list comes from `config` (no `--set recorder=…` to the harness's
    /// `rec_dir`, which an override would pin for reloads too).
    pub recorders_in_config: bool,
}

impl Default for CallmaskOpts {
    fn default() -> Self {
        CallmaskOpts {
            media_pairs: 16,
            sets: Vec::new(),
            agents_peer: true,
            pbx_peer: None,
            config: None,
            recorders_in_config: false,
        }
    }
}

impl Callmask {
    /// Start with defaults (16 media pairs).
    pub fn start() -> Callmask {
        Self::start_with(CallmaskOpts::default())
    }

    /// Start callmask on fresh ports and wait until `/healthz` answers 200. A start that
    /// fails (a port taken between picking and binding) is retried on new ports.
    pub fn start_with(opts: CallmaskOpts) -> Callmask {
        let bin = callmask_bin();
        let mut last_err = String::new();
        for _ in 0..4 {
            let layout = Layout::pick(opts.media_pairs);
            let dir = TempDir::new("callmask");
            let rec_dir = dir.path().join("rec");
            fs::create_dir_all(&rec_dir).unwrap();
            let stderr_path = dir.path().join("callmask.stderr");
            let stderr = fs::File::create(&stderr_path).unwrap();
            let mut args: Vec<String> = vec!["run".into()];
            if let Some(c) = &opts.config {
                args.push("--config".into());
                args.push(c.display().to_string());
            }
            let mut set = |kv: String| {
                args.push("--set".into());
                args.push(kv);
            };
            set(format!("pbx.listen={}", layout.pbx_listen));
            set(format!("agents.listen={}", layout.agents_listen));
            set(format!(
                "pbx.peer={}",
                opts.pbx_peer.unwrap_or(layout.pbx_peer)
            ));
            if opts.agents_peer {
                set(format!("agents.peer={}", layout.agents_peer));
            } else {
                // Registration mode is closed without an allow-list (issue 13).
                set("agents.allow=[\"127.0.0.1\"]".into());
            }
            set(format!("http.listen={}", layout.http));
            set(format!("media.ports={}-{}", layout.media.0, layout.media.1));
            if !opts.recorders_in_config {
                set(format!(
                    "recorder=[{{kind=\"wav\",dir=\"{}\"}}]",
                    rec_dir.display()
                ));
            }
            set("masking.lookahead_ms=80".into());
            // SIGTERM (`stop`, drop) ends the calls in progress at once, recordings closed, as
            // before issue 13's drain; a test of the drain sets its own drain time.
            set("shutdown.drain_timeout_s=0".into());
            for s in &opts.sets {
                set(s.clone());
            }
            let child = Command::new(&bin)
                .args(&args)
                .env("RUST_LOG", "debug")
                .env("NO_COLOR", "1")
                .env("RUST_BACKTRACE", "1")
                .stdin(Stdio::null())
                .stdout(stderr.try_clone().unwrap())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut cm = Callmask {
                child: Some(child),
                layout,
                rec_dir,
                stderr_path,
                exit: None,
                args,
                _dir: dir,
            };
            let up = wait_for(Duration::from_secs(15), || {
                if let Some(st) = cm.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Some(Err(st));
                }
                (cm.healthz() == Some(200)).then_some(Ok(()))
            });
            match up {
                Some(Ok(())) => return cm,
                Some(Err(st)) => {
                    cm.exit = Some(st);
                    cm.child = None;
                    last_err = format!("callmask exited with {st}:\n{}", cm.stderr());
                    // A port taken in the meantime: try other ports.
                    if !last_err.contains("cannot listen") {
                        break;
                    }
                }
                None => {
                    last_err = format!("/healthz not 200 within 15 s:\n{}", cm.stderr());
                    break;
                }
            }
        }
        panic!("callmask did not start: {last_err}");
    }

    /// Stops it (SIGTERM, clean exit) and starts a new process with the same command line
    /// (same ports, recorder directory and state), appending to the same log; waits until
    /// `/healthz` answers 200 again.
    pub fn restart(&mut self, grace: Duration) {
        self.stop(grace);
        let mut log = fs::OpenOptions::new()
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        writeln!(log, "--- restart ---").unwrap();
        let child = Command::new(callmask_bin())
            .args(&self.args)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot restart callmask: {e}"));
        self.child = Some(child);
        self.exit = None;
        let up = wait_for(Duration::from_secs(15), || {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Some(Err(st));
            }
            (self.healthz() == Some(200)).then_some(Ok(()))
        });
        match up {
            Some(Ok(())) => {}
            Some(Err(st)) => panic!("callmask exited after restart: {st}\n{}", self.log_tail()),
            None => panic!(
                "/healthz not 200 within 15 s of restart\n{}",
                self.log_tail()
            ),
        }
    }

    /// Its PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends signal `sig` (`HUP`, `TERM`, …) to it, by PID.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("callmask is running");
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Waits up to `timeout` for it to exit by itself (no signal sent); its exit status, or
    /// None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                self.exit = Some(st);
                return Some(st);
            }
            if self.child.is_none() {
                return self.exit;
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything it wrote to stdout/stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The last 6 KB of its log, for assertion messages.
    pub fn log_tail(&self) -> String {
        tail(&self.stderr(), 6000).to_string()
    }

    /// Whether the process is still running (alive and not a zombie, per /proc).
    pub fn is_running(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "pid (comm) S …": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    }

    /// HTTP status of `GET /healthz` (None: no answer).
    pub fn healthz(&self) -> Option<u16> {
        http_get(self.layout.http, "/healthz").map(|(s, _)| s)
    }

    /// Scrape `/metrics`.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = http_get(self.layout.http, "/metrics")
            .unwrap_or_else(|| panic!("GET /metrics: no answer\n{}", self.log_tail()));
        assert_eq!(status, 200, "GET /metrics: {status}\n{body}");
        Metrics::parse(&body)
    }

    /// Waits up to `timeout` until `pred` holds on a scrape; panics with the last scrape and
    /// callmask's log otherwise.
    pub fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let mut last = None;
        let ok = wait_for(timeout, || {
            let m = self.metrics();
            let hit = pred(&m);
            last = Some(m);
            hit.then_some(())
        });
        let m = last.unwrap();
        if ok.is_none() {
            panic!(
                "metrics never showed {what} within {timeout:?}; last scrape (callmask_*):\n{}\n\
                 --- callmask log ---\n{}",
                m.callmask_lines(),
                self.log_tail()
            );
        }
        m
    }

    /// SIGTERM, wait for a clean exit (recordings flushed), SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(mut c) = self.child.take() {
            self.exit = terminate(&mut c, grace);
        }
        self.exit
    }
}

impl Drop for Callmask {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
        if thread::panicking() {
            eprintln!(
                "--- callmask log (pid exit {:?}) ---\n{}",
                self.exit,
                self.log_tail()
            );
        }
    }
}

/// `GET path` over HTTP/1.1 (Connection: close). Returns (status, body); None on any failure.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: callmask-e2e\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// One Prometheus text scrape: (series with labels as written, value).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    series: Vec<(String, f64)>,
}

impl Metrics {
    /// Parse the text exposition format (comments skipped).
    pub fn parse(text: &str) -> Metrics {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect();
        Metrics { series }
    }

    /// The value of an exact series, e.g. `callmask_calls_total{outcome="completed"}`.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.series
            .iter()
            .find(|(k, _)| k == series)
            .map(|(_, v)| *v)
    }

    /// The value of an exact series, 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        self.get(series).unwrap_or(0.0)
    }

    /// Sum over every series of `name` whose labels contain all `labels` (`k="v"` strings).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| {
                let (n, l) = k.split_once('{').unwrap_or((k.as_str(), ""));
                n == name && labels.iter().all(|want| l.contains(want))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// `callmask_calls_total{outcome="…"}`.
    pub fn calls(&self, outcome: &str) -> f64 {
        self.value(&format!("callmask_calls_total{{outcome=\"{outcome}\"}}"))
    }

    /// `callmask_calls_active`.
    pub fn active(&self) -> f64 {
        self.value("callmask_calls_active")
    }

    /// `callmask_media_ports_in_use`.
    pub fn ports_in_use(&self) -> f64 {
        self.value("callmask_media_ports_in_use")
    }

    /// Every `callmask_*` line except histogram buckets, for failure messages.
    pub fn callmask_lines(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.series {
            if k.starts_with("callmask_") && !k.contains("_bucket{") && *v != 0.0 {
                let _ = writeln!(out, "{k} {v}");
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// sipp
// ---------------------------------------------------------------------------------------------

/// Directory of the scenario files shipped with this crate.
pub fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Which scenario sipp runs.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// A built-in one (`-sn uac`, `-sn uas`).
    Builtin(&'static str),
    /// A file in `integration/scenarios/`, with `@KEY@` placeholders replaced by the values.
    File(&'static str, Vec<(String, String)>),
}

impl Scenario {
    /// A file from `integration/scenarios/` without placeholders.
    pub fn file(name: &'static str) -> Scenario {
        Scenario::File(name, Vec::new())
    }

    /// Replace `@key@` in the file by `value` (before sipp reads it).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Scenario {
        if let Scenario::File(_, subst) = &mut self {
            subst.push((key.to_string(), value.into()));
        }
        self
    }

    fn name(&self) -> &str {
        match self {
            Scenario::Builtin(n) => n,
            Scenario::File(n, _) => n.trim_end_matches(".xml"),
        }
    }
}

/// How to run one sipp.
#[derive(Debug, Clone)]
pub struct Sipp {
    /// The scenario.
    pub scenario: Scenario,
    /// Local SIP port (`-p`), bound on 127.0.0.1.
    pub port: u16,
    /// Where to send (UAC: callmask's PBX-side listener); None for a UAS.
    pub remote: Option<SocketAddr>,
    /// `-m`: calls before exiting.
    pub calls: u32,
    /// `-r`: calls per second.
    pub rate: Option<u32>,
    /// `-l`: concurrent call limit.
    pub limit: Option<u32>,
    /// `-d`: pause length in ms.
    pub pause_ms: Option<u32>,
    /// `-timeout`: sipp's own global timeout, seconds (and our wait bound + 5 s).
    pub timeout_s: u32,
    /// `-set NAME VALUE` (globals the scenario declares).
    pub sets: Vec<(String, String)>,
    /// Any further arguments.
    pub extra: Vec<String>,
    /// Local address (`-i`): 127.0.0.1 unless a test plays a stranger from another loopback
    /// address (Linux routes all of 127/8 to `lo`).
    pub local_ip: String,
}

impl Sipp {
    /// One call of `scenario` on local port `port`, 15 s timeout.
    pub fn new(scenario: Scenario, port: u16) -> Sipp {
        Sipp {
            scenario,
            port,
            remote: None,
            calls: 1,
            rate: None,
            limit: None,
            pause_ms: None,
            timeout_s: 15,
            sets: Vec::new(),
            extra: Vec::new(),
            local_ip: "127.0.0.1".into(),
        }
    }

    /// Bind `ip` (a loopback address) instead of 127.0.0.1.
    pub fn local_ip(mut self, ip: &str) -> Sipp {
        self.local_ip = ip.into();
        self
    }

    /// Send to `remote` (UAC).
    pub fn remote(mut self, remote: SocketAddr) -> Sipp {
        self.remote = Some(remote);
        self
    }

    /// `-m`.
    pub fn calls(mut self, n: u32) -> Sipp {
        self.calls = n;
        self
    }

    /// `-r`.
    pub fn rate(mut self, r: u32) -> Sipp {
        self.rate = Some(r);
        self
    }

    /// `-l`.
    pub fn limit(mut self, l: u32) -> Sipp {
        self.limit = Some(l);
        self
    }

    /// `-d` in ms.
    pub fn pause_ms(mut self, ms: u32) -> Sipp {
        self.pause_ms = Some(ms);
        self
    }

    /// `-timeout`, seconds.
    pub fn timeout_s(mut self, s: u32) -> Sipp {
        self.timeout_s = s;
        self
    }

    /// `-set name value`.
    pub fn set(mut self, name: &str, value: impl ToString) -> Sipp {
        self.sets.push((name.to_string(), value.to_string()));
        self
    }

    /// Extra raw arguments.
    pub fn arg(mut self, a: impl Into<String>) -> Sipp {
        self.extra.push(a.into());
        self
    }

    /// Start sipp as a child process (never `-bg`); wait until its SIP port is bound.
    pub fn spawn(self) -> SippChild {
        let dir = TempDir::new(&format!("sipp-{}", self.scenario.name()));
        let files = SippFiles::in_dir(dir.path());
        let mut args: Vec<String> = Vec::new();
        match &self.scenario {
            Scenario::Builtin(n) => {
                args.push("-sn".into());
                args.push((*n).into());
            }
            Scenario::File(name, subst) => {
                let src = scenario_dir().join(name);
                let mut xml = fs::read_to_string(&src)
                    .unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
                for (k, v) in subst {
                    xml = xml.replace(&format!("@{k}@"), v);
                }
                assert!(
                    !xml.contains("@MEDIA_RE@"),
                    "{name}: placeholder left unreplaced"
                );
                let dst = dir.path().join(name);
                fs::write(&dst, xml).unwrap();
                args.push("-sf".into());
                args.push(dst.display().to_string());
            }
        }
        if let Some(r) = self.remote {
            args.push(r.to_string());
        }
        let mut push = |a: &str, b: String| {
            args.push(a.into());
            args.push(b);
        };
        push("-i", self.local_ip.clone());
        push("-p", self.port.to_string());
        push("-m", self.calls.to_string());
        if let Some(r) = self.rate {
            push("-r", r.to_string());
        }
        if let Some(l) = self.limit {
            push("-l", l.to_string());
        }
        if let Some(d) = self.pause_ms {
            push("-d", d.to_string());
        }
        push("-timeout", format!("{}s", self.timeout_s));
        push("-error_file", files.err.display().to_string());
        push("-message_file", files.msg.display().to_string());
        push("-log_file", files.log.display().to_string());
        push("-screen_file", files.screen.display().to_string());
        for (k, v) in &self.sets {
            args.push("-set".into());
            args.push(k.clone());
            args.push(v.clone());
        }
        args.extend(
            [
                "-trace_err",
                "-trace_msg",
                "-trace_logs",
                "-trace_screen",
                "-nostdin",
            ]
            .map(String::from),
        );
        args.extend(self.extra.iter().cloned());
        let sipp = std::env::var_os("SIPP").unwrap_or_else(|| "sipp".into());
        let out = fs::File::create(&files.stdout).unwrap();
        let child = Command::new(&sipp)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sipp ({sipp:?}): {e}"));
        let mut c = SippChild {
            child: Some(child),
            args,
            files,
            deadline: Instant::now() + Duration::from_secs(u64::from(self.timeout_s) + 5),
            _dir: dir,
        };
        let port = self.port;
        let bound = wait_for(Duration::from_secs(5), || {
            if port_bound(port) {
                return Some(true);
            }
            c.child
                .as_mut()
                .and_then(|ch| ch.try_wait().ok().flatten())
                .map(|_| false)
        });
        if bound != Some(true) {
            let r = c.wait();
            panic!("sipp did not bind {}:{port}\n{}", self.local_ip, r.report());
        }
        c
    }

    /// Run to completion (spawn + wait).
    pub fn run(self) -> SippRun {
        self.spawn().wait()
    }
}

#[derive(Debug, Clone)]
struct SippFiles {
    stdout: PathBuf,
    err: PathBuf,
    msg: PathBuf,
    log: PathBuf,
    screen: PathBuf,
}

impl SippFiles {
    fn in_dir(d: &Path) -> SippFiles {
        SippFiles {
            stdout: d.join("stdout.txt"),
            err: d.join("errors.log"),
            msg: d.join("messages.log"),
            log: d.join("actions.log"),
            screen: d.join("screen.log"),
        }
    }
}

/// A sipp child process; `Drop` ends it by PID.
#[derive(Debug)]
pub struct SippChild {
    child: Option<Child>,
    args: Vec<String>,
    files: SippFiles,
    deadline: Instant,
    _dir: TempDir,
}

impl SippChild {
    /// Its PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The scenario's `<log>` output so far.
    pub fn actions_log(&self) -> String {
        read_lossy(&self.files.log)
    }

    /// Wait for sipp to exit (its `-timeout` + 5 s at most; then it is killed) and collect
    /// its logs.
    pub fn wait(&mut self) -> SippRun {
        let mut status = None;
        let mut killed = false;
        if let Some(mut c) = self.child.take() {
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    status = Some(st);
                    break;
                }
                if Instant::now() >= self.deadline {
                    killed = true;
                    status = terminate(&mut c, Duration::from_secs(2));
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        SippRun {
            status,
            killed,
            args: self.args.join(" "),
            stdout: read_lossy(&self.files.stdout),
            errors: read_lossy(&self.files.err),
            messages: read_lossy(&self.files.msg),
            actions: read_lossy(&self.files.log),
            screen: read_lossy(&self.files.screen),
        }
    }
}

impl Drop for SippChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

/// What one sipp run left behind.
#[derive(Debug, Clone)]
pub struct SippRun {
    /// Exit status (None: could not be reaped).
    pub status: Option<ExitStatus>,
    /// Whether we had to kill it at its deadline.
    pub killed: bool,
    /// Its command line.
    pub args: String,
    /// stdout + stderr.
    pub stdout: String,
    /// `-trace_err` file (unexpected messages).
    pub errors: String,
    /// `-trace_msg` file (every message sent and received).
    pub messages: String,
    /// `-trace_logs` file (`<log>` actions).
    pub actions: String,
    /// `-trace_screen` file (final statistics screen).
    pub screen: String,
}

impl SippRun {
    /// Exited 0 (every call successful).
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The "Successful call" / "Failed call" cumulative counts from the final screen.
    pub fn counts(&self) -> (Option<u64>, Option<u64>) {
        let find = |label: &str| {
            let text = if self.screen.is_empty() {
                &self.stdout
            } else {
                &self.screen
            };
            text.lines()
                .rev()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| l.split('|').nth(2))
                .and_then(|c| c.trim().parse().ok())
        };
        (find("Successful call"), find("Failed call"))
    }

    /// A failure report: status, error log, the tail of the message trace and of stdout.
    pub fn report(&self) -> String {
        format!(
            "sipp {}\nstatus: {:?}{}\n--- errors ---\n{}\n--- actions ---\n{}\n--- messages (tail) ---\n{}\n--- stdout (tail) ---\n{}",
            self.args,
            self.status,
            if self.killed { " (killed at deadline)" } else { "" },
            tail(&self.errors, 6000),
            tail(&self.actions, 2000),
            tail(&self.messages, 8000),
            tail(&self.stdout, 3000),
        )
    }

    /// Panic with the report (and `callmask`'s log) unless sipp exited 0.
    pub fn assert_success(&self, who: &str, cm: &Callmask) {
        assert!(
            self.success(),
            "{who} failed\n{}\n--- callmask log ---\n{}",
            self.report(),
            cm.log_tail()
        );
    }
}

/// Waits up to `timeout` for `file` to exist with a complete line, returning its contents.
pub fn wait_file_line(file: &Path, timeout: Duration) -> Option<String> {
    wait_for(timeout, || {
        let s = fs::read_to_string(file).ok()?;
        s.ends_with('\n').then(|| s.trim().to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// RTP
// ---------------------------------------------------------------------------------------------

/// A received RTP packet (header fields and payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload bytes (after header, CSRCs and extension; padding stripped).
    pub payload: Vec<u8>,
    /// Where it came from.
    pub from: SocketAddr,
}

impl RtpPacket {
    /// Parse a datagram; None if it is not RTP version 2.
    pub fn parse(b: &[u8], from: SocketAddr) -> Option<RtpPacket> {
        if b.len() < 12 || b[0] >> 6 != 2 {
            return None;
        }
        let cc = usize::from(b[0] & 0x0f);
        let mut off = 12 + 4 * cc;
        if b[0] & 0x10 != 0 {
            let ext = b.get(off + 2..off + 4)?;
            off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*b.last()?))?;
        }
        Some(RtpPacket {
            pt: b[1] & 0x7f,
            marker: b[1] & 0x80 != 0,
            seq: u16::from_be_bytes([b[2], b[3]]),
            ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: b.get(off..end)?.to_vec(),
            from,
        })
    }
}

/// One media endpoint on 127.0.0.1: sends PCMU RTP from its socket and records every RTP
/// packet that arrives on it (a background thread, stopped on drop).
#[derive(Debug)]
pub struct RtpEndpoint {
    sock: UdpSocket,
    ssrc: u32,
    seq: u16,
    ts: u32,
    received: Arc<Mutex<Vec<RtpPacket>>>,
    stop: Arc<AtomicBool>,
    rx: Option<JoinHandle<()>>,
}

impl RtpEndpoint {
    /// Bind an even port (RTP convention) on 127.0.0.1 and start recording.
    pub fn bind() -> RtpEndpoint {
        let sock = loop {
            let s = UdpSocket::bind((LOCALHOST, 0)).unwrap();
            let p = s.local_addr().unwrap().port();
            if p % 2 == 0 {
                break s;
            }
            // Odd: try the even neighbour below, else draw again.
            if let Ok(s2) = UdpSocket::bind((LOCALHOST, p - 1)) {
                break s2;
            }
        };
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rx_sock = sock.try_clone().unwrap();
        rx_sock
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (r, st) = (received.clone(), stop.clone());
        let rx = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                match rx_sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        if let Some(p) = RtpPacket::parse(&buf[..n], from) {
                            r.lock().unwrap().push(p);
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => {} // ICMP unreachable surfaced on a UDP socket: ignore.
                }
            }
        });
        RtpEndpoint {
            sock,
            ssrc: (entropy() as u32) | 1,
            seq: (entropy() as u16) & 0x7fff,
            ts: entropy() as u32 & 0x00ff_ffff,
            received,
            stop,
            rx: Some(rx),
        }
    }

    /// The local address (what the SDP advertises).
    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// The local port.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Send one PCMU (PT 0) packet of `payload` (160 bytes = 20 ms) to `dest`, advancing
    /// sequence number and timestamp. Returns the payload sent.
    pub fn send_pcmu(&mut self, dest: SocketAddr, payload: &[u8]) -> Vec<u8> {
        self.send_with(dest, payload, |p| p)
    }

    /// [`Self::send_pcmu`] with the whole packet passed through `wrap` before it leaves
    /// (e.g. SRTP protection, see [`srtp_context`]). Returns the payload.
    pub fn send_with(
        &mut self,
        dest: SocketAddr,
        payload: &[u8],
        wrap: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(0); // PT 0 = PCMU, no marker
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.sock.send_to(&wrap(p), dest).unwrap();
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(payload.len() as u32);
        payload.to_vec()
    }

    /// Let `samples` of media time pass without sending (a gap: hold, mute, DTX). The
    /// sequence number continues, the timestamp jumps (RFC 3550 §5.1).
    pub fn skip(&mut self, samples: u32) {
        self.ts = self.ts.wrapping_add(samples);
    }

    /// A recognisable 160-byte µ-law payload for packet `i` of stream `tag` (no two packets
    /// alike, all values valid µ-law codes).
    pub fn payload(tag: u8, i: u32) -> Vec<u8> {
        (0..160u32)
            .map(|k| {
                let x = u32::from(tag)
                    .wrapping_mul(131)
                    .wrapping_add(i.wrapping_mul(31))
                    .wrapping_add(k.wrapping_mul(7));
                (x % 251) as u8
            })
            .collect()
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<RtpPacket> {
        self.received.lock().unwrap().clone()
    }

    /// Wait until at least `n` packets arrived (or `timeout`); returns what arrived.
    pub fn wait_received(&self, n: usize, timeout: Duration) -> Vec<RtpPacket> {
        wait_for(timeout, || {
            (self.received.lock().unwrap().len() >= n).then_some(())
        });
        self.received()
    }
}

impl Drop for RtpEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.rx.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw SIP over UDP
// ---------------------------------------------------------------------------------------------

/// A raw UDP SIP client on 127.0.0.1 (for malformed-message tests).
#[derive(Debug)]
pub struct RawSip {
    sock: UdpSocket,
}

impl RawSip {
    /// Bind a fresh port.
    pub fn bind() -> RawSip {
        let sock = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        RawSip { sock }
    }

    /// Local address (for Via / Contact).
    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Send bytes to `dest`.
    pub fn send(&self, dest: SocketAddr, data: &[u8]) {
        self.sock.send_to(data, dest).unwrap();
    }

    /// The next datagram within `timeout` (None: nothing came).
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 65_536];
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).ok()?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => continue, // ICMP error from an earlier send
            }
        }
    }
}

/// The status code of a SIP response's first line (`SIP/2.0 400 …`).
pub fn sip_status(msg: &str) -> Option<u16> {
    let line = msg.lines().next()?;
    let mut it = line.split_whitespace();
    (it.next()? == "SIP/2.0").then_some(())?;
    it.next()?.parse().ok()
}

/// The value of the first header `name` (case-insensitive) of a SIP message.
pub fn sip_header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

// ---------------------------------------------------------------------------------------------
// Recorder receivers: capture what a recorder sink sends, back to PCM and WAV
// ---------------------------------------------------------------------------------------------

/// A received datagram and its source.
type Datagram = (Vec<u8>, SocketAddr);

/// A UDP socket on 127.0.0.1 that keeps every datagram it receives and never answers (a dead
/// SIP peer, or an RTP receiver). A background thread reads; stopped on drop.
#[derive(Debug)]
pub struct UdpCapture {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Datagram>>>,
    stop: Arc<AtomicBool>,
    rx: Option<JoinHandle<()>>,
}

impl UdpCapture {
    /// Bind a fresh port on 127.0.0.1.
    pub fn bind() -> UdpCapture {
        Self::capture(UdpSocket::bind((LOCALHOST, 0)).unwrap())
    }

    /// Two captures on ports P and P + 2 of 127.0.0.1: where an `rtp` recorder sink with
    /// `target` P sends the caller's leg and the agent's.
    pub fn bind_pair() -> (UdpCapture, UdpCapture) {
        for _ in 0..100 {
            let a = UdpSocket::bind((LOCALHOST, 0)).unwrap();
            let p = a.local_addr().unwrap().port();
            if let Some(b) = p
                .checked_add(2)
                .and_then(|q| UdpSocket::bind((LOCALHOST, q)).ok())
            {
                return (Self::capture(a), Self::capture(b));
            }
        }
        panic!("no two free UDP ports P, P + 2 on 127.0.0.1");
    }

    fn capture(sock: UdpSocket) -> UdpCapture {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let rx = thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    g.lock().unwrap().push((buf[..n].to_vec(), from));
                }
            }
        });
        UdpCapture {
            addr,
            got,
            stop,
            rx: Some(rx),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every RTP packet so far (other datagrams skipped).
    pub fn rtp(&self) -> Vec<RtpPacket> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(b, f)| RtpPacket::parse(b, *f))
            .collect()
    }

    /// Every datagram so far, as (bytes, source).
    pub fn datagrams(&self) -> Vec<(Vec<u8>, SocketAddr)> {
        self.got.lock().unwrap().clone()
    }

    /// Every datagram so far, as (text, source).
    pub fn texts(&self) -> Vec<(String, SocketAddr)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(b, f)| (String::from_utf8_lossy(b).into_owned(), *f))
            .collect()
    }
}

impl Drop for UdpCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.rx.take() {
            let _ = h.join();
        }
    }
}

/// PCM of one received PCMU stream, each packet placed by its RTP timestamp (relative to the
/// first packet's; gaps stay silent). Packets of other payload types are ignored.
pub fn rtp_to_pcm(packets: &[RtpPacket]) -> Vec<i16> {
    let pcmu: Vec<&RtpPacket> = packets.iter().filter(|p| p.pt == 0).collect();
    let Some(first) = pcmu.first() else {
        return Vec::new();
    };
    let mut out: Vec<i16> = Vec::new();
    for p in &pcmu {
        let off = p.ts.wrapping_sub(first.ts);
        if off > 0x7fff_ffff || off > 8000 * 3600 {
            continue; // before the first packet, or absurd
        }
        let off = off as usize;
        if out.len() < off + p.payload.len() {
            out.resize(off + p.payload.len(), 0);
        }
        for (i, &b) in p.payload.iter().enumerate() {
            out[off + i] = dsp::g711::ulaw_to_linear(b);
        }
    }
    out
}

/// Write 8 kHz 16-bit mono PCM as a WAV file.
pub fn write_wav_mono(path: &Path, samples: &[i16]) {
    let data = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, b).unwrap();
}

/// Read a 16-bit PCM WAV (as written by callmask's `wav` sink): (channels, interleaved samples).
pub fn read_wav(path: &Path) -> (u16, Vec<i16>) {
    let b = fs::read(path).unwrap();
    assert!(
        b.len() >= 44 && &b[..4] == b"RIFF",
        "{} is not a WAV",
        path.display()
    );
    let channels = u16::from_le_bytes([b[22], b[23]]);
    let samples = b[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    (channels, samples)
}

/// DTMF digits callmask's receiver (ITU-T Q.24 settings) finds in 8 kHz PCM.
pub fn dtmf_digit_count(samples: &[i16]) -> usize {
    let mut det = dsp::dtmf::DtmfDetector::new(dsp::dtmf::DtmfConfig::default());
    let mut n = 0;
    for chunk in samples.chunks(160) {
        det.process(chunk);
        while let Some(ev) = det.poll_event() {
            if matches!(ev, dsp::dtmf::ToneEvent::Started { .. }) {
                n += 1;
            }
        }
    }
    n
}

/// A test call's caller audio: 20 ms µ-law frames of a steady two-tone "voice" (450 + 1900 Hz,
/// not a DTMF pair) with the DTMF keys `digits` pressed (100 ms tones, 150 ms apart) starting
/// at `dtmf_at_ms`, `total_ms` long. Returns (frames, the linear samples encoded).
pub fn synth_call_with_dtmf(
    total_ms: u32,
    dtmf_at_ms: u32,
    digits: &str,
) -> (Vec<Vec<u8>>, Vec<i16>) {
    let n = (total_ms * 8) as usize;
    let mut pcm = vec![0f32; n];
    for (i, s) in pcm.iter_mut().enumerate() {
        let t = i as f32 / 8000.0;
        *s = 3000.0 * (2.0 * std::f32::consts::PI * 450.0 * t).sin()
            + 1500.0 * (2.0 * std::f32::consts::PI * 1900.0 * t).sin();
    }
    for (k, d) in digits.chars().enumerate() {
        let digit = dsp::dtmf::Digit::from_char(d).unwrap();
        let (lo, hi) = digit.frequencies();
        let start = ((dtmf_at_ms + 250 * k as u32) * 8) as usize;
        let end = (start + 800).min(n);
        for (i, x) in pcm.iter_mut().enumerate().take(end).skip(start) {
            let t = i as f32 / 8000.0;
            // The tone replaces the voice (a keypad press), at about -7 dBm0 per tone.
            *x = 7000.0 * (2.0 * std::f32::consts::PI * lo * t).sin()
                + 7000.0 * (2.0 * std::f32::consts::PI * hi * t).sin();
        }
    }
    let lin: Vec<i16> = pcm
        .iter()
        .map(|&x| x.clamp(-32768.0, 32767.0) as i16)
        .collect();
    let frames = lin
        .chunks(160)
        .map(|c| c.iter().map(|&s| dsp::g711::linear_to_ulaw(s)).collect())
        .collect();
    (frames, lin)
}

/// Root-mean-square of `s` (0 for an empty slice).
pub fn rms(s: &[i16]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    (s.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / s.len() as f64).sqrt()
}

/// A test's tool, model or data is missing: the test fails (a test that cannot fail is not a
/// test), unless `CALLMASK_ALLOW_SKIP=1`, when it prints `SKIP: why` and the caller returns.
/// Spawns `cmd` (a peer the test drives) with stdin closed and stdout and stderr appended
/// to `log`; panics naming `what` when it cannot start.
pub fn spawn_logged(cmd: &mut Command, log: &Path, what: &str) -> Child {
    let out = fs::File::create(log).unwrap_or_else(|e| panic!("{what} log: {e}"));
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("log fd"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}

pub fn missing(why: &str) {
    if std::env::var("CALLMASK_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIP: {why}");
    } else {
        panic!("{why} (set CALLMASK_ALLOW_SKIP=1 to skip)");
    }
}

/// A call with media through callmask: sipp PBX (UAC, `uac_call.xml`) and agent (UAS,
/// `uas_call.xml`), each with a Rust RTP endpoint as its media; the caller hangs up
/// `pause_ms` after its ACK.
pub struct MediaCall {
    /// The PBX side's sipp.
    pub uac: SippChild,
    /// The agent's sipp.
    pub uas: SippChild,
    /// The PBX side's media.
    pub pbx_media: RtpEndpoint,
    /// The agent's media.
    pub agent_media: RtpEndpoint,
    /// callmask's media address toward the PBX side.
    pub cm_pbx: SocketAddr,
    /// callmask's media address toward the agents.
    pub cm_agents: SocketAddr,
    _dir: TempDir,
}

impl MediaCall {
    /// Starts the call and returns once it is answered (callmask's media ports known).
    pub fn start(cm: &Callmask, pause_ms: u32) -> MediaCall {
        let l = cm.layout;
        let dir = TempDir::new("media-call");
        let pbx_media = RtpEndpoint::bind();
        let agent_media = RtpEndpoint::bind();
        let re = l.media_rtp_port_regex();
        let uas_file = dir.path().join("uas_port");
        let uac_file = dir.path().join("uac_port");
        let uas = Sipp::new(
            Scenario::file("uas_call.xml").with("MEDIA_RE", re.clone()),
            l.agents_peer.port(),
        )
        .set("mport", agent_media.port())
        .set("portfile", uas_file.display())
        .timeout_s(60)
        .spawn();
        let uac = Sipp::new(
            Scenario::file("uac_call.xml").with("MEDIA_RE", re),
            l.pbx_peer.port(),
        )
        .remote(l.pbx_listen)
        .pause_ms(pause_ms)
        .set("mport", pbx_media.port())
        .set("portfile", uac_file.display())
        .timeout_s(60)
        .spawn();
        let port = |f: &Path| -> u16 {
            wait_file_line(f, Duration::from_secs(10))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("the call was not set up\n{}", cm.log_tail()))
        };
        let cm_agents = SocketAddr::from((LOCALHOST, port(&uas_file)));
        let cm_pbx = SocketAddr::from((LOCALHOST, port(&uac_file)));
        MediaCall {
            uac,
            uas,
            pbx_media,
            agent_media,
            cm_pbx,
            cm_agents,
            _dir: dir,
        }
    }

    /// Sends `n` PCMU packets each way through the call, 20 ms apart.
    pub fn talk(&mut self, n: u32) {
        for i in 0..n {
            self.pbx_media
                .send_pcmu(self.cm_pbx, &RtpEndpoint::payload(1, i));
            self.agent_media
                .send_pcmu(self.cm_agents, &RtpEndpoint::payload(2, i));
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for both sipps; panics (with callmask's log) unless both succeeded.
    pub fn assert_completed(mut self, cm: &Callmask) {
        self.uac.wait().assert_success("UAC", cm);
        self.uas.wait().assert_success("UAS", cm);
    }
}

/// An SRTP context for the SDES key `inline` (AES_CM_128_HMAC_SHA1_80, base64 key || salt):
/// `encrypt_rtp` protects as a peer holding that key would, `decrypt_rtp` checks and opens.
pub fn srtp_context(inline: &str) -> rtc_srtp::context::Context {
    use base64::Engine as _;
    use rtc_srtp::crypto::RTCCryptoProvider as _;
    static PROVIDER: rtc_srtp::crypto::providers::RingProvider =
        rtc_srtp::crypto::providers::RingProvider::new();
    let material = base64::engine::general_purpose::STANDARD
        .decode(inline)
        .unwrap();
    assert_eq!(material.len(), 30, "16-byte key + 14-byte salt");
    rtc_srtp::context::Context::new(
        &material[..16],
        &material[16..],
        rtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
        PROVIDER.crypto(),
    )
    .unwrap()
}

/// Decrypts SRTP packets with the SDES key `inline` (AES_CM_128_HMAC_SHA1_80, base64 key ||
/// salt) as the SRS would.
pub fn srtp_decrypt(inline: &str, packets: &[(Vec<u8>, SocketAddr)]) -> Vec<RtpPacket> {
    let mut ctx = srtp_context(inline);
    packets
        .iter()
        .map(|(b, from)| {
            let plain = ctx
                .decrypt_rtp(b)
                .unwrap_or_else(|e| panic!("an SRTP packet that does not authenticate: {e}"));
            assert_eq!(plain.len() + 10, b.len(), "an 80-bit auth tag");
            RtpPacket::parse(&plain, *from).expect("RTP inside")
        })
        .collect()
}
