//! Sans-IO protocol cores. Nothing here reads the clock or touches a socket.

pub mod sdp;
pub mod sip;
