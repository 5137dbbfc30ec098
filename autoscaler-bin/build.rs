//! Stamps the git commit into the binary as `AUTOSCALER_GIT_COMMIT` (for `--version`).
//!
//! Order: the `AUTOSCALER_GIT_COMMIT` environment variable (the Dockerfile passes it, as
//! its build context has no `.git`), else `git rev-parse HEAD` of this checkout, else
//! `unknown` (a source tarball, or no `git` on the machine).
//!
//! Reruns only when the commit can have changed: on `.git/HEAD`, the branch it points to
//! and `packed-refs` (whichever exist: a path that does not exist would make cargo rerun
//! the script on every build), and on the environment variable.

use std::path::{Path, PathBuf};
use std::process::Command;

const VAR: &str = "AUTOSCALER_GIT_COMMIT";

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-env-changed={VAR}");
    println!("cargo:rerun-if-changed=build.rs");

    // Files whose change means another commit: HEAD, the branch it names, packed-refs.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in &watched {
        if let Some(path) = git(
            &dir,
            &["rev-parse", "--path-format=absolute", "--git-path", name],
        ) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }

    let commit = std::env::var(VAR)
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&dir, &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env={VAR}={commit}");
}
