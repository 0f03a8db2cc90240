//! The HTTP endpoints that plugins register (`/health`, `/ready`, `/metrics`): one small
//! HTTP/1.1 server per address, answering GET on the registered paths and 404 elsewhere.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::plugin::setup::HttpHandler;

/// The routes served on one address.
pub type Routes = Arc<Vec<(&'static str, HttpHandler)>>;

/// Bind an HTTP listener (before serving, so start-up fails on a taken port).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = match std::net::TcpListener::bind(addr) {
        // `:8080` means every address; on a host without IPv6, that is every IPv4 address.
        Err(e)
            if addr.is_ipv6()
                && addr.ip().is_unspecified()
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                ) =>
        {
            std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, addr.port()))
                .map_err(|_| e)?
        }
        other => other?,
    };
    l.set_nonblocking(true)?;
    Ok(l)
}

pub async fn run(listener: std::net::TcpListener, routes: Routes) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let routes = routes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let routes = routes.clone();
                async move { Ok::<_, Infallible>(respond(&routes, req.uri().path())) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
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
