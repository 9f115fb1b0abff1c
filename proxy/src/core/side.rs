//! The two sides of callmask and a pair indexed by them.
//!
//! [`Side`] itself is defined with the SIP core (`core::proxy`) and re-exported here; this
//! module adds what the media core needs on top of it: a stable array index and
//! [`SidePair`], so per-side state is `pair[side]` instead of `arr[side_i(side)]` with a
//! bare `usize` travelling between functions.

use std::ops::{Index, IndexMut};

pub use super::proxy::Side;

impl Side {
    /// Both sides, PBX first (the order of [`SidePair`]).
    pub const BOTH: [Side; 2] = [Side::Pbx, Side::Agents];

    /// Array position: PBX 0, agents 1.
    pub const fn index(self) -> usize {
        match self {
            Side::Pbx => 0,
            Side::Agents => 1,
        }
    }
}

/// One value per side, indexed by [`Side`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SidePair<T>([T; 2]);

impl<T> SidePair<T> {
    /// The PBX side's value first, then the agents'.
    pub const fn new(pbx: T, agents: T) -> Self {
        SidePair([pbx, agents])
    }

    /// A pair built from a function of the side.
    pub fn from_fn(mut f: impl FnMut(Side) -> T) -> Self {
        SidePair([f(Side::Pbx), f(Side::Agents)])
    }

    /// Both values mutably at once (PBX, agents).
    pub fn both_mut(&mut self) -> [&mut T; 2] {
        let [a, b] = &mut self.0;
        [a, b]
    }

    /// `(side, value)` for both sides.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &T)> {
        Side::BOTH.into_iter().zip(self.0.iter())
    }

    /// The value of `side` and the other side's, mutably.
    pub fn split_mut(&mut self, side: Side) -> (&mut T, &mut T) {
        let [a, b] = &mut self.0;
        match side {
            Side::Pbx => (a, b),
            Side::Agents => (b, a),
        }
    }
}

impl<T> Index<Side> for SidePair<T> {
    type Output = T;
    fn index(&self, side: Side) -> &T {
        &self.0[side.index()]
    }
}

impl<T> IndexMut<Side> for SidePair<T> {
    fn index_mut(&mut self, side: Side) -> &mut T {
        &mut self.0[side.index()]
    }
}

impl From<Side> for crate::metrics::Side {
    fn from(s: Side) -> Self {
        match s {
            Side::Pbx => crate::metrics::Side::Pbx,
            Side::Agents => crate::metrics::Side::Agents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_by_side() {
        let mut p = SidePair::new(1, 2);
        assert_eq!(p[Side::Pbx], 1);
        p[Side::Agents] += 10;
        assert_eq!(p[Side::Agents], 12);
        let (me, other) = p.split_mut(Side::Agents);
        assert_eq!((*me, *other), (12, 1));
        assert_eq!(Side::BOTH.map(Side::index), [0, 1]);
        assert_eq!(SidePair::from_fn(Side::other)[Side::Pbx], Side::Agents);
    }
}
