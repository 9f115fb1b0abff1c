//! Look-ahead delay line (placeholder).
