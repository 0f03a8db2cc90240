//! DNS over UDP: one socket per core, bound with SO_REUSEPORT so the kernel spreads clients
//! across them, each served by its own thread and single-threaded runtime. An answer that is
//! ready at once (cache hit, local data) is sent from the receive loop without spawning a task;
//! only answers that wait (a forwarded query) become tasks.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

use std::os::fd::AsRawFd;

use arc_swap::ArcSwap;
use tokio::io::Interest;
use tokio::sync::watch;

use super::dispatch::{Prepared, ZoneTable, prepare, reject, serve_since};
use super::mmsg::{self, RecvBatch};
use super::{InFlight, Stop};
use crate::plugin::{Proto, wirebuf};
use hickory_proto::op::ResponseCode;

/// Bind `count` UDP sockets sharing `addr`.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    (0..count.max(1)).map(|_| bind_one(addr)).collect()
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` serves IPv4 too, like Go's `:53`.
        sock.set_only_v6(false)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    // Room for bursts: 4 MiB, the kernel caps it at net.core.rmem_max.
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// Serve one socket on a thread of its own until `stop` fires. The zone table is read through
/// `table` for every batch, so a reload swaps it under a running socket.
pub fn spawn(
    sock: std::net::UdpSocket,
    table: Arc<ArcSwap<ZoneTable>>,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ferrodns-udp".into())
        .spawn(move || {
            rt.block_on(async move {
                if let Err(e) = run(sock, table, stop).await {
                    crate::error!("udp listener: {e}");
                }
                // Answers still being computed on this thread's runtime go out before the
                // runtime (and the socket) is dropped.
                let deadline = tokio::time::Instant::now() + super::GRACE;
                while InFlight::count() > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            })
        })?;
    Ok(())
}

async fn run(
    sock: std::net::UdpSocket,
    table: Arc<ArcSwap<ZoneTable>>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let sock = Arc::new(tokio::net::UdpSocket::from_std(sock)?);
    let local = sock.local_addr()?;
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new();
    let mut out: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(mmsg::BATCH);
    // Where a query's serve future is polled in place: one box, reused by every answer that is
    // ready at once, so a cache hit allocates no future (only one that waits takes its box).
    let mut slot = Box::pin(None);
    loop {
        tokio::select! {
            ready = sock.readable() => ready?,
            _ = stop.stopped() => return Ok(()),
        }
        let n = match sock.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => n,
            // WouldBlock (readiness was stale) or a transient error such as an ICMP report
            // from an earlier send: keep serving.
            Err(_) => continue,
        };
        let table = table.load();
        let received = Instant::now();
        for i in 0..n {
            let Some((wire, src)) = batch.get(i) else {
                continue;
            };
            match prepare(&table, wire, src, local, Proto::Udp) {
                Prepared::Drop => {}
                Prepared::Reply(bytes) => out.push((bytes, src)),
                Prepared::Serve(block, req) => {
                    slot.set(Some(serve_since(block, req, received)));
                    // Poll once in place: most answers are ready without waiting. The plugins
                    // run on this listener's own thread here, so a panic in one must not end
                    // the thread (and silence the socket): it is caught, counted by the panic
                    // hook (`coredns_panics_total`), and the client gets SERVFAIL, as CoreDNS's
                    // per-query recover answers. A panic in a spawned task ends only that task.
                    let polled =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            match slot.as_mut().as_pin_mut() {
                                Some(fut) => fut.poll(&mut Context::from_waker(Waker::noop())),
                                None => Poll::Ready(Vec::new()),
                            }
                        }));
                    match polled {
                        Err(_) => {
                            slot.set(None);
                            out.push((reject(wire, ResponseCode::ServFail, true), src));
                        }
                        Ok(Poll::Ready(bytes)) => {
                            slot.set(None);
                            out.push((bytes, src));
                        }
                        Ok(Poll::Pending) => {
                            // The future waits: it takes the slot's box along, and the next
                            // query gets a new one.
                            let mut fut = std::mem::replace(&mut slot, Box::pin(None));
                            let sock = sock.clone();
                            let guard = InFlight::start();
                            tokio::spawn(async move {
                                let _guard = guard;
                                let bytes =
                                    std::future::poll_fn(|cx| match fut.as_mut().as_pin_mut() {
                                        Some(fut) => fut.poll(cx),
                                        None => Poll::Ready(Vec::new()),
                                    })
                                    .await;
                                if !bytes.is_empty() {
                                    send(&sock, &bytes, src).await;
                                }
                            });
                        }
                    }
                }
            }
        }
        out.retain(|(bytes, _)| !bytes.is_empty());
        let sent = mmsg::send_batch(fd, &out);
        for (i, (bytes, dst)) in out.drain(..).enumerate() {
            if i >= sent {
                send(&sock, &bytes, dst).await;
            }
            // The next answers on this thread are written into these buffers.
            wirebuf::give(bytes);
        }
    }
}

async fn send(sock: &tokio::net::UdpSocket, bytes: &[u8], dst: SocketAddr) {
    if sock.try_send_to(bytes, dst).is_err() {
        // The send buffer was full (or the error is transient): wait for room once.
        let _ = sock.send_to(bytes, dst).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{Chain, Next, Plugin, Request, Served};
    use crate::server::dispatch::BlockServer;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use std::time::Duration;

    /// A plugin with a bug: it panics on every query.
    struct Panics;

    impl Plugin for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }

        fn serve<'a>(&'a self, _req: &'a Request, _next: Next<'a>) -> Served<'a> {
            panic!("a plugin bug");
        }
    }

    #[test]
    fn a_panicking_plugin_gets_servfail_and_the_socket_keeps_serving() {
        let mut table = ZoneTable::default();
        table.insert(
            ".".into(),
            Arc::new(BlockServer {
                chain: Chain {
                    plugins: vec![Arc::new(Panics)],
                },
                zone: Arc::from("."),
                server: Arc::from("dns://test"),
                allow_chaos: false,
                recorder: None,
            }),
        );
        let sock = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap().remove(0);
        let addr = sock.local_addr().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        spawn(sock, Arc::new(ArcSwap::from_pointee(table)), stop).unwrap();

        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        for id in [1u16, 2] {
            let mut q = Message::query();
            q.metadata.id = id;
            q.queries.push(Query::query(
                Name::from_ascii("example.org.").unwrap(),
                RecordType::A,
            ));
            client.send_to(&q.to_vec().unwrap(), addr).unwrap();
            let mut buf = [0u8; 512];
            let (n, _) = client
                .recv_from(&mut buf)
                .expect("an answer after the panic");
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(m.metadata.id, id);
            assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        }
    }
}
