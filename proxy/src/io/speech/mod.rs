//! Speech recognizers that run in the I/O shell (the remote engine).

pub mod remote;
