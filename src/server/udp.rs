//! DNS over UDP: one socket per core, bound with SO_REUSEPORT so the kernel spreads clients
//! across them, each served by its own thread and single-threaded runtime. An answer that is
//! ready at once (cache hit, local data) is sent from the receive loop without spawning a task;
//! only answers that wait (a forwarded query) become tasks.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use socket2::{Domain, Protocol, Socket, Type};

use std::os::fd::AsRawFd;

use arc_swap::ArcSwap;
use tokio::io::Interest;
use tokio::sync::{Notify, watch};

use super::deferred;
use super::dispatch::{Prepared, ZoneTable, prepare, reject, serve};
use super::mmsg::{self, RecvBatch};
use super::{InFlight, Stop};
use crate::plugin::Proto;
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
    let outbox = Arc::new(Outbox::default());
    tokio::spawn(outbox.clone().flush(sock.clone()));
    let mut out: Answers = Vec::with_capacity(mmsg::BATCH);
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
        // Queries to upstreams made while serving this batch leave together at its end.
        deferred::begin();
        for i in 0..n {
            let Some((wire, src)) = batch.get(i) else {
                continue;
            };
            match prepare(&table, wire, src, local, Proto::Udp) {
                Prepared::Drop => {}
                Prepared::Reply(bytes) => out.push((bytes, src)),
                Prepared::Serve(block, req) => {
                    let mut fut = Box::pin(serve(block, req));
                    // Poll once in place: most answers are ready without waiting. The plugins
                    // run on this listener's own thread here, so a panic in one must not end
                    // the thread (and silence the socket): it is caught, counted by the panic
                    // hook (`coredns_panics_total`), and the client gets SERVFAIL, as CoreDNS's
                    // per-query recover answers. A panic in a spawned task ends only that task.
                    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
                    }));
                    match polled {
                        Err(_) => out.push((reject(wire, ResponseCode::ServFail, true), src)),
                        Ok(Poll::Ready(bytes)) => out.push((bytes, src)),
                        Ok(Poll::Pending) => {
                            let outbox = outbox.clone();
                            let guard = InFlight::start();
                            tokio::spawn(async move {
                                let bytes = fut.await;
                                outbox.push(bytes, src, guard);
                            });
                        }
                    }
                }
            }
        }
        deferred::flush();
        out.retain(|(bytes, _)| !bytes.is_empty());
        mmsg::send_batch(fd, &mut out);
        for (bytes, dst) in out.drain(..) {
            send(&sock, &bytes, dst).await;
        }
    }
}

/// Encoded answers and the clients they go to.
type Answers = Vec<(Vec<u8>, SocketAddr)>;

/// Answers that had to wait (forwarded queries) finish in tasks of their own. They are gathered
/// here and sent in batches by one task, as the answers ready at once are, instead of one system
/// call each: a burst of upstream replies becomes one `sendmmsg`.
#[derive(Default)]
struct Outbox {
    /// The answers, and the in-flight marks that keep shutdown waiting until they are sent.
    queue: Mutex<(Answers, Vec<InFlight>)>,
    ready: Notify,
}

impl Outbox {
    fn push(&self, bytes: Vec<u8>, dst: SocketAddr, guard: InFlight) {
        if bytes.is_empty() {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.0.push((bytes, dst));
        q.1.push(guard);
        drop(q);
        // The tasks woken with this one run before the flusher does (the runtime runs tasks in
        // the order they were woken), so their answers join the same batch.
        self.ready.notify_one();
    }

    /// Send whatever has been gathered, each time some arrives; ends with the runtime.
    async fn flush(self: Arc<Self>, sock: Arc<tokio::net::UdpSocket>) {
        let fd = sock.as_raw_fd();
        let mut out = Vec::with_capacity(mmsg::BATCH);
        let mut guards = Vec::new();
        loop {
            self.ready.notified().await;
            {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::swap(&mut q.0, &mut out);
                std::mem::swap(&mut q.1, &mut guards);
            }
            mmsg::send_batch(fd, &mut out);
            for (bytes, dst) in out.drain(..) {
                send(&sock, &bytes, dst).await;
            }
            guards.clear();
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
