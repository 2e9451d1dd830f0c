//! The README's quick start, run as a newcomer would: its shell block,
//! taken from the README as written, pasted into bash in the repository's
//! folder. It must end with the client having printed both publishes and
//! leave no process of its own running. Its own test binary: it uses the
//! default ports.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::time::Duration;

/// The first ```sh block under "## Quick start".
fn quick_start_block(readme: &str) -> String {
    let section = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("README has a Quick start section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a ```sh block in the Quick start section");
    block.to_owned()
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_works_pasted_as_one_block() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = quick_start_block(&readme);
    let scratch = std::env::temp_dir().join(format!("hf-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut bash = tokio::process::Command::new("bash");
    // Its `cargo build --release` as from a shell, not from this test.
    holdfast_tests::harness::binaries::without_cargo_crate_env(bash.as_std_mut());
    let run = bash
        .arg("-c")
        .arg(&block)
        .current_dir(&root)
        // Anything it writes to a temp folder goes to the scratch folder.
        .env("TMPDIR", &scratch)
        .kill_on_drop(true)
        .output();
    // The block builds the release binaries first: minutes on a clean clone.
    let out = tokio::time::timeout(Duration::from_secs(1200), run)
        .await
        .expect("the quick start finishes")
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    for line in ["welcome", "hello from curl", "hello from holdfast-publish"] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}\n{stderr}");
    }
    // What it started stops by itself (the runner drains, then exits).
    let mut left = Vec::new();
    for _ in 0..100 {
        left = processes_with("examples/grip_origin.py");
        left.extend(processes_with("./target/release/holdfast"));
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "left running: {left:?}");
    let written: Vec<_> = std::fs::read_dir(&scratch).unwrap().flatten().collect();
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(written.is_empty(), "left in TMPDIR: {written:?}");
}

#[test]
fn the_block_is_found() {
    let readme =
        "x\n## Quick start\n\ntext\n\n```sh\necho hi\n```\n\nmore\n## Next\n```sh\nno\n```\n";
    assert_eq!(quick_start_block(readme), "echo hi");
}
