//! Reading the archive: listing its blocks, fetching and checking one, and
//! verifying the whole (`otelraft archive verify`). Restore, replay and
//! the archive CLI read through it. Everything here works on the object
//! store alone, so it runs whether or not a node is up, and never writes
//! or deletes an object.
//!
//! Blocks are downloaded one at a time, so memory stays bounded by the
//! largest block however big the archive is.

use std::io::Write;

use futures::TryStreamExt;

use super::block;
use super::bounds;
use super::{Archive, ArchiveError};

/// One block object of the archive, as listed: its key and the range the
/// key names. Nothing here is verified; `verify` downloads the object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockInfo {
    /// The object key.
    pub key: String,
    /// First index, from the key.
    pub first_index: u64,
    /// Last index, from the key.
    pub last_index: u64,
    /// Object size in bytes.
    pub size: u64,
    /// When the store last modified the object, RFC 3339.
    pub last_modified: String,
}

impl BlockInfo {
    /// Entries the block holds, by its key.
    pub fn entries(&self) -> u64 {
        (self.last_index - self.first_index).saturating_add(1)
    }
}

/// A listed block for `first..=last` under prefix `p`, for tests of code
/// that walks listings.
#[cfg(test)]
pub(crate) fn listed_block(first: u64, last: u64) -> BlockInfo {
    BlockInfo {
        key: format!("p/blocks/{first:020}-{last:020}.otrb"),
        first_index: first,
        last_index: last,
        size: 1,
        last_modified: String::new(),
    }
}

/// Everything under the blocks folder: the blocks, and the objects whose
/// keys are not block keys (reported, never read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Block objects, by first index then last index.
    pub blocks: Vec<BlockInfo>,
    /// Keys under the blocks folder that are not block keys.
    pub foreign: Vec<String>,
}

/// Lists the blocks folder and sorts the blocks by range.
pub async fn list_objects(archive: &Archive) -> Result<Listing, ArchiveError> {
    let prefix = block::blocks_prefix(&archive.prefix);
    let mut stream = archive.store.list(Some(&prefix));
    let mut listing = Listing::default();
    while let Some(meta) = stream
        .try_next()
        .await
        .map_err(ArchiveError::store(prefix.as_ref()))?
    {
        match block::parse_block_key(&archive.prefix, &meta.location) {
            Some((first_index, last_index)) => listing.blocks.push(BlockInfo {
                key: meta.location.to_string(),
                first_index,
                last_index,
                size: meta.size,
                last_modified: meta.last_modified.to_rfc3339(),
            }),
            None => listing.foreign.push(meta.location.to_string()),
        }
    }
    listing
        .blocks
        .sort_by_key(|b| (b.first_index, b.last_index));
    listing.foreign.sort();
    Ok(listing)
}

/// The blocks of the archive, sorted by first index. Objects under the
/// blocks folder that are not blocks are skipped with a warning.
pub async fn list_blocks(archive: &Archive) -> Result<Vec<BlockInfo>, ArchiveError> {
    let listing = list_objects(archive).await?;
    for key in &listing.foreign {
        tracing::warn!(key = %key, "object in the archive's blocks folder is not a block; ignored");
    }
    Ok(listing.blocks)
}

/// Output errors have no variant of their own in [`ArchiveError`] yet.
pub(crate) fn output(e: std::io::Error) -> ArchiveError {
    ArchiveError::Output(e)
}

/// What `verify` found. The ranges it reasons about are the keys' ranges,
/// so one corrupt block is reported as corrupt, not also as a gap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks downloaded (including corrupt ones).
    pub blocks: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Lowest index covered by a verified block's key.
    pub first_index: Option<u64>,
    /// Highest index covered.
    pub last_index: Option<u64>,
    /// Index ranges (inclusive) between two blocks that no block covers.
    pub gaps: Vec<(u64, u64)>,
    /// Pairs of block keys whose ranges intersect.
    pub overlaps: Vec<(String, String)>,
    /// Block keys that failed verification, with why.
    pub corrupt: Vec<(String, String)>,
    /// Records of the valid blocks by signal: (logs, metrics, traces).
    pub records: (u64, u64, u64),
    /// Objects in the blocks folder that are not blocks (not an error).
    pub foreign: Vec<String>,
    /// What the bucket records of the archive's extent.
    pub bounds: super::bounds::Bounds,
    /// Index ranges (inclusive) at the start or the end that the bounds
    /// say the archive should hold and no block covers.
    pub missing: Vec<(u64, u64)>,
}

impl VerifyReport {
    /// True when the blocks cover one contiguous range, from where the
    /// cluster began (or retention expired it) to the end the cluster
    /// recorded, and every block is valid.
    pub fn ok(&self) -> bool {
        self.gaps.is_empty()
            && self.overlaps.is_empty()
            && self.corrupt.is_empty()
            && self.missing.is_empty()
    }
}

/// Downloads the block `info` names, verifies it (checksum, every entry,
/// header against key) and returns it with its size in bytes.
pub async fn fetch_block(
    archive: &Archive,
    info: &BlockInfo,
) -> Result<(block::OpenedBlock, u64), ArchiveError> {
    let bytes = archive.get_if_present(&info.key).await?.ok_or_else(|| {
        ArchiveError::Missing(format!(
            "block {} is gone from {}",
            info.key, archive.location
        ))
    })?;
    let opened = check_block(info, &bytes).map_err(|why| {
        ArchiveError::Missing(format!("block {} does not verify: {why}", info.key))
    })?;
    Ok((opened, bytes.len() as u64))
}

/// Opens a downloaded block and checks that its header names the range of
/// its key.
fn check_block(info: &BlockInfo, bytes: &[u8]) -> Result<block::OpenedBlock, String> {
    let opened = block::open(bytes).map_err(|e| e.to_string())?;
    let h = &opened.header;
    if (h.first_index, h.last_index) != (info.first_index, info.last_index) {
        return Err(format!(
            "header holds {}..={}, the key names {}..={}",
            h.first_index, h.last_index, info.first_index, info.last_index
        ));
    }
    Ok(opened)
}

/// `otelraft archive verify`: downloads every block whose range ends at or
/// after `from` (all blocks without it), one at a time; checks each one
/// fully (checksum, decompression, every entry, header against key) and the
/// continuity of the ranges; prints one line per block and per problem,
/// then a summary. Problems are in the report, not errors: the error is
/// for an archive that cannot be read at all.
pub async fn verify(
    archive: &Archive,
    out: &mut impl Write,
    from: Option<u64>,
    cluster_cursor: Option<u64>,
) -> Result<VerifyReport, ArchiveError> {
    // The head before the listing and the expiry after the downloads, so
    // that a block recorded, or a block expired, while verify runs is not
    // reported missing.
    let mut report = VerifyReport::default();
    let head = record(&mut report, "head.json", bounds::read_head(archive).await);
    let listing = list_objects(archive).await?;
    report.foreign = listing.foreign;
    // The key and last index of the block that reaches furthest so far.
    let mut reach: Option<(String, u64)> = None;
    for info in listing
        .blocks
        .iter()
        .filter(|b| from.is_none_or(|f| b.last_index >= f))
    {
        let Some(bytes) = archive.get_if_present(&info.key).await? else {
            writeln!(out, "gone     {} (deleted since the listing)", info.key).map_err(output)?;
            continue;
        };
        report.blocks += 1;
        report.bytes += bytes.len() as u64;
        match check_block(info, &bytes) {
            Ok(opened) => {
                let h = &opened.header;
                report.records.0 += h.logs_records;
                report.records.1 += h.metrics_records;
                report.records.2 += h.traces_records;
                writeln!(
                    out,
                    "ok       {}  {}..={}  {} entries  {} bytes  sha256 {}",
                    info.key,
                    info.first_index,
                    info.last_index,
                    h.entry_count,
                    bytes.len(),
                    opened.checksum
                )
                .map_err(output)?;
            }
            Err(why) => {
                writeln!(out, "CORRUPT  {}: {why}", info.key).map_err(output)?;
                report.corrupt.push((info.key.clone(), why));
            }
        }

        report.first_index = Some(
            report
                .first_index
                .map_or(info.first_index, |f| f.min(info.first_index)),
        );
        report.last_index = Some(
            report
                .last_index
                .map_or(info.last_index, |l| l.max(info.last_index)),
        );
        match &reach {
            Some((prev_key, prev_last)) if info.first_index <= *prev_last => {
                writeln!(out, "OVERLAP  {prev_key} and {}", info.key).map_err(output)?;
                report.overlaps.push((prev_key.clone(), info.key.clone()));
            }
            Some((_, prev_last)) if info.first_index > prev_last.saturating_add(1) => {
                let gap = (prev_last + 1, info.first_index - 1);
                writeln!(out, "GAP      {}..={} is in no block", gap.0, gap.1).map_err(output)?;
                report.gaps.push(gap);
            }
            _ => {}
        }
        if reach
            .as_ref()
            .is_none_or(|(_, last)| info.last_index > *last)
        {
            reach = Some((info.key.clone(), info.last_index));
        }
    }

    let origin = record(
        &mut report,
        "origin.json",
        bounds::read_origin(archive).await,
    );
    let expired = record(
        &mut report,
        "expired.json",
        bounds::read_expired(archive).await,
    );
    let extent = bounds::Bounds {
        origin,
        expired_before: expired,
        archived_through: head,
    };
    report.bounds = extent;
    print_bounds(out, &extent, cluster_cursor)?;
    for (key, why) in report
        .corrupt
        .iter()
        .filter(|(k, _)| k.starts_with("bounds/"))
    {
        writeln!(out, "CORRUPT  {key}: {why}").map_err(output)?;
    }

    // The start: what neither the origin nor retention accounts for. An
    // archive from before the records says nothing of its start.
    let expected_first = extent.expected_first().max(from.unwrap_or(0));
    let check_start = !extent.is_legacy();
    // The end: what the cluster says it archived, or the bucket's head.
    let expected_last = match (head, cluster_cursor) {
        (Some(h), Some(c)) => Some(h.max(c)),
        (h, c) => h.or(c),
    };
    let missing_start = match report.first_index {
        _ if !check_start => None,
        Some(first) if first > expected_first => Some((expected_first, first - 1)),
        None => expected_last
            .filter(|l| *l >= expected_first)
            .map(|l| (expected_first, l)),
        _ => None,
    };
    // The end: blocks must reach what the cluster recorded as archived.
    let missing_end = match (report.last_index, expected_last) {
        (Some(last), Some(head)) if head > last => Some((last + 1, head)),
        _ => None,
    };
    for range in [missing_start, missing_end].into_iter().flatten() {
        writeln!(
            out,
            "MISSING  {}..={} is in no block: not before the origin, not expired, and not past the recorded end",
            range.0, range.1
        )
        .map_err(output)?;
        report.missing.push(range);
    }

    let range = match (report.first_index, report.last_index) {
        (Some(f), Some(l)) => format!("indices {f}..={l}"),
        _ => "no indices".to_string(),
    };
    writeln!(
        out,
        "{} blocks, {} bytes, {range}; records: logs {}, metrics {}, traces {}",
        report.blocks, report.bytes, report.records.0, report.records.1, report.records.2
    )
    .map_err(output)?;
    for key in &report.foreign {
        writeln!(out, "not a block, ignored: {key}").map_err(output)?;
    }
    if report.ok() {
        writeln!(out, "OK").map_err(output)?;
    } else {
        writeln!(
            out,
            "FAILED: {} gaps, {} overlaps, {} corrupt blocks, {} missing ranges",
            report.gaps.len(),
            report.overlaps.len(),
            report.corrupt.len(),
            report.missing.len()
        )
        .map_err(output)?;
    }
    Ok(report)
}

/// A bounds record, or `None` with the reason counted as a corrupt object
/// when it cannot be read.
fn record(
    report: &mut VerifyReport,
    name: &str,
    read: Result<Option<u64>, ArchiveError>,
) -> Option<u64> {
    match read {
        Ok(v) => v,
        Err(e) => {
            report
                .corrupt
                .push((format!("bounds/{name}"), e.to_string()));
            None
        }
    }
}

fn print_bounds(
    out: &mut impl Write,
    bounds: &bounds::Bounds,
    cluster_cursor: Option<u64>,
) -> Result<(), ArchiveError> {
    if bounds.is_legacy() {
        writeln!(
            out,
            "origin   no bounds records (nothing archived yet, or an archive written before them): the start is not checked"
        )
        .map_err(output)?;
    } else {
        match bounds.origin {
            Some(o) => writeln!(out, "origin   the cluster's archive began at index {o}"),
            None => writeln!(
                out,
                "origin   not recorded, though the cluster records its head here: taken as index 0"
            ),
        }
        .map_err(output)?;
    }
    if let Some(e) = bounds.expired_before {
        writeln!(
            out,
            "expired  blocks before index {e} were deleted by retention"
        )
        .map_err(output)?;
    }
    if let Some(h) = bounds.archived_through {
        writeln!(
            out,
            "head     the cluster recorded blocks through index {h}"
        )
        .map_err(output)?;
    }
    if let Some(c) = cluster_cursor {
        writeln!(out, "cluster  the cluster's archive cursor is {c}").map_err(output)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
