//! A TCP proxy that delays every byte by a settable amount, both ways.
//!
//! This kernel has no netem qdisc, so latency between nodes comes from here:
//! each node's peer port is reached only through its own proxy, which runs in
//! the node's namespace (so partitions by source address still apply) and
//! forwards to the node's peer listener on loopback.
//!
//! Invariant: bytes leave in the order they arrived, each no earlier than its
//! arrival plus the delay in force when it arrived. A lower delay set later
//! cannot reorder bytes already queued.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks queued per direction before the reader waits for the writer.
const QUEUE_CHUNKS: usize = 256;

/// The delay knob, shared with the nemesis.
#[derive(Clone, Default)]
pub struct Delay(Arc<AtomicU64>);

impl Delay {
    /// Sets the one-way delay in milliseconds (0 for none).
    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Accepts on `listener` and forwards each connection to `upstream`, until
/// the runtime stops.
pub async fn serve(listener: TcpListener, upstream: SocketAddr, delay: Delay) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let delay = delay.clone();
        tokio::spawn(async move {
            // The upstream is down (node killed): drop the client, which then
            // sees the same reset it would see without a proxy.
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pipe(cr, sw, delay.clone()));
            tokio::spawn(pipe(sr, cw, delay));
        });
    }
}

/// Copies `from` to `to`, each chunk held back by the delay. Ends (closing
/// `to` for writing) when `from` ends or either side fails.
async fn pipe<R, W>(mut from: R, mut to: W, delay: Delay)
where
    R: AsyncReadExt + Unpin + Send + 'static,
    W: AsyncWriteExt + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let due = Instant::now() + delay.get();
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
