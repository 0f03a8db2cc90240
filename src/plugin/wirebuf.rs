//! Spare answer buffers, per thread: a UDP listener hands back the buffers of the answers it
//! has sent, and the next cache hit on that thread writes its answer into one of them.
//!
//! Why: with glibc's allocator a `Vec` for the answer cost about 300 instructions per cache hit
//! (malloc, and a free on the listener after the send), as much as the whole cache lookup. A
//! buffer taken from here costs a thread-local access. Threads that never give buffers back
//! (TCP tasks, tests) find the pool empty and simply allocate.

use std::cell::RefCell;

/// Buffers kept per thread: a full `recvmmsg` batch of answers (see `server::mmsg::BATCH`).
const KEEP: usize = 128;
/// Larger buffers are freed rather than kept: a rare large answer must not stay pinned.
const KEEP_CAPACITY: usize = 4096;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes.
pub fn take(capacity: usize) -> Vec<u8> {
    let spare = SPARE
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten();
    match spare {
        Some(mut buf) => {
            buf.reserve(capacity);
            buf
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Keep `buf` for a later [`take`] on this thread (or free it when enough are kept).
pub fn give(buf: Vec<u8>) {
    give_all(std::iter::once(buf));
}

/// [`give`] for many buffers at once (a listener's sent batch): the thread's pool is reached
/// once, not once per buffer.
pub fn give_all(bufs: impl Iterator<Item = Vec<u8>>) {
    let _ = SPARE.try_with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return;
        };
        for mut buf in bufs {
            if buf.capacity() == 0 || buf.capacity() > KEEP_CAPACITY || s.len() >= KEEP {
                continue;
            }
            if s.capacity() == 0 {
                s.reserve_exact(KEEP);
            }
            buf.clear();
            s.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_large_ones_are_not_kept() {
        let mut a = take(100);
        a.extend_from_slice(b"answer");
        let ptr = a.as_ptr();
        give(a);
        let b = take(50);
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr, "the given buffer is reused");
        let c = take(200);
        assert!(c.capacity() >= 200);
        give(Vec::with_capacity(KEEP_CAPACITY + 1));
        assert!(take(10).capacity() < KEEP_CAPACITY);
        // At most KEEP are kept.
        give_all((0..KEEP + 10).map(|_| Vec::with_capacity(64)));
        let kept = std::iter::from_fn(|| Some(take(1)))
            .take_while(|b| b.capacity() >= 64)
            .count();
        assert_eq!(kept, KEEP);
    }
}
