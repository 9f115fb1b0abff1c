//! Thin tokio drivers: the only place that touches sockets and reads the clock.

pub mod http;
