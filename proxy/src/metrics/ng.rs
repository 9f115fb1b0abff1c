//! The NG control family (media-node mode): what the NG shell (`io/ng.rs`) counts from the
//! NG core's events. Registered as one unit ([`NgMetrics::register`]); label children are
//! resolved once there. Labels come from closed enums: never a Call-ID or a tag.

use prometheus::{IntCounter, IntGauge, Registry};

use super::{by2, int_counter_vec, int_gauge, By2, Label};
use crate::core::ng::{request::Command, Outcome};

label_enum! {
    /// An NG command (`unknown`: not understood, so refused).
    NgCommand, "command" {
        /// `ping`.
        Ping => "ping",
        /// `offer`.
        Offer => "offer",
        /// `answer`.
        Answer => "answer",
        /// `delete`.
        Delete => "delete",
        /// `query`.
        Query => "query",
        /// `list`.
        List => "list",
        /// `block DTMF`.
        BlockDtmf => "block_dtmf",
        /// `unblock DTMF`.
        UnblockDtmf => "unblock_dtmf",
        /// `start recording`.
        StartRecording => "start_recording",
        /// `stop recording`.
        StopRecording => "stop_recording",
        /// `block media`.
        BlockMedia => "block_media",
        /// `unblock media`.
        UnblockMedia => "unblock_media",
        /// `silence media`.
        SilenceMedia => "silence_media",
        /// `unsilence media`.
        UnsilenceMedia => "unsilence_media",
        /// Not understood, or answered from the cookie cache (command not re-read).
        Unknown => "unknown",
    }
}

label_enum! {
    /// How an NG command was answered.
    NgResult, "result" {
        /// `result: ok` (or `pong`).
        Ok => "ok",
        /// `result: error` with an `error-reason`.
        Error => "error",
        /// A retransmission answered with the cached reply of its cookie.
        Replayed => "replayed",
    }
}

impl From<Option<Command>> for NgCommand {
    fn from(c: Option<Command>) -> Self {
        match c {
            None => NgCommand::Unknown,
            Some(Command::Ping) => NgCommand::Ping,
            Some(Command::Offer) => NgCommand::Offer,
            Some(Command::Answer) => NgCommand::Answer,
            Some(Command::Delete) => NgCommand::Delete,
            Some(Command::Query) => NgCommand::Query,
            Some(Command::List) => NgCommand::List,
            Some(Command::BlockDtmf) => NgCommand::BlockDtmf,
            Some(Command::UnblockDtmf) => NgCommand::UnblockDtmf,
            Some(Command::StartRecording) => NgCommand::StartRecording,
            Some(Command::StopRecording) => NgCommand::StopRecording,
            Some(Command::BlockMedia) => NgCommand::BlockMedia,
            Some(Command::UnblockMedia) => NgCommand::UnblockMedia,
            Some(Command::SilenceMedia) => NgCommand::SilenceMedia,
            Some(Command::UnsilenceMedia) => NgCommand::UnsilenceMedia,
        }
    }
}

impl From<Outcome> for NgResult {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => NgResult::Ok,
            Outcome::Error => NgResult::Error,
            Outcome::Replayed => NgResult::Replayed,
        }
    }
}

/// The `callmask_ng_*` families.
pub struct NgMetrics {
    commands: By2<NgCommand, NgResult, IntCounter>,
    calls_active: IntGauge,
}

impl std::fmt::Debug for NgMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NgMetrics").finish_non_exhaustive()
    }
}

impl NgMetrics {
    /// Register the family in `r` and resolve its label children.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let commands = int_counter_vec(
            r,
            "callmask_ng_commands_total",
            "NG control commands answered (media-node mode), by command and result.",
            &[NgCommand::NAME, NgResult::NAME],
        )?;
        let calls_active = int_gauge(
            r,
            "callmask_ng_calls_active",
            "Calls opened by an NG controller (offer) and not yet deleted.",
        )?;
        Ok(NgMetrics {
            commands: by2(&commands),
            calls_active,
        })
    }

    /// A command was answered.
    pub fn command(&self, command: NgCommand, result: NgResult) {
        self.commands.get(command, result).inc();
    }

    /// Calls the NG core holds.
    pub fn set_calls_active(&self, n: u64) {
        self.calls_active.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
