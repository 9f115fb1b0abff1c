//! Sans-IO protocol cores. Nothing here reads the clock or touches a socket.

pub mod codec;
pub mod media;
pub mod ng;
pub mod ports;
pub mod proxy;
pub mod registrar;
pub mod relay;
pub mod sdes;
pub mod sdp;
pub mod side;
#[cfg(test)]
mod sim_tests;
pub mod sip;
pub mod siprec;
