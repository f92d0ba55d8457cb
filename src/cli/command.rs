//! The command line: its clap definitions and the dispatch of each command
//! to the tool that does it. `main.rs` only parses and calls [`run`].

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use super::archive_command::ArchiveCmd;
use super::restore::RestoreOptions;
use crate::config::{Material, NodeConfig};

/// The command line.
#[derive(Parser)]
#[command(
    name = "otelraft",
    version,
    about = "OpenTelemetry ingestion store replicated with Raft"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run one node.
    Serve {
        /// The node's TOML config.
        #[arg(long, env = "OTELRAFT_CONFIG")]
        config: PathBuf,
    },
    /// Run a 3-node cluster on 127.0.0.1-3 with embedded defaults.
    LocalCluster {
        /// Where configs, data and logs go.
        #[arg(long, default_value = "otelraft-local")]
        dir: PathBuf,
        /// Make node 3 a witness (2 data nodes + 1 witness).
        #[arg(long)]
        witness: bool,
        /// TLS on every listener, mutual TLS between the nodes; a
        /// development CA and certificates are made in DIR/tls.
        #[arg(long)]
        tls: bool,
    },
    /// Administer a running cluster through any member.
    Admin {
        /// A member's admin endpoint (https:// when the cluster runs TLS).
        #[arg(long, default_value = "http://127.0.0.1:4480")]
        endpoint: String,
        /// The cluster CA (PEM) to verify an https:// endpoint with.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// A client certificate (PEM) from the cluster CA to present.
        #[arg(long, requires = "key", requires = "ca")]
        cert: Option<PathBuf>,
        /// The key of --cert (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// An admin token, when the cluster runs with `[auth]` (prefer
        /// --token-file or the environment: arguments are visible to other
        /// local users).
        #[arg(long, env = "OTELRAFT_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A file whose first token line is an admin token (the format of
        /// `auth.admin_tokens_file`); wins over --token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        command: crate::cli::admin::AdminCommand,
    },
    /// Print a stopped node's log as JSON lines.
    Inspect {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// OTLP load (logs or metrics, HTTP or gRPC): acked records/s, MB/s,
    /// latency, refusals, fsyncs per ack, server CPU per million records.
    Bench {
        /// OTLP endpoint(s), e.g. http://127.0.0.1:4318 (HTTP) or
        /// http://127.0.0.1:4317 with --grpc; requests rotate across them.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Send over OTLP gRPC instead of HTTP.
        #[arg(long)]
        grpc: bool,
        /// Which signal to send.
        #[arg(long, value_enum, default_value_t = crate::cli::bench::Signal::Logs)]
        signal: crate::cli::bench::Signal,
        /// Offer this many records/s in total instead of sending as fast as
        /// acknowledgements return; latency then counts from each
        /// request's scheduled time.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Log records per request.
        #[arg(long, default_value_t = 500)]
        records: usize,
        /// Body bytes per record.
        #[arg(long, default_value_t = 200)]
        record_bytes: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Admin URL(s) of the members: fsyncs, CPU seconds and refusal
        /// reasons are read from their /metrics.
        #[arg(long = "admin")]
        admin: Vec<String>,
        /// Varied service logs from a pool of distinct requests (for
        /// archive and compression figures) instead of repeated bodies.
        #[arg(long)]
        realistic: bool,
        /// The CA (PEM) of https:// targets and admin URLs.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// A file whose first token line is an ingest token, sent as
        /// `Authorization: Bearer` with every request.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Inspect the archive the node's config points at.
    Archive {
        /// A node's TOML config (its `[archive]` section is used).
        #[arg(long, env = "OTELRAFT_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: ArchiveCmd,
    },
    /// Rebuild this node's storage from the archive after the cluster lost
    /// every disk. Run it on one node with an empty data directory, then
    /// start every node; see docs/archive.md.
    Restore {
        /// The node's TOML config: data_dir, cluster.initial_members (the
        /// new voters), [archive] and the sinks.
        #[arg(long, env = "OTELRAFT_CONFIG")]
        config: PathBuf,
        /// Restore only the blocks ending at or before this index.
        #[arg(long)]
        upto: Option<u64>,
        /// Move the blocks after the restored range (left by --upto or a
        /// gap) to <prefix>/set-aside/<restore id>/ so the new cluster can
        /// archive that range again.
        #[arg(long)]
        set_aside_later: bool,
        /// Print the report as JSON at the end.
        #[arg(long)]
        json: bool,
    },
    /// Create a development CA (unless DIR/ca.pem exists) and a
    /// certificate per node, for `[tls]`.
    Certs {
        /// Where the files go.
        #[arg(long, default_value = "otelraft-certs")]
        dir: PathBuf,
        /// Node ids, e.g. 1,2,3.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        nodes: Vec<u64>,
        /// Extra host names or IPs every node certificate covers (besides
        /// localhost, 127.0.0.1 and 127.0.0.<id>).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Replace existing node certificates.
        #[arg(long)]
        force: bool,
    },
    /// Validate a config file and print the effective settings, secrets
    /// redacted.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
}

/// The whole program behind `main`: parses the command line, runs it and
/// turns the outcome into the exit code, the error on stderr.
pub async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    crate::tls::install_crypto_provider();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otelraft: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command `cli` names; the error is what the operator reads.
pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Serve { config } => {
            init_tracing();
            match NodeConfig::load(&config) {
                Err(e) => Err(e.to_string()),
                Ok(c) => crate::server::run(c, crate::server::wait_for_signal())
                    .await
                    .map_err(|e| e.to_string()),
            }
        }
        Cmd::LocalCluster { dir, witness, tls } => {
            crate::cli::local_cluster::run(dir, witness, tls)
                .await
                .map_err(|e| e.to_string())
        }
        Cmd::Admin {
            endpoint,
            ca,
            cert,
            key,
            token,
            token_file,
            command,
        } => admin(endpoint, ca, cert.zip(key), token, token_file, command).await,
        Cmd::Certs {
            dir,
            nodes,
            hosts,
            days,
            force,
        } => certs(dir, nodes, hosts, days, force),
        Cmd::Archive { config, command } => super::archive_command::run(config, command).await,
        Cmd::Inspect { data_dir } => {
            let stdout = std::io::stdout();
            crate::cli::inspect::dump(&data_dir, &mut stdout.lock())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Cmd::Bench {
            targets,
            grpc,
            signal,
            rate,
            concurrency,
            records,
            record_bytes,
            seconds,
            admin,
            realistic,
            ca,
            token_file,
        } => match bench_secrets(ca, token_file) {
            Err(e) => Err(e),
            Ok((ca_pem, token)) => {
                let spec = crate::cli::bench::BenchSpec {
                    targets,
                    grpc,
                    signal,
                    rate,
                    concurrency,
                    records,
                    record_bytes,
                    duration: std::time::Duration::from_secs(seconds),
                    admin,
                    realistic,
                    ca_pem,
                    token,
                };
                match crate::cli::bench::run(spec).await {
                    Ok(report) => serde_json::to_string_pretty(&report)
                        .map(|s| println!("{s}"))
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
        Cmd::Restore {
            config,
            upto,
            set_aside_later,
            json,
        } => {
            restore(
                config,
                RestoreOptions {
                    upto,
                    set_aside_later,
                },
                json,
            )
            .await
        }
        Cmd::CheckConfig { file } => check_config(&file),
    }
}

/// `otelraft check-config`: parse, validate and load every file the config
/// names, as `serve` would, then print the effective settings.
fn check_config(file: &Path) -> Result<(), String> {
    let config = NodeConfig::load(file).map_err(|e| e.to_string())?;
    Material::load(&config).map_err(|e| e.to_string())?;
    print!("{}", config.to_redacted_toml());
    let bound = config.memory_bound(config.peer_count());
    println!("\n# memory bound (snapshots aside; docs/architecture.md): {bound}");
    Ok(())
}

async fn restore(path: PathBuf, options: RestoreOptions, json: bool) -> Result<(), String> {
    use super::restore::restore;
    let config = NodeConfig::load(&path).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let report = restore(&config, &options, &mut out)
        .await
        .map_err(|e| e.to_string())?;
    if json {
        let doc = serde_json::to_string(&report).map_err(|e| e.to_string())?;
        println!("{doc}");
    }
    Ok(())
}

/// The CA and the ingest token `otelraft bench` sends with, from files.
fn bench_secrets(
    ca: Option<PathBuf>,
    token_file: Option<PathBuf>,
) -> Result<(Option<Vec<u8>>, Option<String>), String> {
    let ca_pem = ca
        .as_ref()
        .map(|path| std::fs::read(path).map_err(|e| format!("--ca {}: {e}", path.display())))
        .transpose()?;
    let token = token_file
        .as_deref()
        .map(|path| crate::auth::first_token_in(path).map_err(|e| format!("--token-file: {e}")))
        .transpose()?;
    Ok((ca_pem, token))
}

async fn admin(
    endpoint: String,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    command: crate::cli::admin::AdminCommand,
) -> Result<(), String> {
    let tls = match ca {
        Some(ca) => {
            let identity = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
            Some(crate::tls::ClientTls::from_files(&ca, identity).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let token = match token_file {
        Some(path) => {
            Some(crate::auth::first_token_in(&path).map_err(|e| format!("--token-file: {e}"))?)
        }
        None => token,
    };
    crate::cli::admin::run(&endpoint, tls, token, command).await
}

fn certs(
    dir: PathBuf,
    nodes: Vec<u64>,
    hosts: Vec<String>,
    days: u32,
    force: bool,
) -> Result<(), String> {
    let request = crate::cli::certs::CertsRequest {
        dir,
        nodes,
        hosts,
        days,
        force,
    };
    let report = crate::cli::certs::generate(&request).map_err(|e| e.to_string())?;
    let verb = if report.ca_created {
        "created"
    } else {
        "reused"
    };
    println!("CA {verb}: {}", report.ca.display());
    for (cert, key) in &report.nodes {
        println!("{} {}", cert.display(), key.display());
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OTELRAFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // Colour only on a terminal: logs written to files and journals stay
    // greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}
