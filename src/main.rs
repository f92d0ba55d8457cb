//! The `otelraft` binary: hands the command line to
//! `otelraft::cli::command`, which runs `serve` and every operator tool.

/// jemalloc, so that RSS stays close to the bytes the node holds: glibc's
/// per-thread arenas kept freed multi-megabyte entries resident, and a
/// leader replicating a backlog of large entries stood 40–80% above what
/// jemalloc needs (see "Memory bound of a node" in `docs/architecture.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    otelraft::cli::command::main().await
}
