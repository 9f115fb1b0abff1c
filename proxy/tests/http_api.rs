//! The HTTP listener over a real socket on 127.0.0.1, driven by a hand-written HTTP/1.1 client:
//! health probes, bearer auth, metrics exposition, call API and its audit events.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use callmask::io::calls::{Actor, CallControl, CallState, CallSummary, NotFound, SecureChange};
use callmask::io::http::{self, HttpState};
use callmask::io::readiness::Readiness;
use callmask::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A call table with fixed calls; remembers who changed what.
#[derive(Default)]
struct FakeCalls {
    secure: Mutex<HashMap<String, bool>>,
    actors: Mutex<Vec<String>>,
}

impl FakeCalls {
    fn with(ids: &[&str]) -> Arc<Self> {
        let calls = FakeCalls::default();
        for id in ids {
            calls.secure.lock().unwrap().insert((*id).to_owned(), false);
        }
        Arc::new(calls)
    }
}

impl CallControl for FakeCalls {
    fn list(&self) -> Vec<CallSummary> {
        let mut out: Vec<_> = self
            .secure
            .lock()
            .unwrap()
            .iter()
            .map(|(id, secure)| CallSummary {
                id: id.clone(),
                started_at_unix_ms: 1_700_000_000_000,
                state: CallState::Established,
                secure: *secure,
                codecs: vec!["PCMU".into()],
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn set_secure(&self, id: &str, secure: bool, actor: &Actor) -> Result<SecureChange, NotFound> {
        let mut calls = self.secure.lock().unwrap();
        let flag = calls.get_mut(id).ok_or(NotFound)?;
        self.actors.lock().unwrap().push(actor.to_string());
        let changed = *flag != secure;
        *flag = secure;
        Ok(if changed {
            SecureChange::Changed
        } else {
            SecureChange::Unchanged
        })
    }
}

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    calls: Arc<FakeCalls>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(token: Option<&str>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::new());
        let calls = FakeCalls::with(&["c-1", "c-2"]);
        let state = HttpState::new(
            Arc::clone(&metrics),
            Arc::clone(&readiness),
            Arc::clone(&calls) as Arc<dyn CallControl>,
        )
        .with_token(token);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            metrics,
            readiness,
            calls,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Response {
        request(self.addr, "GET", path, token).await
    }

    async fn post(&self, path: &str, token: Option<&str>) -> Response {
        request(self.addr, "POST", path, token).await
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(&self.body).unwrap()
    }
}

/// One request on a fresh connection (`Connection: close`), response read to EOF.
async fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("response within 10 s")
    .unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        s = &rest[size + 2..];
    }
}

/// Captures formatted log output (for the audit checks).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn health_probes_need_no_token_and_readiness_reports_what_is_missing() {
    let s = Server::start(Some(TOKEN)).await;

    let r = s.get("/healthz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.trim(), "ok");

    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, 503);
    let j = r.json();
    assert_eq!(j["ready"], false);
    assert_eq!(
        j["not_ready"],
        serde_json::json!(["listeners_bound", "sinks_reachable", "recognizer_loaded"])
    );

    s.readiness.set_listeners_bound(true);
    s.readiness.set_sinks_reachable(true);
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["not_ready"],
        serde_json::json!(["recognizer_loaded"])
    );

    s.readiness.set_recognizer_loaded(true);
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ready"], true);

    s.shutdown().await;
}

#[tokio::test]
async fn api_requires_the_token_metrics_stay_open() {
    let s = Server::start(Some(TOKEN)).await;

    for bad in [
        None,
        Some("wrong"),
        Some(""),
        Some(&TOKEN[..TOKEN.len() - 1]),
    ] {
        let r = s.get("/api/calls", bad).await;
        assert_eq!(r.status, 401, "token {bad:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(r.json()["error"], "unauthorized");
    }
    // Unknown API paths are behind the token too: no probing without it.
    assert_eq!(s.get("/api/nope", None).await.status, 401);

    let call = s.metrics.calls().new_call();
    call.leg(
        callmask::metrics::Side::Pbx,
        callmask::metrics::Direction::Inbound,
    )
    .record_packet(172);
    // Issue 13: /metrics needs no token (scrapers), like the health probes.
    let r = s.get("/metrics", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(r.body.contains("# TYPE callmask_calls_active gauge"));
    assert!(r.body.contains("callmask_calls_active 1"));
    assert!(r
        .body
        .contains("callmask_rtp_packets_total{direction=\"inbound\",side=\"pbx\"} 1"));
    assert!(r.body.contains("callmask_http_unauthorized_total 5"));
    assert!(!r.body.contains(TOKEN));
    drop(call);

    s.shutdown().await;
}

/// Issue 13: closed by default. Without a configured token the API refuses everyone (403),
/// token or not; metrics and health stay open.
#[tokio::test]
async fn without_a_token_the_api_is_closed() {
    let s = Server::start(None).await;
    assert_eq!(s.get("/metrics", None).await.status, 200);
    assert_eq!(s.get("/healthz", None).await.status, 200);
    let r = s.get("/api/calls", None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "api_disabled_no_token_configured");
    assert_eq!(
        s.post("/api/calls/c-1/unsecure", Some("whatever"))
            .await
            .status,
        403
    );
    s.shutdown().await;
}

/// Issue 13: secure/unsecure are rate-limited; over the burst, 429 with Retry-After.
#[tokio::test]
async fn secure_changes_are_rate_limited() {
    // Audit events fire here too: give them a subscriber, so that this thread never caches
    // "no interest" for callsites the audit test captures in parallel.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish(),
    );
    let s = Server::start(Some(TOKEN)).await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        let path = if i % 2 == 0 {
            "/api/calls/c-1/secure"
        } else {
            "/api/calls/c-1/unsecure"
        };
        let r = s.post(path, Some(TOKEN)).await;
        if r.status == 429 {
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        statuses.push(r.status);
    }
    let limited = statuses.iter().filter(|&&st| st == 429).count();
    assert!(limited >= 10, "{statuses:?}");
    assert_eq!(statuses[0], 204);
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let s = Server::start(Some(TOKEN)).await;
    let r = s.get("/nope", Some(TOKEN)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    let r = s.get("/api/calls/c-1/secure", Some(TOKEN)).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"], "method_not_allowed");
    let r = s.post("/api/calls", Some(TOKEN)).await;
    assert_eq!(r.status, 405);
    s.shutdown().await;
}

#[tokio::test]
async fn secure_unsecure_round_trip_with_audit_events() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    // current-thread runtime: the server's tasks run on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = Server::start(Some(TOKEN)).await;

    assert_eq!(s.get("/api/calls", None).await.status, 401);
    assert_eq!(s.post("/api/calls/c-1/secure", None).await.status, 401);

    let r = s.get("/api/calls", Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    let calls = r.json();
    assert_eq!(calls.as_array().unwrap().len(), 2);
    assert_eq!(calls[0]["id"], "c-1");
    assert_eq!(calls[0]["secure"], false);
    assert_eq!(calls[0]["state"], "established");
    assert_eq!(calls[0]["codecs"], serde_json::json!(["PCMU"]));

    let r = s.post("/api/calls/c-1/secure", Some(TOKEN)).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(
        s.get("/api/calls", Some(TOKEN)).await.json()[0]["secure"],
        true
    );
    // Idempotent.
    assert_eq!(
        s.post("/api/calls/c-1/secure", Some(TOKEN)).await.status,
        204
    );

    let r = s.post("/api/calls/c-1/unsecure", Some(TOKEN)).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        s.get("/api/calls", Some(TOKEN)).await.json()[0]["secure"],
        false
    );

    let r = s.post("/api/calls/15551234567/secure", Some(TOKEN)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no_such_call");
    let long = "x".repeat(500);
    let r = s
        .post(&format!("/api/calls/{long}/secure"), Some(TOKEN))
        .await;
    assert_eq!(r.status, 404);

    let metrics = s.get("/metrics", Some(TOKEN)).await.body;
    assert!(metrics.contains("callmask_secure_mode_changes_total{action=\"secure\"} 2"));
    assert!(metrics.contains("callmask_secure_mode_changes_total{action=\"unsecure\"} 1"));

    // The fake saw the API actor with a token fingerprint.
    let actors = s.calls.actors.lock().unwrap().clone();
    assert_eq!(actors.len(), 3);
    assert!(
        actors.iter().all(|a| a.starts_with("api:token-")),
        "{actors:?}"
    );

    s.shutdown().await;

    let log = capture.text();
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "callmask::audit")
        .collect();
    let applied: Vec<_> = audit
        .iter()
        .filter(|v| v["event"] == "secure_mode")
        .collect();
    assert_eq!(applied.len(), 3, "{log}");
    assert_eq!(applied[0]["action"], "secure");
    assert_eq!(applied[0]["call"], "c-1");
    assert_eq!(applied[0]["changed"], true);
    assert_eq!(applied[1]["changed"], false);
    assert_eq!(applied[2]["action"], "unsecure");
    assert!(applied[0]["actor"]
        .as_str()
        .unwrap()
        .starts_with("api:token-"));
    assert!(applied[0]["at_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        audit
            .iter()
            .filter(|v| v["event"] == "secure_mode_unknown_call")
            .count(),
        2
    );
    // Neither the token nor a caller-supplied id (here a number) reaches the log.
    assert!(!log.contains(TOKEN), "{log}");
    assert!(!log.contains("15551234567"), "{log}");
}
