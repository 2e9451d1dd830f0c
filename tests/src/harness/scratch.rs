//! Scratch folders in the temp folder, named `hf-<what>-<pid>-<n>` (the
//! test command checks none is left after a run): each caller removes its
//! own when done.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A new, empty folder `hf-<what>-<pid>-<n>` in the temp folder.
pub fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hf-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}
