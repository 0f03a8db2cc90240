//! DNS over UDP: one socket per core, bound with SO_REUSEPORT so the kernel spreads clients
//! across them, each served by its own thread and single-threaded runtime. An answer that is
//! ready at once (cache hit, local data) is sent from the receive loop without spawning a task;
//! only answers that wait (a forwarded query) become tasks.

use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use socket2::{Domain, Protocol, Socket, Type};

use std::os::fd::AsRawFd;

use arc_swap::ArcSwap;
use tokio::io::Interest;
use tokio::sync::{Notify, watch};

use super::deferred;
use super::dispatch::{BlockServer, Placed, ZoneTable, answered, prepare_in, reject};
use super::mmsg::{self, RecvBatch};
use super::{InFlight, Stop};
use crate::plugin::{BoxOutcome, Proto, Request, Served, wirebuf};
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
    let mut out: Answers = Vec::with_capacity(mmsg::BATCH);
    let outbox = Arc::new(Outbox::default());
    tokio::spawn(outbox.clone().flush(sock.clone()));
    // The request of the last query answered at once, whose memory the next one reuses; after
    // an answer that waits took it along, a copy of `blank` (cheap: nothing built lazily yet).
    let mut spare: Option<Parked> = None;
    let blank = Request::from_wire(&ROOT_QUERY, local, local, Proto::Udp)
        .ok_or_else(|| io::Error::other("the root query does not read"))?;
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
        let received = crate::metrics::clock::now_ns();
        // Queries to upstreams made while serving this batch leave together at its end.
        deferred::begin();
        for i in 0..n {
            let Some((wire, src)) = batch.get(i) else {
                continue;
            };
            // The request is read straight into the memory of the last one answered at once.
            let parked = spare.get_or_insert_with(|| Parked::new(blank.clone()));
            let block = match prepare_in(&table, wire, src, local, Proto::Udp, parked.get_mut()) {
                Placed::Drop => continue,
                Placed::Reply(bytes) => {
                    out.push((bytes, src));
                    continue;
                }
                Placed::Serve(block) => block,
            };
            // SAFETY: a waiting answer goes into a `Waiting` with this request and block.
            match unsafe { run_in_place(block, parked.get(), received) } {
                InPlace::Panicked => out.push((reject(wire, ResponseCode::ServFail, true), src)),
                InPlace::Answered(bytes) => out.push((bytes, src)),
                // The answer waits: the future goes to a task together with the request and
                // the block it borrows (the table may be swapped meanwhile), and the next
                // query gets new memory.
                InPlace::Waits(fut) => match spare.take() {
                    Some(req) => {
                        // SAFETY: `fut` came from `run_in_place` on this request and block,
                        // and the `Arc` clone keeps that same block.
                        let waiting = unsafe { Waiting::new(fut, req, block.clone()) };
                        let outbox = outbox.clone();
                        let guard = InFlight::start();
                        tokio::spawn(async move {
                            let bytes = waiting.answer(received).await;
                            outbox.push(bytes, src, guard);
                        });
                    }
                    // Not reached: the request was parked there just above.
                    None => drop(fut),
                },
            }
        }
        deferred::flush();
        out.retain(|(bytes, _)| !bytes.is_empty());
        let sent = mmsg::send_batch(fd, &mut out);
        for (bytes, dst) in &out[sent..] {
            send(&sock, bytes, *dst).await;
        }
        // The next answers on this thread are written into these buffers.
        wirebuf::give_all(out.drain(..).map(|(bytes, _)| bytes));
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
            let sent = mmsg::send_batch(fd, &mut out);
            for (bytes, dst) in &out[sent..] {
                send(&sock, bytes, *dst).await;
            }
            wirebuf::give_all(out.drain(..).map(|(bytes, _)| bytes));
            guards.clear();
        }
    }
}

/// `. IN NS`, what a parked request asks until the first query is read into it.
const ROOT_QUERY: [u8; 17] = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];

/// A request kept at a fixed heap address while the chain answers it, so that an answer that
/// waits can be moved to a task together with the request it borrows ([`Waiting`]). While
/// answers are ready at once, the listener reads query after query into the same one
/// ([`prepare_in`]). Owns the request as a `Box<Request>` would; a raw pointer rather than a
/// `Box` because moving a `Box` asserts that nothing else points into it, and a waiting answer
/// does.
///
/// Why not a future per query: a cache hit then cost a request built and moved a few times, a
/// future built around it, a copy of that into a box and a poll; here the query is written
/// where it is served, the chain is called directly, and only an answer that waits becomes a
/// task.
struct Parked {
    req: NonNull<Request>,
}

// SAFETY: a `Parked` owns its request exclusively, like `Box<Request>`, which is Send.
unsafe impl Send for Parked {}

impl Parked {
    /// A parked request for the root, to be overwritten by the first query read into it.
    fn new(req: Request) -> Parked {
        Parked {
            req: NonNull::from(Box::leak(Box::new(req))),
        }
    }

    fn get(&self) -> &Request {
        // SAFETY: `req` came from `Box::leak` in `new` and is freed only by `drop`;
        // the borrow of `self` keeps `get_mut` from writing meanwhile.
        unsafe { self.req.as_ref() }
    }

    fn get_mut(&mut self) -> &mut Request {
        // SAFETY: as in `get`; `&mut self` makes this the only reference.
        unsafe { self.req.as_mut() }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        // SAFETY: the request is live and owned by this `Parked` alone (see `get`).
        drop(unsafe { Box::from_raw(self.req.as_ptr()) });
    }
}

/// A chain's answer that waits, with the request and block it borrows.
struct Waiting {
    /// Borrows `*req` and the plugins in `*block`; dropped first (see `Drop`).
    answer: ManuallyDrop<BoxOutcome<'static>>,
    req: Parked,
    block: Arc<BlockServer>,
}

/// Run `block`'s chain on `req` on the listener's thread: most answers are ready without
/// waiting, and then no future is made at all; a handler's future is polled once here, and only
/// one that waits goes to a task. The plugins run on this listener's own thread here, so a
/// panic in one must not end the thread (and silence the socket): it is caught, counted by the
/// panic hook (`coredns_panics_total`), and the client gets SERVFAIL, as CoreDNS's per-query
/// recover answers. A panic in a spawned task ends only that task.
///
/// # Safety
///
/// A [`InPlace::Waits`] answer borrows `*block` and `*req` although its type says `'static`:
/// it must be dropped before either is (see [`Waiting::new`]).
unsafe fn run_in_place(block: &BlockServer, req: &Request, received: u64) -> InPlace {
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut fut = match block.chain.serve(req) {
            Served::Ready(outcome) => return Ok(answered(block, req, outcome, received)),
            Served::Pending(fut) => fut,
        };
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(outcome) => Ok(answered(block, req, outcome, received)),
            Poll::Pending => Err(fut),
        }
    }));
    match polled {
        Err(_) => InPlace::Panicked,
        Ok(Ok(bytes)) => InPlace::Answered(bytes),
        // SAFETY: the future borrows only the chain in `block` and `req` (`Plugin::serve` ties
        // its lifetime to those two); the caller keeps both alive for as long as it lives.
        Ok(Err(fut)) => InPlace::Waits(unsafe {
            std::mem::transmute::<BoxOutcome<'_>, BoxOutcome<'static>>(fut)
        }),
    }
}

/// What running the chain in place came to.
enum InPlace {
    Panicked,
    Answered(Vec<u8>),
    /// The chain's answer waits; its real lifetime is that of the request and block.
    Waits(BoxOutcome<'static>),
}

impl Waiting {
    /// # Safety
    ///
    /// `answer` may borrow nothing but the request parked in `req` and the block behind
    /// `block`. Both stay where they are when `req` and `block` move (a heap request behind a
    /// raw pointer, an `Arc`'s target), and both outlive the future: `Waiting` drops it before
    /// its other fields.
    unsafe fn new(answer: BoxOutcome<'static>, req: Parked, block: Arc<BlockServer>) -> Waiting {
        Waiting {
            answer: ManuallyDrop::new(answer),
            req,
            block,
        }
    }

    /// Wait for the answer, then encode and record it.
    async fn answer(mut self, received: u64) -> Vec<u8> {
        let outcome = (&mut *self.answer).await;
        answered(&self.block, self.req.get(), outcome, received)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, before the request and block it borrows.
        unsafe { ManuallyDrop::drop(&mut self.answer) }
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

    /// A plugin that answers after a wait, reading the request after the wait (so the task
    /// really holds the request it borrowed).
    struct Waits;

    impl Plugin for Waits {
        fn name(&self) -> &'static str {
            "waits"
        }

        fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
            Served::pending(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(crate::plugin::Response::new(req.reply(), self.name()))
            })
        }
    }

    fn table_of(plugin: Arc<dyn Plugin>) -> ZoneTable {
        let mut table = ZoneTable::default();
        table.insert(
            ".".into(),
            Arc::new(BlockServer {
                chain: Chain {
                    plugins: vec![plugin],
                },
                zone: Arc::from("."),
                server: Arc::from("dns://test"),
                allow_chaos: false,
                recorder: None,
            }),
        );
        table
    }

    #[test]
    fn answers_that_wait_come_from_a_task_with_their_request() {
        let sock = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap().remove(0);
        let addr = sock.local_addr().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        spawn(
            sock,
            Arc::new(ArcSwap::from_pointee(table_of(Arc::new(Waits)))),
            stop,
        )
        .unwrap();

        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let names = ["a.example.", "Longer-Name.With.Several.Labels.example.org."];
        for (i, name) in names.iter().enumerate() {
            let mut q = Message::query();
            q.metadata.id = 100 + i as u16;
            q.queries
                .push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            client.send_to(&q.to_vec().unwrap(), addr).unwrap();
        }
        let mut seen = Vec::new();
        for _ in names {
            let mut buf = [0u8; 512];
            let (n, _) = client
                .recv_from(&mut buf)
                .expect("an answer after the wait");
            let m = Message::from_vec(&buf[..n]).unwrap();
            seen.push((m.metadata.id, m.queries[0].name.to_ascii()));
        }
        seen.sort();
        assert_eq!(
            seen,
            vec![(100, "a.example.".to_string()), (101, names[1].to_string())]
        );
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
