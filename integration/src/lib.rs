//! Helpers for end-to-end tests: spawn the real binary on 127.0.0.1, reap by PID.
