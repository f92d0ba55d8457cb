//! The `otelraft` binary: parses the command line and hands it to
//! `otelraft::cli::command`, which runs `serve` and every operator tool.

use std::process::ExitCode;

use clap::Parser;
use otelraft::cli::command::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    otelraft::tls::install_crypto_provider();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otelraft: {e}");
            ExitCode::FAILURE
        }
    }
}
