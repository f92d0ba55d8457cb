//! `otelraft archive …`: opens the archive a node config names and runs
//! the sub-command (ls, verify, cat, replay).

use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

use crate::config::NodeConfig;

#[derive(Subcommand)]
pub enum ArchiveCmd {
    /// List the blocks: key, index range, size, upload time.
    Ls {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Download every block, check its checksum and contents, and check
    /// that the blocks cover the log without gaps or overlaps.
    Verify {
        /// Only blocks ending at or after this index.
        #[arg(long)]
        from: Option<u64>,
    },
    /// Print a block's entries as JSON lines (OTLP JSON for data).
    Cat {
        /// A block key, or a log index inside the wanted block.
        #[arg(required_unless_present = "all")]
        block: Option<String>,
        /// Every block, in index order.
        #[arg(long)]
        all: bool,
    },
    /// Backfill a sink from archived blocks, outside the cluster: the
    /// exporters' batches, written under the name `<sink>-replay`.
    Replay {
        /// A configured sink's name, or `prometheus` / `loki` for the one
        /// sink of that kind.
        #[arg(long)]
        to: String,
        /// First log index to replay.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last log index to replay (default: the archive's end).
        #[arg(long)]
        upto: Option<u64>,
        /// Print the report as JSON at the end.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `cmd` against the archive `config` names.
pub async fn run(config: Option<PathBuf>, cmd: ArchiveCmd) -> Result<(), String> {
    use super::archive as tool;
    use crate::archive::{reader, Archive};
    let path = config.ok_or("--config (or OTELRAFT_CONFIG) is required")?;
    let config = NodeConfig::load(&path).map_err(|e| e.to_string())?;
    if !config.archive.enabled {
        return Err(format!("{}: archive.enabled is false", path.display()));
    }
    let archive = Archive::open(&config.archive).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        ArchiveCmd::Ls { json } => tool::ls(&archive, &mut out, json)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        ArchiveCmd::Verify { from } => {
            let cursor = match cluster_archive_cursor(&config).await {
                Ok(cursor) => cursor,
                Err(why) => {
                    let _ = writeln!(
                        out,
                        "cluster  not asked ({why}): the end is checked against the bucket's head record only"
                    );
                    None
                }
            };
            let report = reader::verify(&archive, &mut out, from, cursor)
                .await
                .map_err(|e| e.to_string())?;
            if report.ok() {
                Ok(())
            } else {
                Err(format!(
                    "archive {} failed verification: {} gaps, {} overlaps, {} corrupt blocks, missing {:?}",
                    archive.location,
                    report.gaps.len(),
                    report.overlaps.len(),
                    report.corrupt.len(),
                    report.missing
                ))
            }
        }
        ArchiveCmd::Cat { block, all } => {
            let keys = match (all, block) {
                (true, _) => reader::list_blocks(&archive)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|b| b.key)
                    .collect(),
                (false, Some(block)) => vec![block],
                (false, None) => return Err("name a block key or index, or pass --all".into()),
            };
            for key in keys {
                tool::cat(&archive, &mut out, &key)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        ArchiveCmd::Replay {
            to,
            from,
            upto,
            json,
        } => {
            let (name, sink) = pick_sink(&config, &to)?;
            let report = crate::cli::replay::replay(&archive, name, sink, from, upto, &mut out)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                let doc = serde_json::to_string(&report).map_err(|e| e.to_string())?;
                writeln!(out, "{doc}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

/// The sink `to` names: a configured sink's name, or a kind (`prometheus`,
/// `loki`) that exactly one configured sink has.
fn pick_sink<'a>(
    config: &'a NodeConfig,
    to: &str,
) -> Result<(&'a str, &'a crate::config::sink::SinkConfig), String> {
    use crate::config::sink::SinkKind;
    if let Some((name, sink)) = config.sinks.get_key_value(to) {
        return Ok((name, sink));
    }
    let matching: Vec<_> = config
        .sinks
        .iter()
        .filter(|(_, s)| match to {
            "prometheus" => s.kind == SinkKind::PrometheusRemoteWrite,
            "loki" => matches!(s.kind, SinkKind::Loki | SinkKind::LokiOtlp),
            _ => false,
        })
        .collect();
    match matching.as_slice() {
        [(name, sink)] => Ok((name.as_str(), sink)),
        [] => Err(format!(
            "--to {to}: no such sink; configured: {:?}",
            config.sinks.keys().collect::<Vec<_>>()
        )),
        _ => Err(format!(
            "--to {to}: several sinks of that kind, name one: {:?}",
            matching.iter().map(|(n, _)| n).collect::<Vec<_>>()
        )),
    }
}

/// The cluster's archive cursor (`None` before its first block), from the
/// admin API of the node `config` describes, as that node's own tools
/// would call it (TLS and the admin token when the config has them).
async fn cluster_archive_cursor(config: &NodeConfig) -> Result<Option<u64>, String> {
    let tls = if config.tls.enabled {
        Some(
            crate::tls::ClientTls::from_files(
                &config.tls.ca_file,
                Some((
                    config.tls.cert_file.as_path(),
                    config.tls.key_file.as_path(),
                )),
            )
            .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let authorization = crate::auth::Tokens::load(&config.auth)
        .map_err(|e| e.to_string())?
        .and_then(|t| t.member_authorization());
    let client = crate::peer::admin_client::AdminClient::for_member(
        &config.advertise.admin,
        std::time::Duration::from_secs(3),
        tls.as_ref(),
        authorization,
    )
    .map_err(|e| e.to_string())?;
    let status: serde_json::Value = client
        .get_json("/admin/v1/status")
        .await
        .map_err(|e| format!("node {} at {}: {e}", config.node_id, config.advertise.admin))?;
    let archive = &status["archive"];
    match (archive["blocks"].as_u64(), archive["cursor"].as_u64()) {
        (Some(0), _) => Ok(None),
        (Some(_), Some(cursor)) => Ok(Some(cursor)),
        _ => Err(format!("node {} reports no archive cursor", config.node_id)),
    }
}
