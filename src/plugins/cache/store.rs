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
    /// The answer's wire form (`wire_len` bytes), then the question name in lower case (to
    /// tell a hash collision from a hit): one allocation for both, as every miss stores one.
    bytes: Box<[u8]>,
    wire_len: usize,
    pub ttl_offsets: Box<[u16]>,
    pub qname_end: usize,
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
    /// An entry for the answer `wire` to the question `name` (lower case); the rest as given.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        wire: &[u8],
        name: &str,
        ttl_offsets: Box<[u16]>,
        qname_end: usize,
        qtype: RecordType,
        qclass: DNSClass,
        servfail: bool,
        stored_ms: u64,
        orig_ttl: u32,
    ) -> Entry {
        let mut bytes = Vec::with_capacity(wire.len() + name.len());
        bytes.extend_from_slice(wire);
        bytes.extend_from_slice(name.as_bytes());
        Entry {
            bytes: bytes.into_boxed_slice(),
            wire_len: wire.len(),
            ttl_offsets,
            qname_end,
            qtype,
            qclass,
            servfail,
            stored_ms,
            orig_ttl,
            freq: Freq::default(),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The cached answer in wire form.
    pub fn wire(&self) -> &[u8] {
        &self.bytes[..self.wire_len]
    }

    /// The question name in lower case, as bytes.
    fn name(&self) -> &[u8] {
        &self.bytes[self.wire_len..]
    }

    /// Seconds left, negative once expired: CoreDNS's `item.ttl`, whole seconds elapsed.
    pub fn ttl(&self, now_ms: u64) -> i64 {
        self.orig_ttl as i64 - (now_ms.saturating_sub(self.stored_ms) / 1000) as i64
    }

    pub fn matches(&self, req: &Request) -> bool {
        self.qtype == req.qtype()
            && self.qclass == req.qclass()
            && self.name() == req.name().as_bytes()
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
    /// Where this key is in its shard's `keys` of each class (valid while that kind is set).
    pos: [u32; 2],
}

/// Keys are already well-mixed hashes: the map uses them as they are (but for a rotation).
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
        // hashbrown tags each slot with the hash's top 7 bits, and the shard is picked by the
        // key's top 8: unrotated, every key in a shard had the same tag, and a probe compared
        // whole keys with every entry of a group.
        self.0 = n.rotate_right(8);
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Slot, BuildHasherDefault<KeyHasher>>,
    /// The keys holding an entry of each class, in no order: eviction picks one by index
    /// instead of walking the map (which cost more than the rest of storing an answer).
    keys: [Vec<u64>; 2],
}

impl Shard {
    /// Take the key at `pos` out of `keys[c]`, telling the key moved into its place.
    fn unlist(&mut self, c: usize, pos: u32) {
        let keys = &mut self.keys[c];
        let pos = pos as usize;
        if pos >= keys.len() {
            return;
        }
        keys.swap_remove(pos);
        if let Some(&moved) = keys.get(pos)
            && let Some(slot) = self.map.get_mut(&moved)
        {
            slot.pos[c] = pos as u32;
        }
    }
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
        // Entries dropped here are freed after the lock is released.
        let mut gone: [Option<Arc<Entry>>; 3] = [None, None, None];
        let mut guard = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        let shard = &mut *guard;
        let mut evicted = false;
        let present = shard.map.get(&key).is_some_and(|s| s.kinds[c].is_some());
        if !present && shard.keys[c].len() >= self.shard_cap[c] {
            gone[0] = self.evict(shard, class, key);
            evicted = gone[0].is_some();
        }
        let at = shard.keys[c].len() as u32;
        let slot = shard.map.entry(key).or_default();
        gone[1] = slot.kinds[c].replace(entry);
        let denial = Class::Denial as usize;
        let mut superseded = None;
        if class == Class::Success {
            gone[2] = slot.kinds[denial].take();
            if gone[2].is_some() {
                superseded = Some(slot.pos[denial]);
            }
        }
        if gone[1].is_none() {
            slot.pos[c] = at;
            shard.keys[c].push(key);
            self.len[c].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(pos) = superseded {
            shard.unlist(denial, pos);
            self.len[denial].fetch_sub(1, Ordering::Relaxed);
        }
        drop(guard);
        drop(gone);
        evicted
    }

    /// Take one entry of `class` out of the shard, picked pseudo-randomly (the incoming key is
    /// a good enough random number): CoreDNS evicts randomly, not by age.
    fn evict(&self, shard: &mut Shard, class: Class, incoming: u64) -> Option<Arc<Entry>> {
        let c = class as usize;
        let count = shard.keys[c].len();
        if count == 0 {
            return None;
        }
        let pick = (incoming as usize) % count;
        let victim = shard.keys[c][pick];
        shard.unlist(c, pick as u32);
        self.len[c].fetch_sub(1, Ordering::Relaxed);
        let slot = shard.map.get_mut(&victim)?;
        let entry = slot.kinds[c].take();
        if slot.kinds.iter().all(Option::is_none) {
            shard.map.remove(&victim);
        }
        entry
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

    fn entry() -> Arc<Entry> {
        Arc::new(Entry::new(
            &[0; 12],
            "a.example.",
            Box::new([]),
            12,
            RecordType::A,
            DNSClass::IN,
            false,
            0,
            30,
        ))
    }

    /// Every listed key holds an entry of its class at the position it is listed at, and every
    /// entry is listed.
    fn check(store: &Store) {
        let mut total = [0; 2];
        for shard in store.shards.iter() {
            let shard = shard.read().unwrap();
            for (c, total) in total.iter_mut().enumerate() {
                assert!(shard.keys[c].len() <= store.shard_cap[c]);
                *total += shard.keys[c].len();
                for (i, k) in shard.keys[c].iter().enumerate() {
                    let slot = &shard.map[k];
                    assert!(slot.kinds[c].is_some());
                    assert_eq!(slot.pos[c] as usize, i);
                }
            }
            for slot in shard.map.values() {
                assert!(slot.kinds.iter().any(Option::is_some));
            }
            let listed = shard.map.values().filter(|s| s.kinds[0].is_some()).count();
            assert_eq!(listed, shard.keys[0].len());
            let listed = shard.map.values().filter(|s| s.kinds[1].is_some()).count();
            assert_eq!(listed, shard.keys[1].len());
        }
        assert_eq!(total, [store.len(Class::Success), store.len(Class::Denial)]);
    }

    #[test]
    fn eviction_keeps_the_key_lists_whole() {
        let store = Store::new(0, 0);
        let mut evictions = 0;
        // Few shards' worth of keys, so shards fill, evict, and success entries supersede
        // denials of the same key.
        for i in 0u64..4000 {
            let key = ((i % 7) << 56) | (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 97);
            let class = if i % 3 == 0 {
                Class::Denial
            } else {
                Class::Success
            };
            evictions += store.insert(key, class, entry()) as usize;
            check(&store);
        }
        assert!(evictions > 0);
        assert!(store.len(Class::Success) <= 7 * 4);
    }
}
