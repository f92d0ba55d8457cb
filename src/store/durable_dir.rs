//! Directory entries made durable: a new file or directory exists after a
//! crash only once the directory that names it has been fsynced.
//!
//! Invariant: every directory [`create`] makes is fsynced in its parent
//! before it returns, and [`sync`] is called on a directory after each new
//! file in it is complete, so a crash never loses a file whose contents
//! were already fsynced.

use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents, then fsyncs the parent of each
/// one it created, top down.
pub fn create(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync(parent)?;
        }
    }
    Ok(())
}

/// Fsyncs the directory `dir`, making the entries created in it durable.
pub fn sync(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    tests::record(dir);
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static SYNCED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record(dir: &Path) {
        SYNCED.with(|s| s.borrow_mut().push(dir.to_path_buf()));
    }

    /// The directories this thread fsynced since the last call.
    pub(crate) fn take_synced() -> Vec<PathBuf> {
        SYNCED.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    #[test]
    fn creating_nested_directories_syncs_the_parent_of_each_new_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("b");
        take_synced();
        super::create(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(
            take_synced(),
            vec![root.path().to_path_buf(), root.path().join("a")]
        );
        // Nothing new: nothing to sync.
        super::create(&dir).unwrap();
        assert!(take_synced().is_empty());
    }

    #[test]
    fn a_new_database_file_is_synced_in_its_directory_and_an_old_one_is_not() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        take_synced();
        drop(crate::store::tables::open_db(&dir, 1 << 20).unwrap());
        assert_eq!(take_synced(), vec![root.path().to_path_buf(), dir.clone()]);
        drop(crate::store::tables::open_db(&dir, 1 << 20).unwrap());
        assert!(take_synced().is_empty());
    }
}
