//! Errors from the SIP parser and editor, and the closed catalogue of reject reasons.
//!
//! Error strings never contain bytes from the message (URIs carry phone numbers): they name the
//! header and the problem instead.

use super::vocab::StatusCode;

/// Why a SIP message could not be parsed or edited.
///
/// Every variant maps to one [`RejectReason`] (see [`SipError::reason`]), which in turn gives the
/// status code to answer with and the metric label to count under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// The message is longer than [`Limits::max_message`](super::Limits::max_message).
    #[error("message exceeds {limit} bytes; answer 513 or raise limits.max_message")]
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// More header fields than [`Limits::max_headers`](super::Limits::max_headers).
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A physical line is longer than [`Limits::max_line`](super::Limits::max_line).
    #[error("a line exceeds {limit} bytes")]
    LineTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The first line is neither `Method SP Request-URI SP SIP/2.0` nor
    /// `SIP/2.0 SP code SP reason` (RFC 3261 §7.1, §7.2).
    #[error("malformed start line: {0}")]
    BadStartLine(&'static str),
    /// The Request-URI is not an absolute URI (RFC 3261 §25.1 `Request-URI`).
    #[error("malformed Request-URI: {0}")]
    BadRequestUri(&'static str),
    /// The SIP version is not `SIP/2.0` (answer 505).
    #[error("unsupported SIP version (only SIP/2.0)")]
    UnsupportedVersion,
    /// A header line has no colon or an invalid name (1-based header index).
    #[error("header line {index} is not `name: value`")]
    BadHeaderLine {
        /// 1-based index of the header line.
        index: usize,
    },
    /// A header required by RFC 3261 §8.1.1 is absent.
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    /// A known header's value does not match its grammar.
    #[error("malformed {header} header: {problem}")]
    BadHeader {
        /// Canonical header name.
        header: &'static str,
        /// What is wrong, in words.
        problem: &'static str,
    },
    /// Content-Length is not a number, or several disagree.
    #[error("malformed Content-Length: {0}")]
    BadContentLength(&'static str),
    /// Content-Length says more bytes than the datagram holds (RFC 3261 §18.3).
    #[error("Content-Length {declared} exceeds the {available} body bytes received")]
    BodyTruncated {
        /// The declared Content-Length.
        declared: usize,
        /// Bytes actually present after the header block.
        available: usize,
    },
    /// A message on a stream transport has no Content-Length (RFC 3261 §18.3: MUST).
    #[error("stream message without Content-Length; the sender must include it")]
    MissingContentLength,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// The header block is not terminated by an empty line (a datagram cut short).
    #[error("header block not terminated by an empty line")]
    Truncated,
    /// The buffer holds only CRLF keep-alive bytes where a message was expected.
    #[error("keep-alive bytes, not a message")]
    NotAMessage,
    /// An edit was given a value that would corrupt the message (e.g. CR or LF inside it).
    #[error("invalid edit: {0}")]
    BadEdit(&'static str),
}

impl SipError {
    /// The reject reason: status code and metric label.
    pub fn reason(&self) -> RejectReason {
        match self {
            Self::TooLarge { .. } => RejectReason::TooLarge,
            Self::TooManyHeaders { .. } => RejectReason::TooManyHeaders,
            Self::LineTooLong { .. } => RejectReason::LineTooLong,
            Self::BadStartLine(_) => RejectReason::BadStartLine,
            Self::BadRequestUri(_) => RejectReason::BadRequestUri,
            Self::UnsupportedVersion => RejectReason::UnsupportedVersion,
            Self::BadHeaderLine { .. } => RejectReason::BadHeaderLine,
            Self::MissingHeader(_) => RejectReason::MissingHeader,
            Self::BadHeader { .. } => RejectReason::BadHeaderValue,
            Self::BadContentLength(_) => RejectReason::BadContentLength,
            Self::BodyTruncated { .. } => RejectReason::BodyTruncated,
            Self::MissingContentLength => RejectReason::MissingContentLength,
            Self::CSeqMethodMismatch => RejectReason::CSeqMethodMismatch,
            Self::NotAMessage => RejectReason::NotAMessage,
            Self::Truncated => RejectReason::Truncated,
            Self::BadEdit(_) => RejectReason::BadEdit,
        }
    }
}

/// Closed catalogue of reasons a SIP message is rejected or dropped.
///
/// Each variant maps one-to-one to a metric label ([`RejectReason::label`]) and to the status code
/// a proxy answers with ([`RejectReason::status`]). Labels are stable: dashboards depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// Message over the size limit (513).
    TooLarge,
    /// Too many header fields (513: the message is too large to process).
    TooManyHeaders,
    /// A line over the line-length limit (513).
    LineTooLong,
    /// Malformed start line (400).
    BadStartLine,
    /// Malformed Request-URI (400).
    BadRequestUri,
    /// Version other than SIP/2.0 (505).
    UnsupportedVersion,
    /// Header line without a colon or with a bad name (400).
    BadHeaderLine,
    /// Mandatory header absent (400).
    MissingHeader,
    /// Known header with a malformed value (400).
    BadHeaderValue,
    /// Content-Length malformed or contradictory (400).
    BadContentLength,
    /// Body shorter than Content-Length on a datagram (400).
    BodyTruncated,
    /// Stream message without Content-Length (400).
    MissingContentLength,
    /// CSeq method differs from the request method (400).
    CSeqMethodMismatch,
    /// Keep-alive bytes where a message was expected (dropped, never answered).
    NotAMessage,
    /// Header block without its terminating empty line (400).
    Truncated,
    /// Invalid edit requested by the proxy logic itself (500).
    BadEdit,
    /// Max-Forwards reached zero (483, RFC 3261 §16.3 step 3).
    TooManyHops,
    /// Loop detected (482, RFC 3261 §16.3 step 4).
    LoopDetected,
    /// Method the proxy will not handle (501).
    NotImplemented,
}

impl RejectReason {
    /// Metric label (`reason="..."`), stable and bounded.
    pub fn label(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::TooManyHeaders => "too_many_headers",
            Self::LineTooLong => "line_too_long",
            Self::BadStartLine => "bad_start_line",
            Self::BadRequestUri => "bad_request_uri",
            Self::UnsupportedVersion => "unsupported_version",
            Self::BadHeaderLine => "bad_header_line",
            Self::MissingHeader => "missing_header",
            Self::BadHeaderValue => "bad_header_value",
            Self::BadContentLength => "bad_content_length",
            Self::BodyTruncated => "body_truncated",
            Self::MissingContentLength => "missing_content_length",
            Self::CSeqMethodMismatch => "cseq_method_mismatch",
            Self::NotAMessage => "not_a_message",
            Self::Truncated => "truncated",
            Self::BadEdit => "bad_edit",
            Self::TooManyHops => "too_many_hops",
            Self::LoopDetected => "loop_detected",
            Self::NotImplemented => "not_implemented",
        }
    }

    /// Status code to answer a request with, or `None` when the input is dropped silently.
    pub fn status(self) -> Option<StatusCode> {
        let code = match self {
            Self::TooLarge | Self::TooManyHeaders | Self::LineTooLong => 513,
            Self::UnsupportedVersion => 505,
            Self::TooManyHops => 483,
            Self::LoopDetected => 482,
            Self::NotImplemented => 501,
            Self::BadEdit => 500,
            Self::NotAMessage => return None,
            _ => 400,
        };
        StatusCode::new(code)
    }

    /// Reason phrase for the response line. It names the problem, never message content.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::TooLarge | Self::TooManyHeaders | Self::LineTooLong => "Message Too Large",
            Self::UnsupportedVersion => "Version Not Supported",
            Self::TooManyHops => "Too Many Hops",
            Self::LoopDetected => "Loop Detected",
            Self::NotImplemented => "Not Implemented",
            Self::BadEdit => "Server Internal Error",
            Self::BadStartLine => "Bad Request - Malformed Start Line",
            Self::BadRequestUri => "Bad Request - Malformed Request-URI",
            Self::BadHeaderLine => "Bad Request - Malformed Header Line",
            Self::MissingHeader => "Bad Request - Missing Mandatory Header",
            Self::BadHeaderValue => "Bad Request - Malformed Header Value",
            Self::BadContentLength => "Bad Request - Malformed Content-Length",
            Self::BodyTruncated => "Bad Request - Body Shorter Than Content-Length",
            Self::MissingContentLength => "Bad Request - Missing Content-Length",
            Self::CSeqMethodMismatch => "Bad Request - CSeq Method Mismatch",
            Self::NotAMessage => "Bad Request",
            Self::Truncated => "Bad Request - Truncated Header Block",
        }
    }

    /// All variants, for pre-registering metric label values.
    pub const ALL: &'static [RejectReason] = &[
        Self::TooLarge,
        Self::TooManyHeaders,
        Self::LineTooLong,
        Self::BadStartLine,
        Self::BadRequestUri,
        Self::UnsupportedVersion,
        Self::BadHeaderLine,
        Self::MissingHeader,
        Self::BadHeaderValue,
        Self::BadContentLength,
        Self::BodyTruncated,
        Self::MissingContentLength,
        Self::CSeqMethodMismatch,
        Self::NotAMessage,
        Self::Truncated,
        Self::BadEdit,
        Self::TooManyHops,
        Self::LoopDetected,
        Self::NotImplemented,
    ];
}

impl TryFrom<u16> for StatusCode {
    type Error = SipError;

    fn try_from(code: u16) -> Result<Self, SipError> {
        Self::new(code).ok_or(SipError::BadStartLine("status code outside 100..=699"))
    }
}
