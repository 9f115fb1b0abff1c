//! SIP: a zero-copy, byte-faithful message parser and printer, and the RFC 3261 §17
//! transaction state machines. Sans-IO: nothing here reads the clock or touches a socket.
//!
//! # Messages
//!
//! A [`SipMessage`] keeps the bytes it was parsed from and the byte ranges of its start line,
//! every header (original order, name as written, compact forms and unknown headers kept) and
//! its body. Printing an unmodified message returns those bytes; changes are an edit list
//! ([`SipMessage::edit`]) applied at print time, which copies everything it does not touch.
//!
//! ```text
//! UDP:  parse_datagram(bytes, &limits) ─┐
//! TCP:  parse_stream(&buf, &limits) ────┴─► Frame::Message(msg) ─► typed accessors
//!          │  Ok(None): read more           Frame::Ping: write PONG (stream only)
//!          └─ Err(e): reject_unparsed(&raw, &e) → Some(400/505/513) to send, or None (drop);
//!                     count under e.reason().label()
//! ```
//!
//! # Transactions
//!
//! See [`txn`]: client and server state machines driven by `handle_*`, `poll_*` and a `now`
//! parameter. The proxy holds them in its own table (`core/proxy/txn.rs`).

mod alias;
mod error;
mod framing;
mod header;
mod lex;
mod message;
mod parse;
mod print;
#[cfg(test)]
mod proptests;
mod response;
pub mod txn;
mod uri;
mod vocab;

pub use alias::connection_alias;
pub use error::{RejectReason, SipError};
pub use framing::StreamFramer;
pub use header::{header_name_eq, CSeq, HeaderName, NameAddr, Transport, Via, MAGIC_COOKIE};
pub use lex::Params;
pub use message::{HeaderField, SipMessage, StartLine};
pub use parse::{parse_datagram, parse_stream, Frame, Limits, PONG};
pub use print::Edit;
pub use response::{build_response, reject_request, reject_unparsed};
pub use uri::Uri;
pub use vocab::{MaxForwards, Method, StatusCode};
