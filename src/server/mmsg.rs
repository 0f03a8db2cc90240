//! Batched UDP I/O with `recvmmsg(2)` and `sendmmsg(2)`: under load one system call moves up to
//! [`BATCH`] datagrams each way, which is most of what separates a DNS server from a plain UDP
//! echo. Neither tokio nor socket2 wraps these calls, hence this small file of `unsafe` with the
//! invariants spelled out.

use std::io;
use std::mem::{MaybeUninit, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Datagrams per system call. Under load the queue fills whole batches, and each call saves
/// its entry and exit on every datagram: 128 served about 6% more cache hits per CPU-second
/// than 32 (bench/peers.sh conditions). A full batch delays its first answer by the time the
/// other 127 take, some tens of microseconds; at low rates batches are short and nothing
/// waits. A listener's receive buffers: 128 x 4 KiB per socket.
pub const BATCH: usize = 128;

/// Largest query accepted: a longer datagram is cut by the kernel (MSG_TRUNC) and dropped.
/// Queries are small; CoreDNS's Go server reads at most 512 octets unless told otherwise.
pub const MAX_QUERY: usize = 4096;

/// Buffers for one `recvmmsg` call, reused for every call on one socket.
pub struct RecvBatch {
    /// `count` buffers of `size` octets, end to end.
    bufs: Vec<u8>,
    size: usize,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Headers the last call filled.
    filled: usize,
}

// The raw pointers inside point into the struct's own heap buffers, which never move.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// [`BATCH`] buffers of [`MAX_QUERY`] octets: a listener's.
    pub fn new() -> Self {
        Self::sized(BATCH, MAX_QUERY)
    }

    /// `count` buffers (at most [`BATCH`]) of `size` octets each.
    pub fn sized(count: usize, size: usize) -> Self {
        let count = count.clamp(1, BATCH);
        let mut b = RecvBatch {
            bufs: vec![0u8; count * size],
            size,
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { zeroed() }; count],
            iovs: Vec::with_capacity(count),
            hdrs: Vec::with_capacity(count),
            filled: 0,
        };
        for i in 0..count {
            let iov_base = b.bufs[i * size..].as_mut_ptr().cast();
            b.iovs.push(libc::iovec {
                iov_base,
                iov_len: size,
            });
        }
        for i in 0..count {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = &mut b.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        b
    }

    /// Receive as many datagrams as there are buffers, without blocking; `WouldBlock` when
    /// there are none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // The kernel wrote only the headers of the datagrams it returned last time.
        for h in &mut self.hdrs[..self.filled] {
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        self.filled = 0;
        // SAFETY: every header points at a live buffer and address slot owned by `self`, with
        // lengths that match them; the kernel writes only within those bounds.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = n as usize;
        Ok(n as usize)
    }

    /// Datagram `i` of the last call and its sender; `None` for a datagram that was cut short
    /// or whose sender address is not IP.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (bytes, cut) = self.get_cut(i)?;
        if cut {
            return None;
        }
        Some((bytes, from_storage(&self.addrs[i])?))
    }

    /// Datagram `i` of the last call (on a connected socket, whose sender is known), and
    /// whether it was longer than the buffer and so cut short.
    pub fn get_cut(&self, i: usize) -> Option<(&[u8], bool)> {
        if i >= self.filled {
            return None;
        }
        let h = &self.hdrs[i];
        let cut = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let len = (h.msg_len as usize).min(self.size);
        Some((&self.bufs[i * self.size..i * self.size + len], cut))
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // enough for and aligned for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A socket address as the kernel reads it, written straight from a `SocketAddr` (socket2's
/// `SockAddr` clears and copies a whole 128-byte `sockaddr_storage` per datagram).
#[derive(Clone, Copy)]
#[repr(C)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

fn raw_addr(addr: &SocketAddr) -> (RawAddr, libc::socklen_t) {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
            let mut v4: libc::sockaddr_in = unsafe { zeroed() };
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            (
                RawAddr { v4 },
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let mut v6: libc::sockaddr_in6 = unsafe { zeroed() };
            v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            v6.sin6_port = a.port().to_be();
            v6.sin6_flowinfo = a.flowinfo();
            v6.sin6_addr.s6_addr = a.ip().octets();
            v6.sin6_scope_id = a.scope_id();
            (
                RawAddr { v6 },
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// `UDP_SEGMENT` from `<linux/udp.h>` (Linux 4.18): the cmsg that makes one send carry several
/// datagrams of one size. The libc crate defines it only for some targets.
const UDP_SEGMENT: libc::c_int = 103;
/// Datagrams in one segmented send: the kernel's `UDP_MAX_SEGMENTS` (64; newer kernels allow 128).
const GSO_MAX_SEGMENTS: usize = 64;
/// Largest answer sent segmented: 1232 octets fit the IPv6 minimum MTU with IP and UDP headers,
/// so a segment never needs IP fragmentation, which the kernel refuses for segmented sends. Larger
/// answers (rare, and fragmented anyway) go one by one.
const GSO_MAX_SIZE: usize = 1232;

/// Segmentation offload works on this machine until a send says otherwise (a kernel without it,
/// or a route through a device that cannot checksum for us: EIO). Then every later batch sends
/// datagram by datagram, as before.
static GSO: AtomicBool = AtomicBool::new(true);

/// The control message of one segmented send: a `cmsghdr` and the segment size, laid out as
/// `CMSG_SPACE(sizeof(u16))` (24 octets on 64-bit Linux).
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    size: u16,
    _pad: [u8; 6],
}

/// Send `out` with as few system calls as the kernel allows. What was sent (or given up on
/// after a hard error) is moved to the front, and its count returned; the rest would have
/// blocked (the caller sends it one by one, waiting for room).
///
/// Answers to the same client of the same length go out as one segmented send (UDP GSO): the
/// kernel walks routing, netfilter and the device once for the group instead of once per
/// datagram, and the client still receives separate datagrams. A busy resolver (a node-local
/// cache, a forwarder, dnsperf) sends many queries from one socket, so its answers group well;
/// pods that open a socket per lookup don't, and lose nothing by it. The order in which answers
/// leave changes, which UDP never promised. The call's headers live on the stack: nothing is
/// allocated per batch.
pub fn send_batch(fd: RawFd, out: &mut [(Vec<u8>, SocketAddr)]) -> usize {
    let mut sent = 0;
    while sent < out.len() {
        let start = sent;
        let end = (start + BATCH).min(out.len());
        let mut done = [false; BATCH];
        let blocked = send_chunk(fd, &out[start..end], &mut done[..end - start]);
        // What this chunk sent moves to the front of what is left.
        for i in start..end {
            if done[i - start] {
                out.swap(sent, i);
                sent += 1;
            }
        }
        if blocked {
            break;
        }
    }
    sent
}

/// One segmented or plain `sendmmsg` message: the range of `plan` it carries.
#[derive(Clone, Copy)]
struct Group {
    start: u8,
    len: u8,
}

/// Send up to [`BATCH`] answers, marking in `done` each one sent (or given up on after a hard
/// error). True when the socket would block.
fn send_chunk(fd: RawFd, chunk: &[(Vec<u8>, SocketAddr)], done: &mut [bool]) -> bool {
    debug_assert!(chunk.len() <= BATCH);
    let mut gso = GSO.load(Ordering::Relaxed);
    'plan: loop {
        // The answers in sending order: sorted by client and length when segmenting, so that
        // each group is a run.
        let mut plan = [0u8; BATCH];
        let mut n = 0;
        for (i, &d) in done.iter().enumerate() {
            if !d {
                plan[n] = i as u8;
                n += 1;
            }
        }
        if n == 0 {
            return false;
        }
        let plan = &mut plan[..n];
        if gso && n > 1 {
            // Sorted as plain integers, the answer's index in the low byte: a comparison is a
            // couple of instructions, where a tuple of address parts cost tens.
            let mut keys = [0u128; BATCH];
            for (k, &i) in keys.iter_mut().zip(plan.iter()) {
                *k = u128::from(group_key(&chunk[i as usize])) << 8 | u128::from(i);
            }
            let keys = &mut keys[..n];
            keys.sort_unstable();
            for (p, k) in plan.iter_mut().zip(keys.iter()) {
                *p = *k as u8;
            }
        }
        let mut groups = [Group { start: 0, len: 0 }; BATCH];
        let mut g = 0;
        let mut i = 0;
        while i < n {
            let (first, addr) = &chunk[plan[i] as usize];
            let mut len = 1;
            if gso && first.len() <= GSO_MAX_SIZE {
                while i + len < n && len < GSO_MAX_SEGMENTS {
                    let (b, a) = &chunk[plan[i + len] as usize];
                    if b.len() != first.len() || a != addr {
                        break;
                    }
                    len += 1;
                }
            }
            groups[g] = Group {
                start: i as u8,
                len: len as u8,
            };
            g += 1;
            i += len;
        }
        let groups = &groups[..g];

        let mut addrs = [const { MaybeUninit::<RawAddr>::uninit() }; BATCH];
        let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; BATCH];
        let mut cmsgs = [const { MaybeUninit::<SegmentCmsg>::uninit() }; BATCH];
        let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; BATCH];
        for (k, &i) in plan.iter().enumerate() {
            let bytes = &chunk[i as usize].0;
            iovs[k].write(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
        for (k, grp) in groups.iter().enumerate() {
            let (first, addr) = &chunk[plan[grp.start as usize] as usize];
            let (raw, alen) = raw_addr(addr);
            let name = addrs[k].write(raw);
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let h = hdrs[k].write(unsafe { zeroed() });
            h.msg_hdr.msg_name = (name as *mut RawAddr).cast();
            h.msg_hdr.msg_namelen = alen;
            // SAFETY: the group's iovecs were written above (one per planned answer).
            h.msg_hdr.msg_iov = unsafe { iovs.as_mut_ptr().add(grp.start as usize).cast() };
            h.msg_hdr.msg_iovlen = grp.len as _;
            if grp.len > 1 {
                // SAFETY: cmsghdr is plain old data; all-zero is a valid value.
                let mut hdr: libc::cmsghdr = unsafe { zeroed() };
                hdr.cmsg_level = libc::SOL_UDP;
                hdr.cmsg_type = UDP_SEGMENT;
                hdr.cmsg_len = (std::mem::size_of::<libc::cmsghdr>() + 2) as _;
                let c = cmsgs[k].write(SegmentCmsg {
                    hdr,
                    size: first.len() as u16,
                    _pad: [0; 6],
                });
                h.msg_hdr.msg_control = (c as *mut SegmentCmsg).cast();
                h.msg_hdr.msg_controllen = std::mem::size_of::<SegmentCmsg>() as _;
            }
        }

        let mut next = 0;
        while next < groups.len() {
            // SAFETY: the headers from `next` on were written above and point at addresses,
            // iovecs, control messages and buffers that outlive this call; the kernel reads only
            // those headers (and writes msg_len into them).
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr().add(next).cast::<libc::mmsghdr>(),
                    (groups.len() - next) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                for grp in &groups[next..next + r as usize] {
                    for &i in &plan[grp.start as usize..(grp.start + grp.len) as usize] {
                        done[i as usize] = true;
                    }
                }
                next += r as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return true;
            }
            let grp = groups[next];
            if grp.len > 1 {
                // Send what is left of this chunk datagram by datagram; when the error says the
                // kernel or the route cannot segment, stop trying for good.
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
                ) {
                    GSO.store(false, Ordering::Relaxed);
                }
                gso = false;
                continue 'plan;
            }
            // One answer the kernel refuses (an unreachable client, say): give up on it, so
            // it does not hold up the rest.
            done[plan[grp.start as usize] as usize] = true;
            next += 1;
        }
        return false;
    }
}

/// Answers to one client with one length sort next to each other. An IPv4 client (or an
/// IPv4-mapped one) and the length fit the key exactly; for an IPv6 client it is a hash, and a
/// collision only splits a group, since grouping compares addresses and lengths again.
fn group_key((bytes, addr): &(Vec<u8>, SocketAddr)) -> u64 {
    let low = u64::from(addr.port()) << 16 | (bytes.len() as u64 & 0xffff);
    match addr {
        SocketAddr::V4(a) => u64::from(u32::from(*a.ip())) << 32 | low,
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(ip) => u64::from(u32::from(ip)) << 32 | low,
            None => {
                let ip = u128::from(*a.ip());
                ((ip >> 64) as u64 ^ ip as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ low
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Answers of one length to one client go out segmented, yet arrive as the separate
    /// datagrams they were, each whole; other lengths and other clients are not mixed in.
    #[test]
    fn segmented_sends_arrive_as_separate_datagrams() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
        }
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut out = Vec::new();
        let mut want_a = Vec::new();
        let mut want_b = Vec::new();
        // 100 answers to a (70 of 40 octets, 30 of 41: more than one group of 64), 20 to b,
        // and one too big to segment.
        for i in 0..120u8 {
            let (len, dst, want) = match i {
                0..70 => (40, to_a, &mut want_a),
                70..100 => (41, to_a, &mut want_a),
                _ => (40, to_b, &mut want_b),
            };
            let bytes = vec![i; len];
            want.push(bytes.clone());
            out.push((bytes, dst));
        }
        let big = vec![0xee; GSO_MAX_SIZE + 1];
        want_b.push(big.clone());
        out.push((big, to_b));

        assert_eq!(
            send_batch(server.as_raw_fd(), &mut out),
            out.len(),
            "all sent"
        );
        assert!(GSO.load(Ordering::Relaxed), "this kernel segments");
        for (sock, mut want) in [(&a, want_a), (&b, want_b)] {
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while got.len() < want.len() {
                let n = sock.recv(&mut buf).expect("every datagram arrives");
                got.push(buf[..n].to_vec());
            }
            got.sort();
            want.sort();
            assert_eq!(got, want);
        }
    }

    /// A dual-stack socket (`.:53` binds `[::]`) segments answers to IPv4 clients too: they are
    /// addressed as IPv4-mapped IPv6.
    #[test]
    fn a_dual_stack_socket_segments_to_mapped_ipv4_clients() {
        let server = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        server.set_only_v6(false).unwrap();
        server
            .bind(&"[::]:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let port = client.local_addr().unwrap().port();
        let mapped = SocketAddr::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(), port);
        let mut out: Vec<_> = (0..10u8).map(|i| (vec![i; 30], mapped)).collect();
        assert_eq!(send_batch(server.as_raw_fd(), &mut out), 10);
        let mut buf = [0u8; 64];
        let mut got: Vec<u8> = (0..10)
            .map(|_| {
                assert_eq!(client.recv(&mut buf).unwrap(), 30);
                buf[0]
            })
            .collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
        assert!(GSO.load(Ordering::Relaxed), "this kernel segments");
    }

    /// A datagram longer than the buffers is reported as cut, with what fitted; the others of
    /// the same call are whole.
    #[test]
    fn a_datagram_longer_than_the_buffer_is_reported_cut() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        tx.send(&[1; 16]).unwrap();
        tx.send(&[2; 100]).unwrap();
        tx.send(&[3; 64]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut batch = RecvBatch::sized(8, 64);
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 3);
        assert_eq!(batch.get_cut(0), Some((&[1u8; 16][..], false)));
        assert_eq!(batch.get_cut(1), Some((&[2u8; 64][..], true)));
        assert_eq!(batch.get_cut(2), Some((&[3u8; 64][..], false)));
        assert!(batch.get(1).is_none(), "a listener drops a cut query");
        assert!(batch.get_cut(3).is_none());
    }
}
