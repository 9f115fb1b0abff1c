//! Arbitrary bytes into the NG control core (bencode decoder, cookie framing, command
//! dispatch): never a panic, and every datagram with a cookie gets a bencoded reply.
#![no_main]

use std::time::{Duration, Instant};

use callmask::core::ng::{bencode, NgConfig, NgCore};
use callmask::core::ports::{PortAllocator, PortRange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The codec alone: what decodes re-encodes to a value that decodes the same.
    if let Ok(v) = bencode::decode(data, bencode::Limits::default()) {
        let again = bencode::decode(&v.encode(), bencode::Limits::default());
        assert_eq!(again.as_ref(), Ok(&v));
    }
    let range = PortRange::new(30000, 30099).expect("static range");
    let mut core = NgCore::new(
        NgConfig::loopback(),
        PortAllocator::new(range, Duration::from_secs(5)),
    );
    let now = Instant::now();
    let src = "127.0.0.1:5060".parse().expect("literal address");
    if let Some(reply) = core.handle_datagram(now, src, data) {
        let (_, body) = reply.split_at(reply.iter().position(|&b| b == b' ').expect("cookie") + 1);
        assert!(bencode::decode(body, bencode::Limits::default()).is_ok());
    }
});
