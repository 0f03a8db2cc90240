//! DNS over TCP (RFC 7766): several queries per connection, answered as each completes (out of
//! order, §6.2.1.1), with timeouts so that idle or slow clients cannot hold the server, and a cap
//! on connections that sheds idle ones first, so that clients which open connections and send
//! nothing cannot lock out the ones that ask questions (§6.2.2, §10).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use super::dispatch::{Prepared, ZoneTable, prepare, serve};
use super::{InFlight, Stop};
use crate::plugin::Proto;

/// How long a new connection may take to send its first query (CoreDNS's default read timeout).
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection may stay idle between queries (CoreDNS's default idle timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing one answer may take (CoreDNS's default write timeout).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Queries one connection may have in flight before we stop reading from it.
const MAX_IN_FLIGHT: usize = 128;
/// Open connections per listener at most. Past it, a new connection closes the oldest idle one
/// (one waiting for a query with none in flight); when none is idle the new one is refused.
pub const MAX_CONNECTIONS: usize = 1000;

pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

/// One open connection as the cap sees it.
struct Slot {
    /// Waiting for the next query with nothing in flight: the first to go under pressure.
    idle: Arc<AtomicBool>,
    close: Arc<Notify>,
}

/// The open connections of one listener, oldest first.
#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, Slot>,
}

impl Connections {
    /// Make room for one more connection; false when every open one is busy.
    fn admit(&mut self, cap: usize) -> bool {
        if self.open.len() < cap {
            return true;
        }
        let oldest_idle = self
            .open
            .iter()
            .find(|(_, s)| s.idle.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest_idle.and_then(|id| self.open.remove(&id)) {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Accept connections until `stop` fires. Runs on the main runtime; connections already open
/// finish their queries on their own.
pub async fn run(
    listener: std::net::TcpListener,
    table: Arc<ArcSwap<ZoneTable>>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            crate::error!("tcp listener: {e}");
            return;
        }
    };
    let conns = Arc::new(Mutex::new(Connections::default()));
    loop {
        let (stream, src) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(_) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.stopped() => return,
        };
        let idle = Arc::new(AtomicBool::new(true));
        let close = Arc::new(Notify::new());
        let id = {
            let mut c = conns.lock().unwrap_or_else(|e| e.into_inner());
            if !c.admit(MAX_CONNECTIONS) {
                drop(stream);
                continue;
            }
            let id = c.next;
            c.next += 1;
            c.open.insert(
                id,
                Slot {
                    idle: idle.clone(),
                    close: close.clone(),
                },
            );
            id
        };
        let table = table.clone();
        let conns = conns.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            tokio::select! {
                _ = connection(stream, src, table, idle) => {}
                _ = close.notified() => {}
            }
            conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .open
                .remove(&id);
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    src: SocketAddr,
    table: Arc<ArcSwap<ZoneTable>>,
    idle: Arc<AtomicBool>,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);

    // The writer: frames each answer with its length, in the order they complete.
    let writer = tokio::spawn(async move {
        let mut frame = Vec::with_capacity(514);
        while let Some(bytes) = rx.recv().await {
            if bytes.is_empty() {
                // A dropped query (`acl ... drop`): nothing to send.
                continue;
            }
            let Ok(len) = u16::try_from(bytes.len()) else {
                continue;
            };
            frame.clear();
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(&bytes);
            match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&frame)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    });

    let mut timeout = READ_TIMEOUT;
    let mut msg = Vec::new();
    loop {
        // Idle only while nothing is in flight: then closing us loses no answer.
        idle.store(
            tx.capacity() == tx.max_capacity(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut len = [0u8; 2];
        match tokio::time::timeout(timeout, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        idle.store(false, std::sync::atomic::Ordering::Relaxed);
        let len = u16::from_be_bytes(len) as usize;
        if len == 0 {
            // A zero-length message is not DNS: the stream is out of step, so end it
            // (miekg/dns does the same).
            break;
        }
        msg.clear();
        msg.resize(len, 0);
        // The body of a message must follow promptly once its length has arrived.
        match tokio::time::timeout(READ_TIMEOUT, rd.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        timeout = IDLE_TIMEOUT;
        let prepared = prepare(&table.load(), &msg, src, local, Proto::Tcp);
        match prepared {
            Prepared::Drop => {}
            Prepared::Reply(bytes) => {
                if tx.send(bytes).await.is_err() {
                    break;
                }
            }
            Prepared::Serve(block, req) => {
                // Reserve a slot first so a client cannot pile up unbounded work.
                let Ok(permit) = tx.clone().reserve_owned().await else {
                    break;
                };
                let guard = InFlight::start();
                tokio::spawn(async move {
                    let bytes = serve(block, req).await;
                    permit.send(bytes);
                    drop(guard);
                });
            }
        }
    }
    drop(tx);
    // Let answers still being computed go out, within the write timeout.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(conns: &mut Connections, idle: bool) -> (u64, Arc<Notify>) {
        let id = conns.next;
        conns.next += 1;
        let close = Arc::new(Notify::new());
        conns.open.insert(
            id,
            Slot {
                idle: Arc::new(AtomicBool::new(idle)),
                close: close.clone(),
            },
        );
        (id, close)
    }

    #[test]
    fn cap_sheds_the_oldest_idle_connection() {
        let mut c = Connections::default();
        let (busy, _) = slot(&mut c, false);
        let (idle1, _) = slot(&mut c, true);
        let (idle2, _) = slot(&mut c, true);
        assert!(c.admit(4), "below the cap");
        assert!(c.admit(3));
        assert!(c.open.contains_key(&busy));
        assert!(!c.open.contains_key(&idle1), "oldest idle closed");
        assert!(c.open.contains_key(&idle2));
        assert!(c.admit(2));
        assert!(!c.admit(1), "only busy connections left");
    }
}
