//! The accept loop every listener runs, with or without TLS.
//!
//! One loop serves all four listeners so that the TLS handshake, the
//! refusal of plaintext clients and the peer's node identity are handled in
//! one place. Handshakes run in their own tasks (bounded in number and in
//! time), so a slow or silent client never holds up the next connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::connections::{ConnGuard, ConnLimits, ConnTable, Refusal};
use super::identity;
use super::material::ServerTls;
use super::Listener;
use crate::log_limit::LogLimiter;

/// Handshakes in progress per listener; a connection beyond it is closed
/// at once (the accept loop never waits for a slot).
const MAX_HANDSHAKES: usize = 1024;
/// Handshakes in progress from one client address: one address cannot
/// take every slot.
const MAX_HANDSHAKES_PER_IP: usize = 128;
/// How long a new connection may stay silent before its first byte.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections handed over but not yet picked up by the server.
const READY_QUEUE: usize = 64;
/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// What an HTTP client that spoke plaintext to a TLS port reads.
const PLAINTEXT_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 42\r\n\r\nthis port requires TLS: use https:// here\n";

/// What a request handler may know about its connection: a request
/// extension on every listener (tonic adds it on the gRPC ones,
/// [`serve_http`](super::serve_http) on the HTTP ones).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The node its certificate names, if it presented one from the
    /// cluster CA (verified during the handshake).
    pub node: Option<u64>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// This connection's slots for expensive work.
    pub work: WorkSlots,
}

/// The slots one connection's requests take before expensive work (OTLP
/// decoding), shared by all its streams. A handler takes one of these
/// before the node-wide slot, so the node's queue holds at most
/// `connections.decodes_per_connection` places per connection, and a client
/// multiplexing many streams on one connection waits behind itself.
#[derive(Clone, Debug)]
pub struct WorkSlots(Arc<Semaphore>);

impl WorkSlots {
    /// `slots` of them (at least one).
    pub fn new(slots: usize) -> Self {
        WorkSlots(Arc::new(Semaphore::new(slots.max(1))))
    }

    /// The semaphore to take a slot from.
    pub fn semaphore(&self) -> Arc<Semaphore> {
        self.0.clone()
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One accepted connection, ready for HTTP or gRPC.
pub struct Conn {
    io: Io,
    info: ConnInfo,
    /// Counts this connection against its listener and client until the
    /// server drops it.
    _slot: ConnGuard,
}

impl Conn {
    /// What the server may know about this connection.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// Aborts the accept loop when the listener is dropped.
struct AcceptTask(tokio::task::JoinHandle<()>);

impl Drop for AcceptTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A bound listener yielding ready connections: plain TCP, or TLS when the
/// node runs with `tls.enabled`.
pub struct Incoming {
    ready: mpsc::Receiver<Conn>,
    local: SocketAddr,
    _task: AcceptTask,
}

impl Incoming {
    /// Starts accepting on `listener` for `kind`, with TLS if `tls` is set,
    /// keeping at most what `limits` allows established.
    pub fn new(
        listener: TcpListener,
        kind: Listener,
        tls: Option<Arc<ServerTls>>,
        limits: ConnLimits,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let work_per_connection = limits.work_per_connection;
        let table = ConnTable::new(limits);
        let task = tokio::spawn(accept_loop(
            listener,
            kind,
            tls,
            table,
            work_per_connection,
            tx,
        ));
        Ok(Incoming {
            ready,
            local,
            _task: AcceptTask(task),
        })
    }

    /// Plain TCP with the default caps (tests).
    pub fn plain(listener: TcpListener, kind: Listener) -> io::Result<Self> {
        Self::new(listener, kind, None, ConnLimits::default())
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next ready connection; `None` once the accept loop has ended.
    pub async fn next(&mut self) -> Option<Conn> {
        self.ready.recv().await
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<Conn>> + Send + 'static {
        futures::stream::unfold(self, |mut incoming| async move {
            let conn = incoming.ready.recv().await?;
            Some((Ok(conn), incoming))
        })
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.ready.recv().await {
            Some(conn) => {
                let remote = conn.info.remote;
                (conn, remote)
            }
            // The accept loop ends only when aborted with this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    tls: Option<Arc<ServerTls>>,
    table: Arc<ConnTable>,
    work_per_connection: usize,
    ready: mpsc::Sender<Conn>,
) {
    // Handshakes in progress: per listener and per client, like
    // established connections.
    let handshakes = ConnTable::new(ConnLimits {
        max: MAX_HANDSHAKES,
        per_client: MAX_HANDSHAKES_PER_IP,
        member_reserve: 0,
        members: Default::default(),
        work_per_connection: 1,
    });
    let logs = Arc::new(Logs::default());
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: back off, retry.
                if let Some(suppressed) = logs.accept.allow() {
                    tracing::warn!(listener = kind.label(), error = %e, suppressed, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match ConnTable::enter(&table, remote.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                if let Some(suppressed) = logs.full.allow() {
                    let cap = match refusal {
                        Refusal::Listener => "connections.max_per_listener",
                        Refusal::Client => "connections.max_per_client",
                    };
                    tracing::warn!(
                        listener = kind.label(),
                        %remote,
                        cap,
                        suppressed,
                        "connection limit reached; connection closed"
                    );
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls.clone() else {
            let conn = Conn {
                io: Io::Plain(tcp),
                info: ConnInfo {
                    remote,
                    node: None,
                    tls: false,
                    work: WorkSlots::new(work_per_connection),
                },
                _slot: slot,
            };
            if ready.send(conn).await.is_err() {
                return;
            }
            continue;
        };
        let conn_slot = slot;
        let Ok(handshake_slot) = ConnTable::enter(&handshakes, remote.ip()) else {
            if let Some(suppressed) = logs.busy.allow() {
                tracing::warn!(
                    listener = kind.label(),
                    %remote,
                    suppressed,
                    "too many TLS handshakes in progress; connection closed"
                );
            }
            continue;
        };
        let ready = ready.clone();
        let logs = logs.clone();
        tokio::spawn(async move {
            let _handshake_slot = handshake_slot;
            let outcome = tokio::time::timeout(
                tls.handshake_timeout,
                handshake(
                    tcp,
                    remote,
                    kind,
                    &tls,
                    &logs,
                    conn_slot,
                    work_per_connection,
                ),
            )
            .await;
            match outcome {
                Ok(Some(conn)) => {
                    let _ = ready.send(conn).await;
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::debug!(listener = kind.label(), %remote, "TLS handshake timed out")
                }
            }
        });
    }
}

/// Refuses a plaintext client with a clear log line (and, on HTTP ports, a
/// clear reply), or completes the TLS handshake.
async fn handshake(
    mut tcp: TcpStream,
    remote: SocketAddr,
    kind: Listener,
    tls: &ServerTls,
    logs: &Logs,
    slot: ConnGuard,
    work_per_connection: usize,
) -> Option<Conn> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        if let Some(suppressed) = logs.plaintext.allow() {
            tracing::warn!(
                listener = kind.label(),
                %remote,
                suppressed,
                "plaintext connection to a TLS listener refused: the client must use TLS (https://, or TLS credentials for gRPC)"
            );
        }
        if kind.speaks_http1() {
            let _ = tcp.write_all(PLAINTEXT_REPLY).await;
            let _ = tcp.shutdown().await;
            // Read what the client sent, so closing does not reset the
            // connection before it has read the reply.
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        return None;
    }
    match TlsAcceptor::from(tls.config(kind)).accept(tcp).await {
        Ok(stream) => {
            let node = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(identity::node_id);
            Some(Conn {
                io: Io::Tls(Box::new(stream)),
                info: ConnInfo {
                    remote,
                    node,
                    tls: true,
                    work: WorkSlots::new(work_per_connection),
                },
                _slot: slot,
            })
        }
        Err(e) => {
            if let Some(suppressed) = logs.handshake.allow() {
                tracing::warn!(
                    listener = kind.label(),
                    %remote,
                    error = %e,
                    suppressed,
                    "TLS handshake failed"
                );
            }
            None
        }
    }
}

/// Errors that concern one connection, not the listener: skipped at once,
/// as `axum::serve` does.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The rate-limited warnings of one listener: anyone who can connect can
/// cause them, so each kind is logged at most once per second.
#[derive(Default)]
struct Logs {
    accept: LogLimiter,
    full: LogLimiter,
    busy: LogLimiter,
    plaintext: LogLimiter,
    handshake: LogLimiter,
}
