//! DNS over UDP: one socket per core, bound with SO_REUSEPORT so the kernel spreads clients
//! across them, each served by its own thread and single-threaded runtime. An answer that is
//! ready at once (cache hit, local data) is sent from the receive loop without spawning a task;
//! answers that wait (a forwarded query) join the listener's [`Waiters`], polled by one task.

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
use super::dispatch::{BlockServer, Placed, ZoneTable, answered, error_reply, prepare_in, reject};
use super::mmsg::{self, RecvBatch};
use super::{InFlight, Stop};
use crate::plugin::{BoxOutcome, Chain, Proto, Request, Served, wirebuf};
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
    let waiters = Arc::new(Waiters::default());
    tokio::spawn(waiters.clone().serve(outbox.clone()));
    // The slot the next answer that waits goes into: its waker is the one the chain is polled
    // with in place, so an answer that waits has its real waker from its first poll on.
    let mut slot = waiters.reserve();
    // The request of the last query answered at once, whose memory the next one reuses; after
    // an answer that waits took it along, one an earlier waiting answer gave back, or a copy of
    // `blank` (cheap: nothing built lazily yet).
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
            let parked = spare.get_or_insert_with(|| {
                waiters
                    .spare()
                    .unwrap_or_else(|| Parked::new(blank.clone()))
            });
            let block = match prepare_in(&table, wire, src, local, Proto::Udp, parked.get_mut()) {
                Placed::Drop => continue,
                Placed::Reply(bytes) => {
                    out.push((bytes, src));
                    continue;
                }
                Placed::Serve(block) => block,
            };
            // SAFETY: a waiting answer goes into a `Waiting` with this request and block.
            match unsafe { run_in_place(block, parked.get(), received, &slot.1) } {
                InPlace::Panicked => out.push((reject(wire, ResponseCode::ServFail, true), src)),
                InPlace::Answered(bytes) => out.push((bytes, src)),
                // The answer waits: the future goes to the waiters together with the request
                // and the block it borrows (the table may be swapped meanwhile), and the next
                // query gets new memory.
                InPlace::Waits(fut) => match spare.take() {
                    Some(req) => {
                        // SAFETY: `fut` came from `run_in_place` on this request and block,
                        // and the `Arc` clone keeps that same block.
                        let waiting = unsafe { Waiting::new(fut, req, block.clone()) };
                        waiters.place(
                            slot.0,
                            Job {
                                waiting,
                                src,
                                received,
                                guard: InFlight::start(),
                            },
                        );
                        slot = waiters.reserve();
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
/// waits can be moved to the [`Waiters`] together with the request it borrows ([`Waiting`]). While
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
/// one that waits goes to the [`Waiters`]. The plugins run on this listener's own thread here, so a
/// panic in one must not end the thread (and silence the socket): it is caught, counted by the
/// panic hook (`coredns_panics_total`), and the client gets SERVFAIL, as CoreDNS's per-query
/// recover answers. A panic while an answer waits is caught there too ([`poll_job`]).
///
/// # Safety
///
/// A [`InPlace::Waits`] answer borrows `*block` and `*req` although its type says `'static`:
/// it must be dropped before either is (see [`Waiting::new`]).
unsafe fn run_in_place(
    block: &BlockServer,
    req: &Request,
    received: u64,
    waker: &Waker,
) -> InPlace {
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // The head of the chain that only works on the way back runs here on the outcome
        // (and in `poll_job` for an answer that waits), not as a boxed future each.
        let (head, next) = block.chain.split();
        let done = |mut outcome| {
            Chain::back(head, req, &mut outcome);
            answered(block, req, outcome, received)
        };
        let mut fut = match next.serve(req) {
            Served::Ready(outcome) => return Ok(done(outcome)),
            Served::Pending(fut) => fut,
        };
        match fut.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(outcome) => Ok(done(outcome)),
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

    /// The request back, once the answer is done with (the future is dropped first).
    fn into_request(self) -> Parked {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: each field is dropped or moved out exactly once, the future first, and
        // `this` is never dropped itself.
        unsafe {
            ManuallyDrop::drop(&mut this.answer);
            std::ptr::drop_in_place(&mut this.block);
            std::ptr::read(&this.req)
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, before the request and block it borrows.
        unsafe { ManuallyDrop::drop(&mut self.answer) }
    }
}

/// An answer that waits, with what sending it needs.
struct Job {
    waiting: Waiting,
    src: SocketAddr,
    /// When the query was read (see [`answered`]).
    received: u64,
    /// Keeps shutdown waiting until the answer is handed to the [`Outbox`].
    guard: InFlight,
}

/// The answers that wait on one listener, polled by one task ([`Waiters::serve`]) rather than
/// a task each. A tokio task costs an allocation that glibc serves on its slow path (tokio
/// aligns tasks to 128 bytes, and `posix_memalign` skips the per-thread cache), scheduling,
/// and a second copy of the future; here a waiting answer takes a slot that keeps its waker
/// from one answer to the next, so a forwarded query allocates nothing for its wait.
///
/// The locks are never contended: the listener adds and the task polls on the listener's own
/// thread (a current-thread runtime); they are there for wakes, which may come from any thread.
#[derive(Default)]
struct Waiters {
    slots: Mutex<Slots>,
    ready: Arc<Ready>,
}

/// Spare requests kept per listener: enough for a burst of misses, little memory.
const SPARES: usize = 256;

#[derive(Default)]
struct Slots {
    all: Vec<Slot>,
    free: Vec<u32>,
    /// Requests of finished answers, for the listener's next waiting answer.
    spares: Vec<Parked>,
}

struct Slot {
    /// Wakes the slot's job (whichever is in the slot when the wake is handled: a late wake
    /// from a finished job only polls the next one for nothing).
    waker: Waker,
    node: Arc<Node>,
    job: Option<Job>,
}

/// The slots woken since the task last looked, and the task's waker.
#[derive(Default)]
struct Ready {
    queue: Mutex<(Vec<u32>, Option<Waker>)>,
}

/// A slot's waker.
struct Node {
    slot: u32,
    /// The slot is in the ready queue already: one entry however often it is woken.
    queued: std::sync::atomic::AtomicBool,
    ready: Arc<Ready>,
}

impl std::task::Wake for Node {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut q = self.ready.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.0.push(self.slot);
        let task = q.1.take();
        drop(q);
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Waiters {
    /// A request an earlier waiting answer gave back.
    fn spare(&self) -> Option<Parked> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spares
            .pop()
    }

    /// A free slot, and its waker, for the listener to poll a query's chain with; the slot
    /// stays the listener's until [`Waiters::place`] fills it. A wake of an empty slot (a chain
    /// that registered the waker and answered at once anyway) is passed over.
    fn reserve(&self) -> (u32, Waker) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let id = match slots.free.pop() {
            Some(id) => id,
            None => {
                let id = slots.all.len() as u32;
                let node = Arc::new(Node {
                    slot: id,
                    queued: Default::default(),
                    ready: self.ready.clone(),
                });
                slots.all.push(Slot {
                    waker: Waker::from(node.clone()),
                    node,
                    job: None,
                });
                id
            }
        };
        (id, slots.all[id as usize].waker.clone())
    }

    /// Put `job` into the reserved slot `id`. Its answer was polled with that slot's waker,
    /// which it wakes when it can go on.
    fn place(&self, id: u32, job: Job) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.all.get_mut(id as usize) {
            slot.job = Some(job);
        }
    }

    /// Poll the jobs that were woken, and hand each finished answer to `outbox`; runs as long
    /// as the listener's runtime.
    async fn serve(self: Arc<Self>, outbox: Arc<Outbox>) {
        use std::sync::atomic::Ordering;
        let mut woken = Vec::new();
        loop {
            std::future::poll_fn(|cx| {
                let mut q = self.ready.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.0.is_empty() {
                    if !q.1.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        q.1 = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                std::mem::swap(&mut q.0, &mut woken);
                Poll::Ready(())
            })
            .await;
            for id in woken.drain(..) {
                // Out of the slot while it is polled, so that nothing a plugin does meanwhile
                // can find the lock held.
                let (mut job, waker) = {
                    let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(slot) = slots.all.get_mut(id as usize) else {
                        continue;
                    };
                    // Cleared before the poll, so that a wake during it queues the slot again.
                    slot.node.queued.store(false, Ordering::Release);
                    let Some(job) = slot.job.take() else {
                        continue;
                    };
                    (job, slot.waker.clone())
                };
                match poll_job(&mut job, &waker) {
                    Poll::Pending => {
                        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                        slots.all[id as usize].job = Some(job);
                    }
                    Poll::Ready(bytes) => {
                        let Job {
                            waiting,
                            src,
                            guard,
                            ..
                        } = job;
                        outbox.push(bytes, src, guard);
                        // The future is dropped here, outside the lock.
                        let spare = spare_of(waiting);
                        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                        slots.free.push(id);
                        if let Some(req) = spare
                            && slots.spares.len() < SPARES
                        {
                            slots.spares.push(req);
                        }
                    }
                }
            }
        }
    }
}

/// The request of a finished answer, kept for reuse; `None` when dropping the answer panicked.
fn spare_of(waiting: Waiting) -> Option<Parked> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waiting.into_request())).ok()
}

/// Poll a waiting answer once; when it is there, encode and record it. A panic in a plugin is
/// caught (and counted by the panic hook) and answered with SERVFAIL, as in [`run_in_place`].
fn poll_job(job: &mut Job, waker: &Waker) -> Poll<Vec<u8>> {
    let w = &mut job.waiting;
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match w.answer.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(mut outcome) => {
                let (head, _) = w.block.chain.split();
                Chain::back(head, w.req.get(), &mut outcome);
                Poll::Ready(answered(&w.block, w.req.get(), outcome, job.received))
            }
            Poll::Pending => Poll::Pending,
        }
    }));
    match polled {
        Ok(p) => p,
        Err(_) => Poll::Ready(error_reply(w.req.get(), ResponseCode::ServFail)),
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

    /// A plugin with a bug after a wait: it panics once the answer is being waited for.
    struct PanicsLater;

    impl Plugin for PanicsLater {
        fn name(&self) -> &'static str {
            "panics-later"
        }

        fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
            Served::pending(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if req.name().starts_with("panic.") {
                    panic!("a plugin bug after a wait");
                }
                Ok(crate::plugin::Response::new(req.reply(), "panics-later"))
            })
        }
    }

    /// A listener on a loopback port serving `table`, a client socket to ask it from, and the
    /// sender that keeps the listener running.
    fn serving(table: ZoneTable) -> (SocketAddr, std::net::UdpSocket, watch::Sender<bool>) {
        let sock = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap().remove(0);
        let addr = sock.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        spawn(sock, Arc::new(ArcSwap::from_pointee(table)), stop).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        (addr, client, stop_tx)
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
        let (addr, client, _stop_tx) = serving(table_of(Arc::new(Waits)));
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
    fn a_panic_in_a_waiting_answer_gets_servfail_and_the_others_are_answered() {
        let (addr, client, _stop_tx) = serving(table_of(Arc::new(PanicsLater)));
        // Twice over, so the second round runs in slots and requests the first gave back.
        for round in 0..2u16 {
            let names = ["ok.example.", "panic.example.", "fine.example."];
            for (i, name) in names.iter().enumerate() {
                let mut q = Message::query();
                q.metadata.id = round * 10 + i as u16;
                q.queries
                    .push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
                client.send_to(&q.to_vec().unwrap(), addr).unwrap();
            }
            let mut seen = Vec::new();
            for _ in names {
                let mut buf = [0u8; 512];
                let (n, _) = client
                    .recv_from(&mut buf)
                    .expect("an answer for each query");
                let m = Message::from_vec(&buf[..n]).unwrap();
                seen.push((
                    m.metadata.id - round * 10,
                    m.queries[0].name.to_ascii(),
                    m.metadata.response_code,
                ));
            }
            seen.sort_by_key(|s| s.0);
            assert_eq!(
                seen,
                vec![
                    (0, names[0].to_string(), ResponseCode::NoError),
                    (1, names[1].to_string(), ResponseCode::ServFail),
                    (2, names[2].to_string(), ResponseCode::NoError),
                ]
            );
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
        let (addr, client, _stop_tx) = serving(table);
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
