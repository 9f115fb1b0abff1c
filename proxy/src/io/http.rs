//! The HTTP listener: `/metrics`, `/healthz`, `/readyz` and the call-control API.
//!
//! | route                          | auth   | answer                                            |
//! |--------------------------------|--------|---------------------------------------------------|
//! | `GET /healthz`                 | none   | 200 `ok` while the process runs                   |
//! | `GET /readyz`                  | none   | 200 when every [`Readiness`] flag is set, else 503 with the list |
//! | `GET /metrics`                 | none   | Prometheus text exposition                        |
//! | `GET /api/calls`               | bearer | JSON list of [`CallSummary`]                      |
//! | `POST /api/calls/{id}/secure`  | bearer | 204; 404 for an unknown id                        |
//! | `POST /api/calls/{id}/unsecure`| bearer | 204; 404 for an unknown id                        |
//! | other `/api/…`                 | bearer | 404 (405 for a known path with the wrong method), JSON body |
//! | anything else                  | none   | 404, JSON body                                    |
//!
//! Closed by default (issue 13): every `/api/` route requires `Authorization: Bearer <token>`,
//! and without a configured token (`http.token_file`, `http.token` or the environment variable
//! `CALLMASK_HTTP_TOKEN`) the API answers 403 to everyone. The comparison runs in constant
//! time over SHA-256 digests (so neither the content nor the length of the token leaks
//! through timing) and a refusal is 401 with `WWW-Authenticate: Bearer`. `/metrics` and the
//! health probes stay open (bind the listener to loopback or a scrape network).
//! `secure`/`unsecure` are rate-limited ([`SECURE_RATE_PER_S`], burst [`SECURE_BURST`]):
//! over it, 429 with `Retry-After`.
//!
//! Secure-mode changes are audit events: `tracing` target `callmask::audit`, with the actor
//! (`api`, plus a fingerprint of the token — never the token), the time, the action and
//! callmask's own opaque call id (never a number or a digit heard on the call).
//!
//! The call table plugs in through [`CallControl`] (`io/calls`, which also holds the
//! call-control vocabulary and the audit helpers); the readiness flags are `io/readiness.rs`.
//! This module holds no call state.
#![allow(clippy::disallowed_methods)] // io: reads the clock for the rate limit

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::calls::audit::{audit_secure_change, unix_ms_now};
use super::calls::{Actor, CallControl, CallSummary, NotFound};
use super::readiness::Readiness;
use crate::metrics::{Metrics, SecureAction};

/// Longest call id the API accepts; anything longer cannot be one of ours.
const MAX_CALL_ID_LEN: usize = 128;

/// The configured bearer token, kept only as its digest.
#[derive(Clone)]
struct BearerToken {
    digest: [u8; 32],
    fingerprint: String,
}

impl BearerToken {
    fn new(token: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // A separate, domain-separated hash: 32 bits to tell tokens apart in the audit log.
        let fp = Sha256::new()
            .chain_update(b"callmask audit token fingerprint\0")
            .chain_update(token.as_bytes())
            .finalize();
        let fingerprint = fp[..4].iter().map(|b| format!("{b:02x}")).collect();
        BearerToken {
            digest,
            fingerprint,
        }
    }

    /// Constant-time check of a presented token.
    fn matches(&self, presented: &[u8]) -> bool {
        let got: [u8; 32] = Sha256::digest(presented).into();
        got.iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken(fingerprint={})", self.fingerprint)
    }
}

/// Secure-mode changes allowed per second, over all callers (a script that un-mutes
/// recordings wholesale is slowed to a crawl; an agent desktop never notices).
pub const SECURE_RATE_PER_S: f64 = 5.0;
/// Secure-mode changes allowed in a burst.
pub const SECURE_BURST: f64 = 20.0;

/// A token bucket: `rate` per second, `burst` at most. Reads the clock (io shell).
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    fn take(&mut self, now: std::time::Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Everything the HTTP handlers need. Cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    token: Option<BearerToken>,
    calls: Arc<dyn CallControl>,
    secure_bucket: Arc<std::sync::Mutex<Bucket>>,
}

impl HttpState {
    /// State with no bearer token (the API refuses everyone) and the given call table.
    pub fn new(
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        calls: Arc<dyn CallControl>,
    ) -> Self {
        HttpState {
            metrics,
            readiness,
            token: None,
            calls,
            secure_bucket: Arc::new(std::sync::Mutex::new(Bucket {
                tokens: SECURE_BURST,
                at: std::time::Instant::now(),
            })),
        }
    }

    /// Require `Authorization: Bearer <token>` on `/api/`. `None` or an empty token leaves
    /// the API closed (403).
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.token = token.filter(|t| !t.is_empty()).map(BearerToken::new);
        self
    }

    fn actor(&self) -> Actor {
        Actor::api(self.token.as_ref().map(|t| t.fingerprint.clone()))
    }
}

impl fmt::Debug for HttpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpState")
            .field("readiness", &self.readiness)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The router, for embedding or for tests that drive it without a socket.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{id}/secure", post(secure))
        .route("/api/calls/{id}/unsecure", post(unsecure))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// Serve `listener` until `shutdown` completes, then finish in-flight requests and return.
pub async fn serve<F>(listener: TcpListener, state: HttpState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn auth(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let Some(token) = &state.token else {
        state.metrics.http().http_unauthorized();
        return json_error(StatusCode::FORBIDDEN, "api_disabled_no_token_configured");
    };
    let presented = bearer(req.headers());
    if !presented.is_some_and(|p| token.matches(p)) {
        state.metrics.http().http_unauthorized();
        let mut resp = json_error(StatusCode::UNAUTHORIZED, "unauthorized");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    next.run(req).await
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive, RFC 6750 §2.1).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    Some(&rest[start..])
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    not_ready: Vec<&'static str>,
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let not_ready = state.readiness.not_ready();
    let status = if not_ready.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyBody {
        ready: not_ready.is_empty(),
        not_ready,
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let metrics = Arc::clone(&state.metrics);
    // Rendering reads /proc for the process collector: keep it off the async workers.
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "metrics_unavailable"),
    }
}

async fn list_calls(State(state): State<HttpState>) -> Json<Vec<CallSummary>> {
    Json(state.calls.list())
}

async fn secure(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    set_secure(&state, &id, SecureAction::Secure)
}

async fn unsecure(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    set_secure(&state, &id, SecureAction::Unsecure)
}

fn set_secure(state: &HttpState, id: &str, action: SecureAction) -> Response {
    let allowed = state
        .secure_bucket
        .lock()
        .map(|mut b| b.take(std::time::Instant::now(), SECURE_RATE_PER_S, SECURE_BURST))
        .unwrap_or(false);
    if !allowed {
        let mut resp = json_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    let actor = state.actor();
    let secure = action == SecureAction::Secure;
    let result = if id.len() > MAX_CALL_ID_LEN {
        Err(NotFound)
    } else {
        state.calls.set_secure(id, secure, &actor)
    };
    let at_unix_ms = unix_ms_now();
    let action_str = crate::metrics::Label::as_str(action);
    match result {
        Ok(change) => {
            audit_secure_change(&state.metrics, action, &actor, id, change, at_unix_ms);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(NotFound) => {
            // The unknown id is not logged: it is caller-supplied text, not one of our ids.
            tracing::info!(
                target: "callmask::audit",
                event = "secure_mode_unknown_call",
                action = action_str,
                actor = %actor,
                at_unix_ms,
                "secure mode {action_str} refused: no such call"
            );
            json_error(StatusCode::NOT_FOUND, "no_such_call")
        }
    }
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not_found")
}

async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
}

fn json_error(status: StatusCode, error: &'static str) -> Response {
    (status, Json(ErrorBody { error })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  abc"),
        );
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn token_match_and_fingerprint_never_reveal_token() {
        let t = BearerToken::new("s3cret-token");
        assert!(t.matches(b"s3cret-token"));
        assert!(!t.matches(b"s3cret-toke"));
        assert!(!t.matches(b""));
        assert_eq!(t.fingerprint.len(), 8);
        assert!(!format!("{t:?}").contains("s3cret"));
        let actor = Actor::api(Some(t.fingerprint.clone()));
        assert!(actor.to_string().starts_with("api:token-"));
    }
}
