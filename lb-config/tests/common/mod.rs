//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lb_config::{Diagnostic, Errors, Loaded, Severity};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(rel: &str) -> PathBuf {
    fixtures().join(rel)
}

/// Files of `dir` (relative to tests/fixtures) whose name ends with `suffix`, sorted.
pub fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixture(dir))
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

pub fn load_ok(path: &Path) -> Loaded {
    match lb_config::load(path) {
        Ok(l) => l,
        Err(e) => panic!("{} should load:\n{e}", path.display()),
    }
}

pub fn load_err(path: &Path) -> Errors {
    match lb_config::load(path) {
        Ok(l) => panic!("{} should not load: {:#?}", path.display(), l.config),
        Err(e) => e,
    }
}

pub fn parse_ok(text: &str) -> Loaded {
    match lb_config::parse_str(text, "test.conf") {
        Ok(l) => l,
        Err(e) => panic!("should parse:\n{e}"),
    }
}

pub fn parse_err(text: &str) -> Errors {
    match lb_config::parse_str(text, "test.conf") {
        Ok(l) => panic!("should not parse: {:#?}", l.config),
        Err(e) => e,
    }
}

/// (line, col) of every error.
pub fn error_positions(e: &Errors) -> Vec<(u32, u32)> {
    e.errors().map(|d| (d.line, d.col)).collect()
}

pub fn only_error(e: &Errors) -> &Diagnostic {
    let errors: Vec<&Diagnostic> = e.errors().collect();
    assert_eq!(errors.len(), 1, "expected exactly one error, got:\n{e}");
    errors[0]
}

pub fn warnings_of(l: &Loaded) -> Vec<&Diagnostic> {
    l.warnings
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect()
}

/// A directory of its own under the temp dir, removed when dropped, even
/// when the test fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lb-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// Writes `text` to `name` (which may be in a subdirectory) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("temp subdirectory");
        }
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `keepalived --config-test` says of the file at `path` (its stderr
/// lines), with `args` (such as `--config-id ID`); None when keepalived is
/// not installed. It reads the file and checks it, and starts nothing.
pub fn keepalived_config_test(path: &Path, args: &[&str]) -> Option<Vec<String>> {
    let output = std::process::Command::new("keepalived")
        .args(["--config-test", "--log-console", "--use-file"])
        .arg(path)
        .args(args)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    Some(stderr.lines().map(str::to_string).collect())
}

pub mod edge;
