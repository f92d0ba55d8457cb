//! The `otelraft` binary: hands the command line to
//! `otelraft::cli::command`, which runs `serve` and every operator tool.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    otelraft::cli::command::main().await
}
