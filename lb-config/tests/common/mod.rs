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

pub mod edge;
