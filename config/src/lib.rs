//! callmask configuration (placeholder; the typed config lands here).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
