//! The HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process is alive), `/readyz`
//! (partitions assigned and a broker up). It is bound before Kafka is contacted, so Prometheus
//! and probes get answers from the first second.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// Readiness as the consumer sees it; the HTTP server only reads it.
#[derive(Debug, Default)]
pub struct Readiness {
    pub partitions_assigned: AtomicBool,
    pub broker_up: AtomicBool,
    /// A message waits for its Avro schema while the registry is unreachable.
    pub schema_registry_down: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.partitions_assigned.load(Ordering::Relaxed)
            && self.broker_up.load(Ordering::Relaxed)
            && !self.schema_registry_down.load(Ordering::Relaxed)
    }
}

/// Shared state the endpoints read.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

/// Bind `addr` now (so a port clash fails at startup with a clear error).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for /metrics: {e}"))
}

/// Serve until `shutdown` is cancelled; in-flight requests finish first.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // EMFILE and friends: log, back off briefly, keep serving.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = service_fn(move |req| handle(req, state.clone()));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(err) = res {
                        tracing::debug!(%peer, error = %err, "http connection error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<HttpState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(state.metrics.render()),
        ),
        (&Method::GET | &Method::HEAD, "/healthz") => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n"))
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            if state.readiness.is_ready() {
                (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n"))
            } else {
                let why: &'static [u8] = if !state.readiness.broker_up.load(Ordering::Relaxed) {
                    b"not ready: no Kafka broker up\n"
                } else if state.readiness.schema_registry_down.load(Ordering::Relaxed) {
                    b"not ready: waiting for the Avro schema registry (a message waits for its schema)\n"
                } else {
                    b"not ready: no partitions assigned\n"
                };
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    Bytes::from_static(why),
                )
            }
        }
        (_, "/metrics" | "/healthz" | "/readyz") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"method not allowed\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: try /metrics, /healthz or /readyz\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(resp)
}
