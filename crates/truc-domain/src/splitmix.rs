//! SplitMix64: a tiny generator with a fixed algorithm, so that whatever follows from a seed
//! (a replay's plan, a crash test's kills, a power cut's torn writes, a bench's attachment
//! bytes) is the same on every machine and with every version of the dependencies. Not for
//! anything secret.

/// Added to the state at each step (2^64 divided by the golden ratio).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound > 0`). Multiply-shift: the bias is below 2^-32 for the
    /// bounds used here, which is irrelevant for traffic shapes.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A value in `0..bound` as the remainder of one draw (0 when `bound` is 0, a draw still
    /// taken). Not [`below`](Self::below): the crash tests and power cuts draw this way, and
    /// their runs recorded by seed in RELIABILITY.md follow from it.
    pub fn below_modulo(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// An independent stream for one purpose, so changing how one step draws numbers does not
    /// shift every later step.
    pub fn fork(&self, stream: u64) -> Self {
        let mut mixer = Self::new(self.state ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Self::new(mixer.next_u64())
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for upper in (1..items.len()).rev() {
            let other = self.below(upper as u64 + 1) as usize;
            items.swap(upper, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_zero_gives_the_reference_outputs() {
        // The first outputs of the reference implementation (Vigna's splitmix64.c) for seed 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let mut first = SplitMix64::new(7);
        let mut second = SplitMix64::new(7);
        let a: Vec<u64> = (0..5).map(|_| first.next_u64()).collect();
        let b: Vec<u64> = (0..5).map(|_| second.next_u64()).collect();
        assert_eq!(a, b);
        let root = SplitMix64::new(7);
        assert_ne!(root.fork(1).next_u64(), root.fork(2).next_u64());
    }

    #[test]
    fn the_two_bounds_map_the_same_draw_differently() {
        // Seed 0's first draw, 0xE220…, is 0.88 of the range, and 1 modulo 3.
        assert_eq!(SplitMix64::new(0).below(3), 2);
        assert_eq!(SplitMix64::new(0).below_modulo(3), 1);
        let mut rng = SplitMix64::new(1);
        assert!((0..1000).all(|_| rng.below(3) < 3 && rng.below_modulo(3) < 3));
        assert_eq!(rng.clone().below_modulo(0), 0);
    }

    #[test]
    fn shuffle_permutes() {
        let mut rng = SplitMix64::new(1);
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }
}
