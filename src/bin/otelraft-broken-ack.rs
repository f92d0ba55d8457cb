//! The jepsen-like checker's self-test binary: `otelraft` built with the
//! `broken-ack-for-tests` feature, which acknowledges before commit. It has
//! its own name so the canonical `otelraft` binary is never the broken one,
//! not even while `jepsen-like/run --broken-ack` builds it.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    otelraft::cli::command::main().await
}
