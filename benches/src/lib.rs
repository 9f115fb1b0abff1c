//! Shared helpers for callmask benchmarks.
