//! The HTTP endpoints that plugins register (`/health`, `/ready`, `/metrics`): one small
//! HTTP/1.1 server per address, answering GET on the registered paths and 404 elsewhere.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Stop;

use crate::plugin::setup::HttpHandler;

/// Open connections per HTTP listener at most (the DNS TCP listener's cap too).
const MAX_CONNECTIONS: usize = 1024;

/// The routes served on one address.
pub type Routes = Arc<Vec<(&'static str, HttpHandler)>>;

/// Bind an HTTP listener (before serving, so start-up fails on a taken port). SO_REUSEADDR, as
/// Go sets it, so that a restarted server can bind while old connections sit in TIME_WAIT.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let listen = |addr: SocketAddr| -> std::io::Result<std::net::TcpListener> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        sock.listen(128)?;
        Ok(sock.into())
    };
    match listen(addr) {
        // `:8080` means every address; on a host without IPv6, that is every IPv4 address.
        Err(e)
            if addr.is_ipv6()
                && addr.ip().is_unspecified()
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                ) =>
        {
            listen(SocketAddr::new(
                std::net::Ipv4Addr::UNSPECIFIED.into(),
                addr.port(),
            ))
            .map_err(|_| e)
        }
        other => other,
    }
}

/// Serve until `stop` fires. The routes are read through `routes` on every request, so a
/// reload that keeps this address swaps the handlers without closing the listener.
pub async fn run(
    listener: std::net::TcpListener,
    routes: Arc<ArcSwap<Vec<(&'static str, HttpHandler)>>>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.stopped() => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        // Past the cap a new connection is closed at once: probes and scrapes open one
        // connection at a time, so only a flood reaches it, and file descriptors stay bounded.
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let routes = routes.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let routes = routes.load_full();
                async move { Ok::<_, Infallible>(respond(&routes, req.uri().path())) }
            });
            // A client that never finishes its request headers (a slowloris on /metrics)
            // is cut off instead of holding the connection forever.
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            // When the listener stops (shutdown, or a reload that drops this address) its
            // connections end too: a kept-alive scraper must not hold the old routes, and with
            // them the old configuration, alive. A request in progress is finished first.
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.stopped() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

fn respond(routes: &Routes, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match routes.iter().find(|(p, _)| *p == path) {
        Some((_, handler)) => {
            let reply = handler();
            (reply.status, reply.content_type, reply.body)
        }
        None => (
            404,
            "text/plain; charset=utf-8",
            "404 page not found\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
