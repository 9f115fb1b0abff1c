//! The two sides callmask sits between, and a pair of values indexed by side.
//!
//! One vocabulary for the SIP core, the media layer, the recorder and the metrics labels, so
//! no module has to encode a side as a bare `0`/`1` of its own.
//!
//! Merge note (issue 15 ↔ issue 16): on this branch [`Side`] is still defined in
//! `core::proxy` and re-exported here; the `sip-core` branch moves the enum into this file
//! with the same `BOTH`/`index` API and the same [`BySide`]. When both land, keep the
//! `sip-core` version of this file: everything here is a subset of it.

use std::ops::{Index, IndexMut};

pub use super::proxy::Side;

impl Side {
    /// Both sides, PBX first (the order of a [`BySide`]).
    pub const BOTH: [Side; 2] = [Side::Pbx, Side::Agents];

    /// Position in a [`BySide`] (PBX 0, agents 1): for code that must keep a plain array.
    pub fn index(self) -> usize {
        match self {
            Side::Pbx => 0,
            Side::Agents => 1,
        }
    }
}

/// One value per side, indexed by [`Side`] (`pair[Side::Pbx]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct BySide<T>(pub [T; 2]);

impl<T> BySide<T> {
    /// The PBX side's value and the agents side's.
    pub fn new(pbx: T, agents: T) -> Self {
        BySide([pbx, agents])
    }

    /// Both values, PBX first, with their side.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &T)> {
        Side::BOTH.into_iter().zip(self.0.iter())
    }
}

impl<T> Index<Side> for BySide<T> {
    type Output = T;
    fn index(&self, s: Side) -> &T {
        &self.0[s.index()]
    }
}

impl<T> IndexMut<Side> for BySide<T> {
    fn index_mut(&mut self, s: Side) -> &mut T {
        &mut self.0[s.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_is_indexed_by_side() {
        let mut p = BySide::new(1, 2);
        assert_eq!((p[Side::Pbx], p[Side::Agents]), (1, 2));
        p[Side::Agents] = 5;
        let v: Vec<_> = p.iter().map(|(s, v)| (s.as_str(), *v)).collect();
        assert_eq!(v, [("pbx", 1), ("agents", 5)]);
        assert_eq!(Side::Pbx.other(), Side::Agents);
    }
}
