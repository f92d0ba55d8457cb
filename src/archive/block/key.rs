//! The object keys blocks are stored under: `{prefix}/blocks/` and one
//! zero-padded `{first}-{last}.otrb` name per block.

use object_store::path::Path;

/// Extension of block object names.
const BLOCK_EXT: &str = ".otrb";

/// Width of the zero-padded indices in block keys: `u64::MAX` has 20 digits,
/// so every index fits and key order is index order.
const INDEX_DIGITS: usize = 20;

/// The folder of every block of the cluster: `{prefix}/blocks`.
pub fn blocks_prefix(prefix: &str) -> Path {
    Path::from(format!("{prefix}/blocks"))
}

/// The key of the block `first..=last`:
/// `{prefix}/blocks/{first:020}-{last:020}.otrb`. Zero-padded, so the
/// lexicographic order of keys (what object stores list in) is index order.
pub fn block_key(prefix: &str, first: u64, last: u64) -> Path {
    Path::from(format!(
        "{prefix}/blocks/{first:0w$}-{last:0w$}{BLOCK_EXT}",
        w = INDEX_DIGITS
    ))
}

/// The range of a block key made by [`block_key`] with the same prefix, or
/// `None` for any other object (wrong folder, name, padding, or a range
/// whose last index is below its first).
pub fn parse_block_key(prefix: &str, key: &Path) -> Option<(u64, u64)> {
    let mut parts = key.prefix_match(&blocks_prefix(prefix))?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let stem = name.as_ref().strip_suffix(BLOCK_EXT)?;
    let (first, last) = stem.split_once('-')?;
    let index = |s: &str| {
        if s.len() == INDEX_DIGITS && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u64>().ok()
        } else {
            None
        }
    };
    let (first, last) = (index(first)?, index(last)?);
    (first <= last).then_some((first, last))
}
