//! SIP (placeholder).
