//! The two sides callmask sits between, and a pair of values indexed by side.
//!
//! One vocabulary for the SIP core, the media layer, the recorder and the metrics labels, so
//! no module has to encode a side as a bare `0`/`1` of its own.

use std::ops::{Index, IndexMut};

/// One of callmask's two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The PBX / carrier side.
    Pbx,
    /// The agents' side.
    Agents,
}

impl Side {
    /// Both sides, PBX first (the order of a [`BySide`]).
    pub const BOTH: [Side; 2] = [Side::Pbx, Side::Agents];

    /// The opposite side.
    pub fn other(self) -> Side {
        match self {
            Side::Pbx => Side::Agents,
            Side::Agents => Side::Pbx,
        }
    }

    /// Stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Pbx => "pbx",
            Side::Agents => "agents",
        }
    }

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
