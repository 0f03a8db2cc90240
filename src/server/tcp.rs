//! DNS over TCP (RFC 7766): several queries per connection, answered as each completes (out of
//! order), with timeouts so that idle or slow clients cannot hold the server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::dispatch::{Prepared, ZoneTable, prepare, serve};
use crate::plugin::Proto;

/// How long a new connection may take to send its first query (CoreDNS's default read timeout).
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection may stay idle between queries (CoreDNS's default idle timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing one answer may take (CoreDNS's default write timeout).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Open connections at most; past this a new connection is closed at once, so a flood of idle
/// connections costs the attacker as much as it costs us and answers keep flowing on UDP.
const MAX_CONNECTIONS: usize = 1024;
/// Queries one connection may have in flight before we stop reading from it.
const MAX_IN_FLIGHT: usize = 128;

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

/// Accept connections until the process exits. Runs on the main runtime.
pub async fn run(listener: std::net::TcpListener, table: Arc<ZoneTable>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            crate::error!("tcp listener: {e}");
            return;
        }
    };
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let table = table.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            connection(stream, src, table).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(stream: tokio::net::TcpStream, src: SocketAddr, table: Arc<ZoneTable>) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);

    // The writer: frames each answer with its length, in the order they complete.
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if bytes.is_empty() {
                // A dropped query (`acl ... drop`): nothing to send.
                continue;
            }
            let Ok(len) = u16::try_from(bytes.len()) else {
                continue;
            };
            let mut frame = Vec::with_capacity(bytes.len() + 2);
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(&bytes);
            match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&frame)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    });

    let mut timeout = READ_TIMEOUT;
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(timeout, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let len = u16::from_be_bytes(len) as usize;
        let mut msg = vec![0u8; len];
        // The body of a message must follow promptly once its length has arrived.
        match tokio::time::timeout(READ_TIMEOUT, rd.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        timeout = IDLE_TIMEOUT;
        match prepare(&table, &msg, src, local, Proto::Tcp) {
            Prepared::Drop => {}
            Prepared::Reply(bytes) => {
                if tx.send(bytes).await.is_err() {
                    break;
                }
            }
            Prepared::Serve(block, req) => {
                let tx = tx.clone();
                // Reserve a slot first so a client cannot pile up unbounded work.
                let Ok(permit) = tx.reserve_owned().await else {
                    break;
                };
                tokio::spawn(async move {
                    let bytes = serve(block, req).await;
                    permit.send(bytes);
                });
            }
        }
    }
    drop(tx);
    // Let answers still being computed go out, within the write timeout.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, writer).await;
}
