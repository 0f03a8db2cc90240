//! Datagrams on connected sockets (queries to upstreams) held back until the listener has read
//! its whole batch, then sent together: one `sendmmsg` per socket instead of one `send` per
//! query.
//!
//! A UDP listener polls every query of a received batch in place; a cache miss reaches
//! `forward`, which would send its upstream query at once. Inside a batch it hands the query to
//! [`send`] instead, and the listener calls [`flush`] when the batch is done. Outside a batch (a
//! TCP client, a retry after a timeout, a prefetch) nothing is held back: [`send`] says so and the
//! caller sends as before. Everything is per thread: each listener thread has its own runtime and
//! its own upstream sockets.

use std::cell::RefCell;
use std::io;
use std::mem::{MaybeUninit, zeroed};
use std::os::fd::RawFd;
use std::sync::Arc;

/// A socket whose held-back datagrams can fail after the caller moved on.
pub trait Target: Send + Sync {
    fn fd(&self) -> RawFd;
    /// The datagram tagged `tag` could not be sent.
    fn failed(&self, tag: u16, err: io::Error);
}

struct Held {
    target: Arc<dyn Target>,
    tag: u16,
    bytes: Vec<u8>,
}

thread_local! {
    /// `Some` while this thread's listener is serving a batch.
    static HELD: RefCell<Option<Vec<Held>>> = const { RefCell::new(None) };
}

/// Marks this thread as serving a batch until [`flush`].
pub fn begin() {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_none() {
            *h = Some(Vec::new());
        }
    });
}

/// Whether a batch is being served on this thread, so that [`send`] would hold a datagram.
pub fn active() -> bool {
    HELD.with(|h| h.borrow().is_some())
}

/// Hold `bytes` for `target` until the batch ends; gives them back when no batch is being
/// served, for the caller to send now.
pub fn send(target: &Arc<dyn Target>, tag: u16, bytes: Vec<u8>) -> Result<(), Vec<u8>> {
    HELD.with(|h| match h.borrow_mut().as_mut() {
        Some(held) => {
            held.push(Held {
                target: target.clone(),
                tag,
                bytes,
            });
            Ok(())
        }
        None => Err(bytes),
    })
}

/// Send everything held, grouped by socket, and end the batch. A datagram the kernel refuses
/// (or that would block: the socket buffer is full) is reported to its target, which fails that
/// query over as a failed `send` did.
pub fn flush() {
    let Some(mut held) = HELD.with(|h| h.borrow_mut().take()) else {
        return;
    };
    // Group by socket: a stable sort keeps each socket's queries in the order they came.
    held.sort_by_key(|h| h.target.fd());
    let mut start = 0;
    while start < held.len() {
        let fd = held[start].target.fd();
        let end = held[start..]
            .iter()
            .position(|h| h.target.fd() != fd)
            .map_or(held.len(), |n| start + n);
        send_all(fd, &held[start..end]);
        start = end;
    }
}

const CHUNK: usize = 64;

fn send_all(fd: RawFd, held: &[Held]) {
    let mut sent = 0;
    while sent < held.len() {
        let chunk = &held[sent..(sent + CHUNK).min(held.len())];
        let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; CHUNK];
        let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; CHUNK];
        for (i, h) in chunk.iter().enumerate() {
            let iov = iovs[i].write(libc::iovec {
                iov_base: h.bytes.as_ptr() as *mut libc::c_void,
                iov_len: h.bytes.len(),
            });
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value (no address: the
            // socket is connected).
            let m = hdrs[i].write(unsafe { zeroed() });
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `chunk.len()` headers were written above and point at buffers that
        // outlive the call; the kernel reads only those (and writes msg_len into them).
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr().cast::<libc::mmsghdr>(),
                chunk.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            sent += n as usize;
            continue;
        }
        // The first datagram of the chunk failed: report it and go on with the rest.
        let h = &chunk[0];
        h.target.failed(h.tag, io::Error::last_os_error());
        sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;

    struct Sock(std::net::UdpSocket, Mutex<Vec<u16>>);

    impl Target for Sock {
        fn fd(&self) -> RawFd {
            self.0.as_raw_fd()
        }
        fn failed(&self, tag: u16, _: io::Error) {
            self.1.lock().unwrap().push(tag);
        }
    }

    fn connected_to(peer: &std::net::UdpSocket) -> Arc<Sock> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(peer.local_addr().unwrap()).unwrap();
        Arc::new(Sock(s, Mutex::new(Vec::new())))
    }

    #[test]
    fn held_datagrams_go_out_at_the_flush_in_order() {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let (a, b) = (connected_to(&peer), connected_to(&peer));
        let (ta, tb): (Arc<dyn Target>, Arc<dyn Target>) = (a.clone(), b.clone());

        // Outside a batch nothing is held.
        assert_eq!(send(&ta, 0, vec![9]), Err(vec![9]));

        begin();
        for i in 0..100u8 {
            let t = if i % 3 == 0 { &tb } else { &ta };
            assert_eq!(send(t, i.into(), vec![i]), Ok(()));
        }
        let mut buf = [0u8; 8];
        peer.set_nonblocking(true).unwrap();
        assert!(
            peer.recv(&mut buf).is_err(),
            "nothing leaves before the flush"
        );
        peer.set_nonblocking(false).unwrap();
        flush();

        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            let (n, src) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(n, 1);
            if src == a.0.local_addr().unwrap() {
                from_a.push(buf[0]);
            } else {
                from_b.push(buf[0]);
            }
        }
        let want_a: Vec<u8> = (0..100).filter(|i| i % 3 != 0).collect();
        let want_b: Vec<u8> = (0..100).filter(|i| i % 3 == 0).collect();
        assert_eq!((from_a, from_b), (want_a, want_b));
        assert!(a.1.lock().unwrap().is_empty() && b.1.lock().unwrap().is_empty());
        // The batch ended with the flush.
        assert_eq!(send(&ta, 0, vec![9]), Err(vec![9]));
    }

    #[test]
    fn a_refused_datagram_is_reported_and_the_rest_still_go() {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = connected_to(&gone);
        drop(gone);
        // The first send draws an ICMP port unreachable; the next send on the socket reports it.
        let _ = dead.0.send(&[0]);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let live = connected_to(&peer);
        let (td, tl): (Arc<dyn Target>, Arc<dyn Target>) = (dead.clone(), live.clone());
        begin();
        send(&td, 7, vec![1]).unwrap();
        send(&tl, 8, vec![2]).unwrap();
        flush();
        assert_eq!(*dead.1.lock().unwrap(), vec![7]);
        peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(peer.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 2);
    }
}
