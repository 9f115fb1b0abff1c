//! The HTTP API family (`callmask_http_*`): requests refused for their bearer token. Counted
//! by the HTTP server (`io/http.rs`).

use prometheus::{IntCounter, Registry};

use super::int_counter;

/// The `callmask_http_*` families.
pub struct HttpMetrics {
    http_unauthorized: IntCounter,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl HttpMetrics {
    /// Register the family in `r`.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let http_unauthorized = int_counter(
            r,
            "callmask_http_unauthorized_total",
            "HTTP requests refused for a missing or wrong bearer token.",
        )?;
        Ok(HttpMetrics { http_unauthorized })
    }

    /// An HTTP request was refused for its bearer token.
    pub fn http_unauthorized(&self) {
        self.http_unauthorized.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_series;
    use super::*;

    #[test]
    fn exact_output() {
        let r = Registry::new();
        let m = HttpMetrics::register(&r).expect("register");
        assert_eq!(
            test_series(&r, "callmask_http_unauthorized_total"),
            "callmask_http_unauthorized_total 0\n"
        );
        m.http_unauthorized();
        assert_eq!(
            test_series(&r, "callmask_http_unauthorized_total"),
            "callmask_http_unauthorized_total 1\n"
        );
    }
}
