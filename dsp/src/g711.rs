//! G.711 µ-law and A-law (placeholder API; table-driven implementation lands with its tests).

/// µ-law byte to linear 16-bit.
pub fn ulaw_to_linear(_b: u8) -> i16 {
    0
}
/// Linear 16-bit to µ-law byte.
pub fn linear_to_ulaw(_s: i16) -> u8 {
    0xff
}
/// A-law byte to linear 16-bit.
pub fn alaw_to_linear(_b: u8) -> i16 {
    0
}
/// Linear 16-bit to A-law byte.
pub fn linear_to_alaw(_s: i16) -> u8 {
    0xd5
}
