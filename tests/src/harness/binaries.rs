//! The binaries under test: next to this executable when they are there
//! (`holdfast-bench` in `target/<profile>/`), else next to this test
//! executable's `deps/` folder (`target/<profile>/`), unless
//! `HOLDFAST_BIN_DIR` names another folder.

use std::path::PathBuf;

/// The folder holding `holdfast`, `holdfast-connmgr`, ...
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HOLDFAST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let beside = exe.parent().expect("the executable's folder");
    let dir = if beside.join("holdfast").exists() {
        beside.to_path_buf()
    } else {
        beside
            .parent()
            .expect("target/<profile> folder")
            .to_path_buf()
    };
    for name in [
        "holdfast",
        "holdfast-connmgr",
        "holdfast-proxy",
        "holdfast-handler",
    ] {
        assert!(
            dir.join(name).exists(),
            "{} is missing: build the binaries first (cargo build --release, or the profile the tests run in)",
            dir.join(name).display()
        );
    }
    dir
}

/// Path of one binary.
pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Takes from `command`'s environment what cargo sets in a test's for the
/// crate under test (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...): a `cargo
/// build` started from a test must not inherit them. Build scripts watch
/// some of them (ring's reruns when `CARGO_MANIFEST_DIR` changes), so a
/// build run with them rebuilds ring and all above it, and the next plain
/// `cargo build` does again.
pub fn without_cargo_crate_env(command: &mut std::process::Command) -> &mut std::process::Command {
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        let crate_env = text.starts_with("CARGO_MANIFEST_")
            || text.starts_with("CARGO_PKG_")
            || text.starts_with("CARGO_BIN_")
            || matches!(
                text.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
            );
        if crate_env {
            command.env_remove(&name);
        }
    }
    command
}
