//! Fixed-block Goertzel filters (placeholder).
