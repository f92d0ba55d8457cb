//! `otelraft serve`: starts every listener of one node and stops them
//! together.
//!
//! Shutdown order: drain (refuse new OTLP requests, finish the accepted
//! ones, hand off leadership; see `drain`), stop the listeners, stop Raft,
//! then wait for every holder of the node to let go so the database closes
//! cleanly and the next start needs no repair.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Duties;
use crate::config::{Material, NodeConfig};
use crate::ingest::{self, Ingest, IngestSettings};
use crate::metrics::Metrics;
use crate::node::{Node, NodeError, Submitter};
use crate::peer::PeerService;
use crate::tls::{ConnLimits, Incoming, Listener, MemberAddrs};

async fn bind(what: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { what, addr, source })
}

/// Runs one node until `shutdown` resolves, then drains and stops.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let metrics = Arc::new(Metrics::new());
    // Bind everything first so a port conflict fails fast, before Raft runs.
    let peer_listener = bind("peer", config.listen.peer).await?;
    let admin_listener = bind("admin", config.listen.admin).await?;
    let grpc_listener = bind("OTLP gRPC", config.listen.otlp_grpc).await?;
    let http_listener = bind("OTLP HTTP", config.listen.otlp_http).await?;

    // The files are read once; listeners and outbound calls share them.
    let material = Material::load(&config)?;
    let tls = material.server_tls.clone();
    // The peer port keeps slots for the members: known at start from the
    // configuration, then from the membership as it changes.
    let members = MemberAddrs::default();
    members.set(
        resolve(
            config
                .cluster
                .initial_members
                .iter()
                .map(|m| m.peer_addr.as_str()),
        )
        .await,
    );
    let incoming = |listener: TcpListener, kind: Listener| {
        let members = (kind == Listener::Peer).then(|| members.clone());
        let limits = ConnLimits::from_section(&config.connections, members);
        Incoming::new(listener, kind, tls.clone(), limits).map_err(|e| NodeError::Server {
            what: kind.label(),
            message: e.to_string(),
        })
    };
    let peer_listener = incoming(peer_listener, Listener::Peer)?;
    let admin_listener = incoming(admin_listener, Listener::Admin)?;
    let grpc_listener = incoming(grpc_listener, Listener::OtlpGrpc)?;
    let http_listener = incoming(http_listener, Listener::OtlpHttp)?;

    let node = Node::open(config.clone(), metrics.clone(), &material).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // The peer service stops only after Raft: until then the node still
    // follows, and a leader that could not hand off still answers.
    let (peer_stop_tx, mut peer_stop_rx) = watch::channel(false);
    let peer_stopped = async move {
        let _ = peer_stop_rx.wait_for(|s| *s).await;
    };

    // The composition root: the node core, the submit path over it, and
    // each duty with the state it owns (which admin reports).
    let submitter = Submitter::new(node.clone());
    let duties = Duties::default();
    let c = &config.connections;
    let peer_server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(c.max_streams_per_connection))
        .http2_keepalive_interval(Some(c.keepalive_interval()))
        .http2_keepalive_timeout(Some(c.keepalive_interval()))
        .add_service(PeerService::server(
            node.clone(),
            submitter.clone(),
            config.peer.max_message_bytes,
        ))
        .serve_with_incoming_shutdown(peer_listener.into_stream(), peer_stopped);
    let peer_task = tokio::spawn(peer_server);
    node.bootstrap_if_configured().await?;
    let metrics_task = tokio::spawn(node.clone().publish_raft_metrics());
    let members_task = tokio::spawn(track_member_addrs(node.clone(), members));
    let mut tasks = Vec::new();
    if node.is_witness() {
        if !config.sinks.is_empty() {
            tracing::warn!(
                "role = \"witness\": the configured sinks are ignored; a witness never exports or archives"
            );
        }
    } else {
        tasks.extend(
            crate::export::spawn_exporters(&node, &duties.export)
                .map_err(|e| NodeError::Raft(format!("exporters: {e}")))?,
        );
        tasks.extend(
            crate::archive::archiver::spawn(&node, duties.archive.clone())
                .map_err(|e| NodeError::Raft(format!("archive: {e}")))?,
        );
    }
    tasks.push(metrics_task);
    tasks.push(members_task);
    tasks.push(tokio::spawn(reload_on_sighup(node.clone(), tls.clone())));
    tasks.push(tokio::spawn(crate::trim::run(node.clone())));
    tasks.push(tokio::spawn(crate::witness::run(
        node.clone(),
        duties.witness.clone(),
    )));
    let admin_task = tokio::spawn(crate::admin::serve(
        admin_listener,
        node.clone(),
        duties.clone(),
        stopped(),
    ));
    // After the peer and admin servers: the leader verifies a joining node
    // by calling it back.
    tasks.push(tokio::spawn(crate::join::run(node.clone())));

    let settings = IngestSettings {
        node_id: config.node_id,
        node_label_key: config.ingest.node_label_key.clone(),
        node_label_value: config.name.clone(),
        max_request_bytes: config.ingest.max_request_bytes,
        auth: node.tokens().cloned(),
        limits: config.ingest.limits.clone(),
        decode_memory_bytes: config.ingest.decode_memory_bytes,
        decode_concurrency: config.ingest.decode_concurrency,
        decode_wait: std::time::Duration::from_millis(config.ingest.decode_wait_ms),
        body_timeout: config.connections.body_timeout(),
        request_timeout: config.connections.request_timeout(),
        connections: config.connections.clone(),
    };
    let ingest = Arc::new(Ingest::new(Arc::new(submitter), settings, metrics.clone()));
    let grpc_task = tokio::spawn(ingest::serve_grpc(grpc_listener, ingest.clone(), stopped()));
    let http_task = tokio::spawn(ingest::serve_http(http_listener, ingest, stopped()));
    tracing::info!(
        node_id = config.node_id,
        role = %config.role,
        otlp_grpc = %config.listen.otlp_grpc,
        otlp_http = %config.listen.otlp_http,
        peer = %config.listen.peer,
        admin = %config.listen.admin,
        tls = config.tls.enabled,
        "node started"
    );
    let bound = config.memory_bound(config.peer_count());
    tracing::info!(
        memory_bound_mib = bound.total() >> 20,
        terms = %bound,
        "memory bound of this configuration (snapshots aside; docs/architecture.md)"
    );

    // [auth] without [tls] is refused by validation (the peer port would
    // stay open); TLS without tokens is allowed, but worth saying.
    if config.tls.enabled && !config.auth.enabled {
        tracing::warn!(
            "tls.enabled without [auth]: the traffic is encrypted, but anyone who can reach the OTLP ports can write and anyone who can reach the admin port can administer"
        );
    }

    #[cfg(feature = "broken-ack-for-tests")]
    tracing::error!(
        "built with the broken-ack-for-tests feature: requests are acknowledged BEFORE they commit; \
         this build exists only for the jepsen-like checker's self-test"
    );

    shutdown.await;
    tracing::info!(node_id = config.node_id, "shutting down: draining");
    crate::drain::drain(&node, &duties.drain).await;
    let _ = stop_tx.send(true);
    // Accepted requests finished during the drain; what is left is bounded
    // so the service manager's stop timeout is not overrun.
    let bound = std::time::Duration::from_secs(10);
    for (what, task) in [("OTLP gRPC", grpc_task), ("OTLP HTTP", http_task)] {
        match tokio::time::timeout(bound, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(server = what, error = %e, "server stopped with an error")
            }
            Ok(Err(e)) => tracing::warn!(server = what, error = %e, "server task failed"),
            Err(_) => tracing::warn!(server = what, "server still busy; stopping anyway"),
        }
    }
    if tokio::time::timeout(bound, admin_task).await.is_err() {
        tracing::warn!("admin server still busy; stopping anyway");
    }
    if let Err(e) = node.raft().shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    let _ = peer_stop_tx.send(true);
    let _ = tokio::time::timeout(bound, peer_task).await;
    // Raft has stopped: the background tasks can do nothing more, and each
    // holds the node, which must go for the database to close.
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    close_storage(node).await;
    tracing::info!(node_id = config.node_id, "stopped");
    Ok(())
}

/// Reloads certificates, keys and tokens on SIGHUP (which would otherwise
/// end the process without a drain). The same files as at start-up are
/// read again and checked the same way; if any is unusable, nothing
/// changes and the error names the field. New connections and requests
/// use the new material; established connections keep theirs.
async fn reload_on_sighup(node: Arc<Node>, server_tls: Option<Arc<crate::tls::ServerTls>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        match reload(&node, server_tls.as_deref()) {
            Ok(what) => tracing::info!(reloaded = %what, "SIGHUP: reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload refused; keeping the current certificates and tokens")
            }
        }
    }
}

/// One reload; says what was reloaded.
fn reload(
    node: &Node,
    server_tls: Option<&crate::tls::ServerTls>,
) -> Result<String, crate::config::ConfigError> {
    let config = node.config();
    let mut done = Vec::new();
    // Everything is read and checked before anything is swapped.
    let files = match server_tls {
        Some(_) => {
            let files = crate::tls::material::TlsFiles::load(&config.tls)?;
            files.check_node(config.node_id, &config.advertised_hosts())?;
            Some(files)
        }
        None => None,
    };
    let tokens = match node.tokens() {
        Some(tokens) => Some((tokens, crate::auth::TokenSets::read(&config.auth)?)),
        None => None,
    };
    if let (Some(server_tls), Some(files)) = (server_tls, &files) {
        server_tls.reload(files)?;
        node.set_client_tls(files.client());
        done.push("certificates");
    }
    if let Some((tokens, sets)) = tokens {
        tokens.replace(sets);
        done.push("tokens");
    }
    Ok(if done.is_empty() {
        "nothing (neither [tls] nor [auth] is enabled)".to_string()
    } else {
        done.join(" and ")
    })
}

/// Waits for the leader-only tasks (exporters, archiver) to see Raft stop
/// and let go of the node, then for the database to close.
async fn close_storage(node: Arc<Node>) {
    let mut closed = node.storage_closed();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while Arc::strong_count(&node) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let holders = Arc::strong_count(&node);
    drop(node);
    let outcome = tokio::time::timeout_at(deadline, closed.wait_for(|c| c.is_some())).await;
    match outcome.ok().and_then(|r| r.ok().and_then(|c| *c)) {
        Some(true) => tracing::info!("storage closed cleanly"),
        _ => tracing::warn!(
            holders,
            "storage still open at exit; the next start repairs the database"
        ),
    }
}

/// Resolves on SIGINT or SIGTERM: what `otelraft serve` stops on.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// The IP addresses `host:port`s resolve to; names that do not resolve now
/// are left out (the membership refresh tries again).
async fn resolve<'a>(addrs: impl Iterator<Item = &'a str>) -> Vec<std::net::IpAddr> {
    let mut ips = Vec::new();
    for addr in addrs {
        if let Ok(found) = tokio::net::lookup_host(addr).await {
            ips.extend(found.map(|a| a.ip()));
        }
    }
    ips
}

/// Keeps the peer listener's member addresses current as membership
/// changes (joins, replacements), every few seconds.
async fn track_member_addrs(node: Arc<Node>, members: MemberAddrs) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let m = node.raft_metrics();
        let peers: Vec<String> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(_, member)| member.peer_addr.clone())
            .collect();
        members.set(resolve(peers.iter().map(String::as_str)).await);
    }
}
