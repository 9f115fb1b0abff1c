//! Offline sanitizer (placeholder).
