//! The HTTP listener: HTTP/1.1 with a deadline for request headers, a cap on open
//! connections, the peer's address for each request, and a graceful stop.
//!
//! `axum::serve` sets no timer, so hyper's header read timeout never fires there: a client
//! that sends half a request line held its connection (and a task) for as long as it
//! liked. Here each connection must deliver its headers within
//! [`ServeOptions::header_read_timeout`], at most [`ServeOptions::max_connections`] are
//! open at once (further ones are closed on accept), and body reads are bounded by the
//! router's own timeout layer.

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Open connections at most; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Open connections from one peer address at most, so that one client cannot take
    /// every connection (behind a proxy, the proxy is the peer: raise it there).
    pub max_connections_per_address: usize,
    /// A connection must send a request's headers within this long (and between
    /// keep-alive requests, the next request's headers).
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 1024,
            max_connections_per_address: 64,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// How long a graceful stop waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish (for up to ten seconds).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    // One warning a second at most while connections are refused: a flood must not flood
    // the log as well.
    let mut last_refusal_logged: Option<std::time::Instant> = None;
    // Connections hold a receiver: a value sent tells them to stop gracefully, and when
    // every receiver is gone they have all finished.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, as axum does.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = Arc::clone(&slots)
            .try_acquire_owned()
            .ok()
            .and_then(|slot| {
                PerAddress::admit(&per_address, peer.ip(), options.max_connections_per_address)
                    .map(|mine| (slot, mine))
            });
        let Some((slot, mine)) = admitted else {
            if last_refusal_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                tracing::warn!(
                    peer = %peer,
                    limit = options.max_connections,
                    per_address = options.max_connections_per_address,
                    "connection limit reached; closing new connections"
                );
                last_refusal_logged = Some(std::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _mine = mine;
            // HTTP/1.1 only: browsers speak it to a plain-HTTP server, and a TLS proxy in
            // front does too; h2c would need read limits of its own.
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
                _ = stop_rx.changed() => {
                    connection.as_mut().graceful_shutdown();
                    if let Err(e) = connection.as_mut().await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
            }
            drop(stop_rx);
        });
    }
    drop(listener);
    drop(stop_rx);
    // No receiver left means no connection left: nothing to tell.
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, stop_tx.closed()).await;
    Ok(())
}

/// Open connections per peer address.
#[derive(Default)]
struct PerAddress {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One open connection of a peer address; closing it (dropping this) counts it off.
struct AddressSlot {
    table: Arc<PerAddress>,
    address: std::net::IpAddr,
}

impl PerAddress {
    fn admit(
        table: &Arc<PerAddress>,
        address: std::net::IpAddr,
        limit: usize,
    ) -> Option<AddressSlot> {
        let mut open = table.open.lock().ok()?;
        let count = open.entry(address).or_insert(0);
        if *count >= limit.max(1) {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: Arc::clone(table),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.table.open.lock() {
            if let Some(count) = open.get_mut(&self.address) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&self.address);
                }
            }
        }
    }
}
