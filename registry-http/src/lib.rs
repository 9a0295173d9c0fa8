//! The HTTP/1.1 front of kelp's schema registry: hyper on tokio, a task per connection.
//!
//! This crate owns sockets, HTTP framing, media types, size and time bounds. It holds no
//! registry logic: each request that passes the checks becomes an [`OwnedRequest`] and goes to a
//! [`Handler`] (usually a channel into the task that owns `kelp_registry::Registry`), whose
//! [`Response`] is written back. Behaviour follows Confluent's Schema Registry where clients can
//! see it:
//! - request bodies typed `application/vnd.schemaregistry.v1+json`,
//!   `application/vnd.schemaregistry+json`, `application/json` or `application/octet-stream`, or
//!   untyped, are read as JSON; another type is a 415;
//! - responses are `application/vnd.schemaregistry.v1+json` unless the `Accept` header prefers
//!   one of the other two JSON types; nothing acceptable is a 406. The raw-schema endpoints carry
//!   the same JSON type, as Confluent's do;
//! - errors made here use Confluent's body, `{"error_code": status, "message": ...}`.
//!
//! Bounds: [`Limits::max_body`] (413, checked against `Content-Length` before reading and while
//! reading a chunked body), a header read timeout, a body read timeout (408),
//! [`Limits::max_connections`] open connections, and a grace period at shutdown after which
//! unfinished connections are cut.
//!
//! Plugging in the task that owns the registry:
//! ```no_run
//! use kelp_registry::{Outcome, Registry};
//! use kelp_registry_http::{Handler, Job, Limits, serve};
//!
//! # async fn run() -> std::io::Result<()> {
//! let (jobs, mut inbox) = tokio::sync::mpsc::channel::<Job>(256);
//! tokio::spawn(async move {
//!     let registry = Registry::new("kafka-cluster-id");
//!     while let Some((request, reply)) = inbox.recv().await {
//!         let response = match registry.handle(&request.as_request()) {
//!             Outcome::Reply(response) => response,
//!             // The real owner appends `records` to `_schemas` and applies them first.
//!             Outcome::Write { records: _, reply } => reply,
//!         };
//!         let _ = reply.send(response);
//!     }
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! serve(listener, Handler::channel(jobs), Limits::default(), std::future::pending()).await
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::StatusCode;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use kelp_registry::Response;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

pub mod media;

/// A request that passed the HTTP checks, owning its parts so it can cross a channel: the
/// registry node's own request type.
pub use kelp_registry::node::OwnedRequest;

/// The future a [`Handler`] returns.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

/// One request for the registry's owner and where to send its answer. Dropping the sender
/// answers 500 (error code 50001).
pub type Job = (OwnedRequest, oneshot::Sender<Response>);

/// Answers requests. Each call runs in a task of its own, so a handler that panics costs its
/// request a 500 and nothing more, and a client that disconnects does not cancel it (a write to
/// `_schemas` that has started is seen through).
#[derive(Clone)]
pub struct Handler(Arc<dyn Fn(OwnedRequest) -> ResponseFuture + Send + Sync>);

impl Handler {
    /// A handler from an async function.
    pub fn from_fn<F, Fut>(f: F) -> Self
    where
        F: Fn(OwnedRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        Self(Arc::new(move |req| Box::pin(f(req))))
    }

    /// A handler that sends each request, with a reply slot, to the task that owns the registry.
    /// The channel's bound is the bound on requests waiting for that task; when it is full,
    /// connections wait. A closed channel or a dropped reply slot answers 500 (50001).
    pub fn channel(jobs: mpsc::Sender<Job>) -> Self {
        Self::from_fn(move |req| {
            let jobs = jobs.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                if jobs.send((req, reply)).await.is_err() {
                    return Response::store_error("The schema registry is not running");
                }
                answer.await.unwrap_or_else(|_| Response::store_error("The schema registry dropped the request"))
            }
        })
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

/// Size and time bounds of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body read, in bytes; a larger one is a 413.
    pub max_body: usize,
    /// How long a client may take to send a request's headers (also bounds an idle keep-alive
    /// connection's wait for its next request).
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body; slower is a 408.
    pub body_read_timeout: Duration,
    /// Open connections at most; past it, new connections wait in the listen backlog.
    pub max_connections: usize,
    /// After shutdown is asked, how long in-flight requests have to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 16 << 20,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What every connection task shares.
struct Shared {
    handler: Handler,
    limits: Limits,
}

/// Serves the registry's HTTP API on `listener` until `shutdown` resolves. Then it stops
/// accepting, lets requests in flight finish for up to [`Limits::shutdown_grace`], cuts the
/// connections still open, and returns. Errors of single connections are logged, not returned;
/// failed accepts (such as running out of file descriptors) are logged and retried.
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let shared = Arc::new(Shared { handler, limits });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    error!(error = %e, "registry connection task failed");
                }
            }
            accepted = accept(&listener, &slots) => match accepted {
                Ok((stream, peer, permit)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let service = service_fn(move |req| answer(Arc::clone(&shared), req));
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    conns.spawn(async move {
                        let _permit = permit;
                        if let Err(e) = conn.await {
                            debug!(%peer, error = %e, "registry connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "registry accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        warn!(open = conns.len(), "registry shutdown grace over; closing connections");
        conns.abort_all();
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Takes a connection slot, then a connection. Cancel-safe: a dropped call loses neither.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = Arc::clone(slots).acquire_owned().await.map_err(io::Error::other)?;
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
}

type HttpResponse = hyper::Response<Full<Bytes>>;

/// One request, start to finish, logged at debug.
async fn answer(shared: Arc<Shared>, req: hyper::Request<Incoming>) -> Result<HttpResponse, Infallible> {
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let response = respond(&shared, req).await;
    let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    debug!(%method, path = uri.path(), status = response.status().as_u16(), micros, "registry request");
    Ok(response)
}

async fn respond(shared: &Shared, req: hyper::Request<Incoming>) -> HttpResponse {
    let (parts, body) = req.into_parts();
    // Jersey checks the request's type before the response's: a 415 wins over a 406.
    if !media::body_type_accepted(parts.headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes)) {
        let media = negotiate(&parts.headers).unwrap_or(media::V1_JSON);
        return encode(&Response::error(415, 415, "HTTP 415 Unsupported Media Type"), media, false);
    }
    let Some(media) = negotiate(&parts.headers) else {
        return encode(&Response::error(406, 406, "HTTP 406 Not Acceptable"), media::V1_JSON, false);
    };
    let body = match read_body(body, &shared.limits).await {
        Ok(body) => body,
        // The rest of the body is unread: the connection cannot carry another request.
        Err(refusal) => return encode(&refusal, media, true),
    };
    let request = OwnedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        body,
    };
    let reply = match tokio::spawn((shared.handler.0)(request)).await {
        Ok(reply) => reply,
        Err(e) => {
            error!(error = %e, "registry handler failed");
            Response::store_error("The schema registry failed to answer")
        }
    };
    encode(&reply, media, false)
}

fn negotiate(headers: &HeaderMap) -> Option<&'static str> {
    media::negotiate(headers.get_all(header::ACCEPT).iter().map(HeaderValue::as_bytes))
}

/// Reads the whole body within the size and time bounds; the refusal to send otherwise.
async fn read_body(body: Incoming, limits: &Limits) -> Result<Vec<u8>, Response> {
    // A request without a body (a GET) has nothing to read: no read and no timer.
    if body.is_end_stream() {
        return Ok(Vec::new());
    }
    let max = limits.max_body;
    let too_large = || Response::error(413, 413, format!("HTTP 413 Payload Too Large: the body exceeds {max} bytes"));
    // A declared length over the bound is refused before a byte of it is read.
    if body.size_hint().exact().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(limits.body_read_timeout, Limited::new(body, max).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes().into()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Response::error(400, 400, format!("HTTP 400 Bad Request: reading the body failed: {e}"))),
        Err(_) => Err(Response::error(408, 408, "HTTP 408 Request Timeout: the body did not arrive in time")),
    }
}

/// The HTTP form of a registry response. Every body, raw schema text included, is labelled with
/// the negotiated JSON type, as Confluent labels it.
fn encode(reply: &Response, media: &'static str, close: bool) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body_bytes())));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
