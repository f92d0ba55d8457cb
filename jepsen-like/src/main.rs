//! jepsen-like: a fault-injection harness and checker for otelraft, in the
//! style of Jepsen, on one Linux machine.
//!
//! # Layout
//!
//! - [`topology`]: network namespaces, the bridge, and per-namespace runtimes.
//! - [`proxy`]: the delaying TCP proxy in front of every node's peer port.
//! - [`nodes`]: otelraft processes and their configs.
//! - [`world`]: the system under test and the fault primitives.
//! - [`sinks`]: the recording Prometheus proxy and the strict Loki receiver.
//! - [`workload`]: OTLP clients with unique record ids and ok/fail/unknown.
//! - [`nemesis`]: the seeded fault schedule.
//! - [`checker`]: lost, duplicated, unexpected, failed-but-delivered.
//! - [`stats`]: availability, latency, recovery after each heal.
//! - [`plot`]: the SVG of acks, latency and export lag with faults shaded.
//! - [`run`]: one run from set-up to report.
//! - [`table`]: the markdown table of several runs' results.

mod checker;
mod history;
mod nemesis;
mod nodes;
mod plot;
mod proxy;
mod run;
mod sinks;
mod stats;
mod table;
mod topology;
mod workload;
mod world;

use std::path::PathBuf;

use testkit::loki;

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Parser)]
#[command(
    name = "jepsen-like",
    about = "Fault injection and checking for otelraft"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One run: set up, load and faults, heal, drain, check, report.
    Run(run::RunArgs),
    /// Remove namespaces, links and processes a killed run left behind.
    Clean,
    /// Print a markdown table of runs' results (run directories as arguments).
    Table {
        /// Run directories, each with a results.json.
        dirs: Vec<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    tracing_init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Clean => {
            topology::cleanup_leftovers();
            std::process::ExitCode::SUCCESS
        }
        Cmd::Table { dirs } => match table::print(&dirs) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jepsen-like: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Cmd::Run(args) => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("jepsen-like: cannot start the runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let code = rt.block_on(run::main(args));
            // Dropping the runtime here, before exit, lets every guard run.
            drop(rt);
            code
        }
    }
}

fn tracing_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JEPSEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

/// Where runs write by default.
fn default_out_root() -> PathBuf {
    PathBuf::from("target/jepsen-like")
}
