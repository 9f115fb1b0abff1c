//! The `callmask` command line.
fn main() {}
