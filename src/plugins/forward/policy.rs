//! The order in which a query tries the upstreams (`policy random|round_robin|sequential`).

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// A fresh random permutation per query (CoreDNS's default).
    Random,
    /// Start one further along for each query, wrapping around.
    RoundRobin,
    /// Always in the order the Corefile lists them.
    Sequential,
}

/// At most 15 upstreams, so an order fits on the stack.
pub const MAX: usize = super::setup::MAX_UPSTREAMS;

/// An order of upstream indexes for one query.
#[derive(Clone, Copy)]
pub struct Order {
    idx: [u8; MAX],
    len: usize,
}

impl Order {
    pub fn as_slice(&self) -> &[u8] {
        &self.idx[..self.len]
    }
}

/// The policy together with the round-robin position it needs.
pub struct Picker {
    policy: Policy,
    next: AtomicUsize,
}

impl Picker {
    pub fn new(policy: Policy) -> Self {
        Picker {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    pub fn order(&self, n: usize) -> Order {
        let n = n.min(MAX);
        let mut idx = [0u8; MAX];
        for (i, slot) in idx.iter_mut().enumerate().take(n) {
            *slot = i as u8;
        }
        match self.policy {
            Policy::Sequential => {}
            Policy::RoundRobin if n > 0 => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
                idx[..n].rotate_left(start);
            }
            Policy::RoundRobin => {}
            Policy::Random => shuffle(&mut idx[..n]),
        }
        Order { idx, len: n }
    }
}

/// Fisher-Yates; CoreDNS special-cases one and two upstreams only as an optimisation.
pub fn shuffle(s: &mut [u8]) {
    for i in (1..s.len()).rev() {
        let j = rand::random_range(0..=i);
        s.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_keeps_order() {
        let p = Picker::new(Policy::Sequential);
        assert_eq!(p.order(3).as_slice(), &[0, 1, 2]);
        assert_eq!(p.order(3).as_slice(), &[0, 1, 2]);
    }

    #[test]
    fn round_robin_rotates() {
        let p = Picker::new(Policy::RoundRobin);
        assert_eq!(p.order(3).as_slice(), &[0, 1, 2]);
        assert_eq!(p.order(3).as_slice(), &[1, 2, 0]);
        assert_eq!(p.order(3).as_slice(), &[2, 0, 1]);
        assert_eq!(p.order(3).as_slice(), &[0, 1, 2]);
    }

    #[test]
    fn random_is_a_permutation_and_varies() {
        let p = Picker::new(Policy::Random);
        let mut firsts = [0usize; 4];
        for _ in 0..400 {
            let o = p.order(4);
            let mut s = o.as_slice().to_vec();
            firsts[s[0] as usize] += 1;
            s.sort();
            assert_eq!(s, vec![0, 1, 2, 3]);
        }
        assert!(firsts.iter().all(|&c| c > 30), "{firsts:?}");
    }
}
