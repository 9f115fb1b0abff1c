//! RFC 4733 telephone-events (placeholder).
