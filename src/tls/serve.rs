//! How the HTTP listeners (OTLP/HTTP and admin) serve their connections:
//! hyper with a header-read timeout that also closes idle HTTP/1
//! connections, HTTP/2 stream and keep-alive limits, and a graceful stop
//! that lets in-flight requests finish. Each request carries its
//! connection's [`ConnInfo`](super::ConnInfo) as an extension.

use std::future::Future;
use std::io;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use super::connections::ConnectionsSection;
use super::Incoming;

/// Serves `router` on `incoming` until `shutdown` resolves, then stops
/// accepting and waits for in-flight requests.
pub async fn serve_http(
    mut incoming: Incoming,
    router: axum::Router,
    connections: &ConnectionsSection,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(connections.header_read_timeout())
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(connections.max_streams_per_connection)
        .keep_alive_interval(Some(connections.keepalive_interval()))
        .keep_alive_timeout(connections.keepalive_interval());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            conn = incoming.next() => conn,
            () = &mut shutdown => break,
        };
        let Some(conn) = conn else { break };
        let info = conn.info().clone();
        let remote = info.remote;
        // Every request carries its connection's `ConnInfo`, as tonic's do.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(info.clone());
                request
            },
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(conn), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(incoming);
    graceful.shutdown().await;
    Ok(())
}
