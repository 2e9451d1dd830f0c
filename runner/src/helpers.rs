//! Where the runner finds the programs it starts (`holdfast-connmgr`,
//! `holdfast-proxy`, `holdfast-handler`): next to itself (a build folder,
//! `cargo install`'s bin folder), then in the libexec folder (`[runner]
//! libexec_dir`, `/usr/libexec/holdfast` by default, where the Debian
//! package puts them), then on `PATH`. When one is missing, the error names
//! every place looked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The helper programs Holdfast's runner may start.
pub const HELPERS: [&str; 3] = ["holdfast-connmgr", "holdfast-proxy", "holdfast-handler"];

/// Each helper's path.
#[derive(Debug, Clone, Default)]
pub struct Helpers {
    found: HashMap<&'static str, PathBuf>,
}

impl Helpers {
    /// Every helper in `dir` (for tests: nothing is checked).
    pub fn in_dir(dir: &Path) -> Helpers {
        Helpers {
            found: HELPERS.iter().map(|name| (*name, dir.join(name))).collect(),
        }
    }

    /// Finds each of `names` in `places`, in order.
    pub fn locate(names: &[&'static str], places: &[PathBuf]) -> Result<Helpers, String> {
        let mut found = HashMap::new();
        for name in names {
            let path = places
                .iter()
                .map(|dir| dir.join(name))
                .find(|path| is_executable(path))
                .ok_or_else(|| {
                    let looked: Vec<String> =
                        places.iter().map(|d| d.display().to_string()).collect();
                    format!(
                        "cannot find {name}: looked in {} (install it beside holdfast, in [runner] libexec_dir, or on PATH)",
                        looked.join(", ")
                    )
                })?;
            found.insert(*name, path);
        }
        Ok(Helpers { found })
    }

    /// The path of helper `name` (its bare name when it was not looked for).
    pub fn path(&self, name: &str) -> PathBuf {
        self.found
            .get(name)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(name))
    }
}

/// The places to look, in order: the runner's own folder, the libexec
/// folder, then each folder of `path_var` (`PATH`).
pub fn places(
    runner_dir: Option<&Path>,
    libexec_dir: &Path,
    path_var: Option<&std::ffi::OsStr>,
) -> Vec<PathBuf> {
    let mut places: Vec<PathBuf> = runner_dir.map(Path::to_path_buf).into_iter().collect();
    places.push(libexec_dir.to_path_buf());
    if let Some(path_var) = path_var {
        places.extend(std::env::split_paths(path_var).filter(|p| !p.as_os_str().is_empty()));
    }
    let mut seen = std::collections::HashSet::new();
    places.retain(|p| seen.insert(p.clone()));
    places
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_place_wins_and_a_missing_helper_names_every_place() {
        let root =
            std::env::temp_dir().join(format!("holdfast-helpers-test-{}", std::process::id()));
        let (beside, libexec, on_path) =
            (root.join("bin"), root.join("libexec"), root.join("path"));
        for dir in [&beside, &libexec, &on_path] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let install = |dir: &Path, name: &str| {
            let path = dir.join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        install(&libexec, "holdfast-proxy");
        install(&on_path, "holdfast-proxy");
        install(&on_path, "holdfast-handler");
        // Not executable: passed over.
        std::fs::write(beside.join("holdfast-handler"), "").unwrap();
        let path_var = std::env::join_paths([&on_path]).unwrap();
        let places = places(Some(&beside), &libexec, Some(&path_var));
        assert_eq!(
            places,
            vec![beside.clone(), libexec.clone(), on_path.clone()]
        );
        let found = Helpers::locate(&["holdfast-proxy", "holdfast-handler"], &places).unwrap();
        assert_eq!(found.path("holdfast-proxy"), libexec.join("holdfast-proxy"));
        assert_eq!(
            found.path("holdfast-handler"),
            on_path.join("holdfast-handler")
        );
        let err = Helpers::locate(&HELPERS, &places).unwrap_err();
        assert!(err.starts_with("cannot find holdfast-connmgr"), "{err}");
        for dir in [&beside, &libexec, &on_path] {
            assert!(err.contains(&dir.display().to_string()), "{err}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
