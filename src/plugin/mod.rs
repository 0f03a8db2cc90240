//! The plugin interface: what a handler in the chain receives, returns and may call.
//!
//! A server block's plugins form a chain in the fixed order of [`order::ORDER`]. Each handler
//! gets the [`Request`] and a [`Next`] for the rest of the chain, and either answers, passes the
//! request on, or passes it on and then works on the answer as it comes back (`cache`, `log`,
//! `loadbalance`), exactly CoreDNS's `ServeDNS` model.
//!
//! Why [`Served`] and not a boxed future: most answers on the hot path (cache hits, `hosts`,
//! `template`, `whoami`) are ready without waiting. `Served::Ready` carries such an answer with no
//! allocation, and only a handler that really waits (`forward`) pays for a boxed future.

pub mod fall;
pub mod mnemonic;
pub mod nets;
pub mod observe;
pub mod order;
pub mod parse;
pub mod request;
pub mod response;
pub mod rr;
pub mod setup;
pub mod upstream;
pub mod wirebuf;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hickory_proto::op::ResponseCode;

pub use request::{Proto, Request};
pub use response::Response;
pub use setup::{Setup, SetupError, Shared};

/// A handler in the chain. One value serves every query of its server block(s), concurrently.
pub trait Plugin: Send + Sync + 'static {
    /// The directive name, as in the Corefile (`hosts`, `forward`, ...).
    fn name(&self) -> &'static str;

    /// Answer `req`, or hand it to `next`, or both.
    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a>;

    /// Whether this handler only passes every query on and then works on the answer: its
    /// `serve` must be exactly `next.serve(req)` mapped by [`Plugin::back`]. The chain then
    /// runs `back` itself for such handlers at its head instead of calling `serve`, and a
    /// listener runs it on the answer it already holds: no boxed future per handler for an
    /// answer that waits (`errors`, `loadbalance`).
    fn passes_through(&self) -> bool {
        false
    }

    /// The work on the way back of a handler that [`Plugin::passes_through`], in place (an
    /// outcome is a few hundred bytes: not moved in and out of every handler).
    fn back(&self, _req: &Request, _outcome: &mut Outcome) {}

    /// For the `ready` plugin: `false` while this plugin is not yet able to serve (CoreDNS's
    /// `ready.Readiness`). Plugins with nothing to wait for keep the default.
    fn ready(&self) -> bool {
        true
    }
}

/// What a handler returns when it did not produce an answer itself: CoreDNS's
/// `(rcode, err)` pair for the rcodes that make the server write the reply (SERVFAIL, REFUSED,
/// FORMERR, NOTIMP). `errors` logs `error`; the server answers with `rcode`.
#[derive(Debug, Clone)]
pub struct Failure {
    pub rcode: ResponseCode,
    pub error: Option<PluginError>,
    /// False when the client must get no reply at all (`acl ... drop`, CoreDNS's "rcode
    /// success, nothing written"): the server sends nothing and metrics count no response.
    pub reply: bool,
}

impl Failure {
    pub fn new(rcode: ResponseCode) -> Self {
        Failure {
            rcode,
            error: None,
            reply: true,
        }
    }

    /// Send nothing back (a dropped query).
    pub fn no_reply() -> Self {
        Failure {
            rcode: ResponseCode::NoError,
            error: None,
            reply: false,
        }
    }

    /// A failure caused by an error in plugin `plugin`, logged by `errors` as
    /// `plugin/NAME: message`.
    pub fn error(rcode: ResponseCode, plugin: &'static str, message: impl Into<String>) -> Self {
        Failure {
            rcode,
            error: Some(PluginError {
                plugin,
                message: message.into(),
            }),
            reply: true,
        }
    }
}

/// An error attributed to a plugin, shown as CoreDNS shows `plugin.Error`.
#[derive(Debug, Clone)]
pub struct PluginError {
    pub plugin: &'static str,
    pub message: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin/{}: {}", self.plugin, self.message)
    }
}

/// The result of a handler: an answer to send, or a failure for the server to answer.
pub type Outcome = Result<Response, Failure>;

/// A boxed future for handlers that wait.
pub type BoxOutcome<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A handler's result, either already known or still to come. It is itself a future, so a
/// handler that waits can simply `.await` what `next` returned.
pub enum Served<'a> {
    Ready(Outcome),
    Pending(BoxOutcome<'a>),
}

impl<'a> Served<'a> {
    /// Wrap an async block (the only allocation a waiting handler pays).
    pub fn pending(fut: impl Future<Output = Outcome> + Send + 'a) -> Self {
        Served::Pending(Box::pin(fut))
    }

    /// Apply `f` to the outcome when it is there: at once when it is ready, after the wait
    /// otherwise. This is how `log`, `prometheus`, `cache` and friends act on the way back.
    pub fn map<F>(self, f: F) -> Served<'a>
    where
        F: FnOnce(Outcome) -> Outcome + Send + 'a,
    {
        match self {
            Served::Ready(outcome) => Served::Ready(f(outcome)),
            Served::Pending(fut) => Served::pending(async move { f(fut.await) }),
        }
    }
}

impl Future for Served<'_> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        // `Served` holds no self-references: a Ready value is moved out once, and a Pending
        // future is already pinned in its box.
        let this = self.get_mut();
        match this {
            Served::Ready(_) => {
                let done = std::mem::replace(
                    this,
                    Served::Ready(Err(Failure::new(ResponseCode::ServFail))),
                );
                match done {
                    Served::Ready(outcome) => Poll::Ready(outcome),
                    Served::Pending(_) => Poll::Pending,
                }
            }
            Served::Pending(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl From<Outcome> for Served<'_> {
    fn from(outcome: Outcome) -> Self {
        Served::Ready(outcome)
    }
}

/// The rest of the chain after the current handler.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    chain: &'a [Arc<dyn Plugin>],
}

impl<'a> Next<'a> {
    pub fn new(chain: &'a [Arc<dyn Plugin>]) -> Self {
        Next { chain }
    }

    /// Hand the request to the next handler. At the end of the chain this is CoreDNS's
    /// `plugin.NextOrFailure`: SERVFAIL with "no next plugin found".
    pub fn serve<'b>(self, req: &'b Request) -> Served<'b>
    where
        'a: 'b,
    {
        match self.chain.split_first() {
            Some((first, rest)) => first.serve(req, Next::new(rest)),
            None => Served::Ready(Err(Failure::error(
                ResponseCode::ServFail,
                "next",
                "no next plugin found",
            ))),
        }
    }

    /// Like [`Next::serve`] for a request made by this handler (a rewritten or extra query,
    /// as `rewrite` and `dns64` make): the returned future owns the request.
    pub fn serve_owned(self, req: Request) -> BoxOutcome<'a> {
        Box::pin(async move { self.serve(&req).await })
    }

    /// The handlers that follow, for a plugin that must run them after the current query is
    /// answered (`cache` prefetch): clone the `Arc`s and serve through `Next::new`.
    pub fn plugins(&self) -> &'a [Arc<dyn Plugin>] {
        self.chain
    }

    /// Whether any handler follows (for `fallthrough`).
    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }
}

/// A complete chain for one server block.
#[derive(Clone, Default)]
pub struct Chain {
    pub plugins: Vec<Arc<dyn Plugin>>,
}

impl Chain {
    pub fn serve<'a>(&'a self, req: &'a Request) -> Served<'a> {
        let (head, next) = self.split();
        if head.is_empty() {
            return next.serve(req);
        }
        next.serve(req).map(move |mut outcome| {
            Chain::back(head, req, &mut outcome);
            outcome
        })
    }

    /// The handlers at the head of the chain that [`Plugin::passes_through`], and the rest of
    /// the chain: serving the rest and then [`Chain::back`] on its outcome is serving the whole.
    pub fn split(&self) -> (&[Arc<dyn Plugin>], Next<'_>) {
        let k = self
            .plugins
            .iter()
            .take_while(|p| p.passes_through())
            .count();
        let (head, rest) = self.plugins.split_at(k);
        (head, Next::new(rest))
    }

    /// Run the way back of the `head` from [`Chain::split`] on the rest's outcome, innermost
    /// first, as their mapped futures would have.
    pub fn back(head: &[Arc<dyn Plugin>], req: &Request, outcome: &mut Outcome) {
        for p in head.iter().rev() {
            p.back(req, outcome);
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Passes every query on and notes its name on the way back.
    struct Mark(&'static str, Arc<Mutex<Vec<&'static str>>>);

    impl Plugin for Mark {
        fn name(&self) -> &'static str {
            self.0
        }

        fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
            next.serve(req).map(move |mut o| {
                self.back(req, &mut o);
                o
            })
        }

        fn passes_through(&self) -> bool {
            true
        }

        fn back(&self, _req: &Request, _outcome: &mut Outcome) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    /// Answers after a wait, or at once.
    struct Answer(bool);

    impl Plugin for Answer {
        fn name(&self) -> &'static str {
            "answer"
        }

        fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
            if self.0 {
                return Served::pending(async move {
                    tokio::task::yield_now().await;
                    Ok(Response::new(req.reply(), "answer"))
                });
            }
            Ok(Response::new(req.reply(), "answer")).into()
        }
    }

    fn request() -> Request {
        let wire = [0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        let addr = "127.0.0.1:53".parse().unwrap();
        Request::from_wire(&wire, addr, addr, Proto::Udp).unwrap()
    }

    #[tokio::test]
    async fn the_hooks_at_the_head_run_innermost_first_whichever_way_the_chain_is_served() {
        for waits in [false, true] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let chain = Chain {
                plugins: vec![
                    Arc::new(Mark("outer", seen.clone())),
                    Arc::new(Mark("inner", seen.clone())),
                    Arc::new(Answer(waits)),
                    // Not at the head: served through `Next` as before.
                    Arc::new(Mark("unreached", seen.clone())),
                ],
            };
            let req = request();
            let (head, next) = chain.split();
            assert_eq!(head.len(), 2);
            let mut outcome = next.serve(&req).await;
            Chain::back(head, &req, &mut outcome);
            assert!(outcome.is_ok());
            assert_eq!(*seen.lock().unwrap(), ["inner", "outer"]);

            seen.lock().unwrap().clear();
            assert!(chain.serve(&req).await.is_ok());
            assert_eq!(*seen.lock().unwrap(), ["inner", "outer"]);

            seen.lock().unwrap().clear();
            assert!(Next::new(&chain.plugins).serve(&req).await.is_ok());
            assert_eq!(*seen.lock().unwrap(), ["inner", "outer"]);
        }
    }
}
