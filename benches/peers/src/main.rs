//! `bench-peers`: the closed-loop load otelraft is compared with, against
//! real replicated peers started by `benches/peers.sh`.
//!
//! - `etcd`: puts of SIZE-byte values (keys spread over the workers), each
//!   acknowledged after the etcd cluster committed it (Raft quorum, fsync).
//! - `nats`: JetStream publishes of SIZE-byte messages to an R3 file-backed
//!   stream, each waiting for the stream's publish ack. NATS 2.9 acks after
//!   the quorum stored the message, without an fsync per message.
//!
//! Each of CONCURRENCY workers sends one operation, waits for its ack, and
//! sends the next; workers are spread over the given endpoints. One JSON
//! line reports ops/s, payload MB/s (10^6 bytes of values or messages) and
//! ack latency p50/p99/max, in the same shape as `otelraft bench`.

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    system: System,
    /// Bytes per value or message.
    #[arg(long, global = true, default_value_t = 1024)]
    size: usize,
    /// Concurrent closed-loop workers.
    #[arg(long, global = true, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, global = true, default_value_t = 10)]
    seconds: u64,
}

#[derive(Subcommand)]
enum System {
    /// etcd v3 puts.
    Etcd {
        /// Client endpoints, e.g. http://127.0.0.1:23791 (repeat).
        #[arg(long = "endpoint", required = true)]
        endpoints: Vec<String>,
    },
    /// NATS JetStream publishes with the ack awaited.
    Nats {
        /// Server URLs, e.g. nats://127.0.0.1:24221 (repeat).
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// The stream's subject.
        #[arg(long, default_value = "bench.data")]
        subject: String,
        /// Create this file-backed stream on the subject first, if missing.
        #[arg(long)]
        stream: Option<String>,
        /// Its replicas.
        #[arg(long, default_value_t = 3)]
        replicas: usize,
    },
}

struct Worker {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Worker {
    fn new() -> Self {
        Worker {
            latencies_us: Vec::new(),
            errors: 0,
            first_error: None,
        }
    }

    fn record(&mut self, started: Instant, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.latencies_us.push(started.elapsed().as_micros() as u64),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Creates the R`replicas` file-backed stream, retrying while the
/// JetStream cluster elects its meta leader.
async fn create_stream(
    js: &async_nats::jetstream::Context,
    name: &str,
    subject: &str,
    replicas: usize,
) -> Result<(), String> {
    let config = async_nats::jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        num_replicas: replicas,
        storage: async_nats::jetstream::stream::StorageType::File,
        max_bytes: 2 << 30,
        discard: async_nats::jetstream::stream::DiscardPolicy::Old,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("stream {name} not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("create stream {name}: {e}")),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let cli = Cli::parse();
    let payload = bytes::Bytes::from(vec![b'x'; cli.size]);
    let deadline = Instant::now() + Duration::from_secs(cli.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    match &cli.system {
        System::Etcd { endpoints } => {
            // One client (one HTTP/2 connection) per endpoint, as etcd's own
            // benchmark tool shares connections between its workers.
            let mut clients = Vec::new();
            for e in endpoints {
                let c = etcd_client::Client::connect([e.as_str()], None)
                    .await
                    .map_err(|err| format!("connect {e}: {err}"))?;
                clients.push(c);
            }
            for w in 0..cli.concurrency {
                let mut client = clients[w % clients.len()].kv_client();
                let value = payload.to_vec();
                tasks.push(tokio::spawn(async move {
                    let mut r = Worker::new();
                    let key = format!("bench/{w}");
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let outcome = client
                            .put(key.as_str(), value.clone(), None)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string());
                        r.record(t0, outcome);
                    }
                    r
                }));
            }
        }
        System::Nats {
            urls,
            subject,
            stream,
            replicas,
        } => {
            let mut contexts = Vec::new();
            for u in urls {
                let c = async_nats::connect(u.as_str())
                    .await
                    .map_err(|err| format!("connect {u}: {err}"))?;
                contexts.push(async_nats::jetstream::new(c));
            }
            if let Some(name) = stream {
                create_stream(&contexts[0], name, subject, *replicas).await?;
            }
            for w in 0..cli.concurrency {
                let js = contexts[w % contexts.len()].clone();
                let payload = payload.clone();
                let subject = subject.clone();
                tasks.push(tokio::spawn(async move {
                    let mut r = Worker::new();
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let outcome = match js.publish(subject.clone(), payload.clone()).await {
                            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        r.record(t0, outcome);
                    }
                    r
                }));
            }
        }
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let r = t.await.map_err(|e| e.to_string())?;
        latencies.extend(r.latencies_us);
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let ops = latencies.len() as f64;
    let report = serde_json::json!({
        "seconds": seconds,
        "acked_requests": latencies.len(),
        "ops_per_second": ops / seconds,
        "payload_mb_per_second": ops * cli.size as f64 / seconds / 1e6,
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
        "latency_ms_max": latencies.last().map_or(0.0, |us| *us as f64 / 1000.0),
        "errors": errors,
        "first_error": first_error,
        "request_bytes": cli.size,
    });
    println!("{report}");
    Ok(())
}
