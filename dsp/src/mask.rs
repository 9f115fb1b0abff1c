//! Mask pipeline (placeholder).
