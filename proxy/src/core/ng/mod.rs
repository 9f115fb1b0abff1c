//! Media-node mode: rtpengine's NG control protocol, sans-IO, so Kamailio's and OpenSIPS's
//! `rtpengine` modules can drive callmask as their media relay. So far: the bencode codec.

pub mod bencode;
