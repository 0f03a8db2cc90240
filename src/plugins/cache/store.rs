//! The cache's storage: 256 shards, each a map under its own lock, holding a success and a
//! denial entry per key, with CoreDNS's capacities and random eviction (`plugin/pkg/cache`).
//!
//! Why one map for both kinds: CoreDNS keeps two caches and a hit probes both; one slot per key
//! holding both kinds gives the same semantics with one hash probe and one lock per hit.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::rr::{DNSClass, RecordType};

use crate::plugin::Request;

pub const SHARDS: usize = 256;

/// Which of the two caches an entry lives in; also the `type` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Success = 0,
    Denial = 1,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Success => "success",
            Class::Denial => "denial",
        }
    }
}

/// One cached answer, encoded.
#[derive(Debug)]
pub struct Entry {
    pub wire: Box<[u8]>,
    pub ttl_offsets: Box<[u16]>,
    pub qname_end: usize,
    /// The question, lower case, to tell a hash collision from a hit.
    pub name: Box<str>,
    pub qtype: RecordType,
    pub qclass: DNSClass,
    pub servfail: bool,
    /// When it was stored (ms on the cache clock) and for how long (s).
    pub stored_ms: u64,
    pub orig_ttl: u32,
    pub freq: Freq,
    /// A refresh (prefetch or serve_stale) is in flight: at most one per entry.
    pub refreshing: AtomicBool,
}

impl Entry {
    /// Seconds left, negative once expired: CoreDNS's `item.ttl`, whole seconds elapsed.
    pub fn ttl(&self, now_ms: u64) -> i64 {
        self.orig_ttl as i64 - (now_ms.saturating_sub(self.stored_ms) / 1000) as i64
    }

    pub fn matches(&self, req: &Request) -> bool {
        self.qtype == req.qtype() && self.qclass == req.qclass() && *self.name == *req.name()
    }
}

/// Popularity for prefetch (CoreDNS's `cache/freq`): hits seen with no gap longer than the
/// window. Races between threads only blur the count, which is all it is.
#[derive(Debug)]
pub struct Freq {
    last_ms: AtomicU64,
    hits: AtomicU32,
}

const NEVER: u64 = u64::MAX;

impl Default for Freq {
    fn default() -> Self {
        Freq {
            last_ms: AtomicU64::new(NEVER),
            hits: AtomicU32::new(0),
        }
    }
}

impl Freq {
    pub fn update(&self, window_ms: u64, now_ms: u64) -> u32 {
        let last = self.last_ms.swap(now_ms, Ordering::Relaxed);
        if last == NEVER || last < now_ms.saturating_sub(window_ms) {
            self.hits.store(1, Ordering::Relaxed);
            1
        } else {
            self.hits.fetch_add(1, Ordering::Relaxed) + 1
        }
    }

    pub fn hits(&self) -> u32 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn reset(&self, now_ms: u64, hits: u32) {
        self.last_ms.store(now_ms, Ordering::Relaxed);
        self.hits.store(hits, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Slot {
    kinds: [Option<Arc<Entry>>; 2],
}

/// Keys are already well-mixed hashes: the map uses them as they are.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Slot, BuildHasherDefault<KeyHasher>>,
    counts: [usize; 2],
}

pub struct Store {
    shards: Box<[RwLock<Shard>]>,
    /// Entries per shard for each class: CoreDNS's `max(CAPACITY / 256, 4)`.
    shard_cap: [usize; 2],
    len: [AtomicUsize; 2],
}

/// What a lookup found under a key: the denial and the success entry.
pub type Found = [Option<Arc<Entry>>; 2];

impl Store {
    pub fn new(success_cap: i64, denial_cap: i64) -> Self {
        let per_shard = |cap: i64| (cap / SHARDS as i64).max(4) as usize;
        Store {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            shard_cap: [per_shard(success_cap), per_shard(denial_cap)],
            len: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    fn shard(&self, key: u64) -> &RwLock<Shard> {
        // The map uses the low bits; pick the shard from the high ones.
        &self.shards[(key >> 56) as usize % SHARDS]
    }

    pub fn get(&self, key: u64) -> Option<Found> {
        self.with(key, |found| found.cloned())
    }

    /// Run `f` on what is stored under `key` while the shard is read-locked: the hit path
    /// builds its answer in there, so a hit takes no reference count.
    pub fn with<R>(&self, key: u64, f: impl FnOnce(Option<&Found>) -> R) -> R {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        f(shard.map.get(&key).map(|s| &s.kinds))
    }

    /// Store `entry`; true when another entry was evicted to make room. A success entry also
    /// drops the denial entry of the same key, which it supersedes.
    pub fn insert(&self, key: u64, class: Class, entry: Arc<Entry>) -> bool {
        let c = class as usize;
        let mut guard = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        let shard = &mut *guard;
        let mut evicted = false;
        let present = shard.map.get(&key).is_some_and(|s| s.kinds[c].is_some());
        if !present && shard.counts[c] >= self.shard_cap[c] {
            evicted = self.evict(shard, class, key);
        }
        let slot = shard.map.entry(key).or_default();
        if slot.kinds[c].replace(entry).is_none() {
            shard.counts[c] += 1;
            self.len[c].fetch_add(1, Ordering::Relaxed);
        }
        if class == Class::Success && slot.kinds[Class::Denial as usize].take().is_some() {
            shard.counts[Class::Denial as usize] -= 1;
            self.len[Class::Denial as usize].fetch_sub(1, Ordering::Relaxed);
        }
        evicted
    }

    /// Drop one entry of `class` from the shard, picked pseudo-randomly (the incoming key is a
    /// good enough random number): CoreDNS evicts randomly, not by age.
    fn evict(&self, shard: &mut Shard, class: Class, incoming: u64) -> bool {
        let c = class as usize;
        if shard.counts[c] == 0 {
            return false;
        }
        let pick = (incoming as usize) % shard.counts[c];
        let victim = shard
            .map
            .iter()
            .filter(|(_, s)| s.kinds[c].is_some())
            .nth(pick)
            .map(|(k, _)| *k);
        let Some(victim) = victim else {
            return false;
        };
        if let Some(slot) = shard.map.get_mut(&victim) {
            slot.kinds[c] = None;
            if slot.kinds.iter().all(Option::is_none) {
                shard.map.remove(&victim);
            }
        }
        shard.counts[c] -= 1;
        self.len[c].fetch_sub(1, Ordering::Relaxed);
        true
    }

    pub fn len(&self, class: Class) -> usize {
        self.len[class as usize].load(Ordering::Relaxed)
    }
}

/// The last `len % 8` bytes of `bytes` as the little-endian word of those bytes padded with
/// zeros, without copying them into a padded array (a `memcpy` call per key): from the last
/// eight bytes shifted down when there are eight, byte by byte otherwise.
fn tail_word(bytes: &[u8]) -> u64 {
    let rest = bytes.len() % 8;
    if rest == 0 {
        return 0;
    }
    match bytes.last_chunk::<8>() {
        Some(last) => u64::from_le_bytes(*last) >> (8 * (8 - rest)),
        None => bytes
            .iter()
            .rev()
            .fold(0u64, |w, &b| (w << 8) | u64::from(b)),
    }
}

/// The cache key: question name (lower case), type and class, and the DO and CD bits (CoreDNS
/// hashes name, type, DO and CD; the class is checked on the entry, here it is in the key).
/// A multiply-rotate hash over 8-byte words with a final mix: a few nanoseconds for a typical
/// name, and keys stay in the process, so no keyed hash is needed against flooding (an attacker
/// choosing names can only evict, as with CoreDNS's FNV).
pub fn key(name: &str, qtype: RecordType, qclass: DNSClass, do_bit: bool, cd: bool) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = (u16::from(qtype) as u64) << 32
        | (u16::from(qclass) as u64) << 16
        | (do_bit as u64) << 1
        | cd as u64;
    let mut chunks = name.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    h = (h.rotate_left(5) ^ tail_word(name.as_bytes()) ^ (name.len() as u64) << 56).wrapping_mul(K);
    // murmur3's fmix64, so every bit of the key depends on every input bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_word_is_the_zero_padded_tail() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for len in 0..text.len() {
            let bytes = &text[..len];
            let rest = &bytes[len - len % 8..];
            let mut padded = [0u8; 8];
            padded[..rest.len()].copy_from_slice(rest);
            assert_eq!(tail_word(bytes), u64::from_le_bytes(padded), "{len}");
        }
    }
}
