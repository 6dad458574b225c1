//! The subset of glob(3) that keepalived's `include` relies on: `*`, `?` and
//! `[...]` in any path component, matches sorted by name, and csh braces
//! (`{a,b}`, keepalived's GLOB_BRACE), each alternative's matches after the
//! previous one's.

use std::path::{Component, Path, PathBuf};

use crate::limits::{MAX_GLOB_ENTRIES, MAX_GLOB_MATCHES};

use super::source::kernel_filesystem_at;

fn has_magic(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// What a pattern matched.
#[derive(Debug, Default)]
pub struct Expansion {
    /// Matching paths in name order: everything but directories, which
    /// keepalived skips too. Whether each is a regular file is for the reader
    /// to check, so that a FIFO or a device is reported by kind rather than
    /// quietly not matched.
    pub paths: Vec<PathBuf>,
    /// The first directory on a kernel filesystem that a wildcard would have
    /// listed, and which filesystem it is: such directories are not searched.
    pub skipped: Option<(PathBuf, &'static str)>,
}

/// Why a pattern was not expanded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// More than [`MAX_GLOB_MATCHES`] paths matched, at the end or on the way.
    #[error(
        "found more than {MAX_GLOB_MATCHES} paths matching `{0}` (limit), expected fewer: \
         a pattern this broad is surely a mistake"
    )]
    TooManyMatches(String),
    /// The paths looked at by all globs of one load reached the budget.
    #[error(
        "found more than {MAX_GLOB_ENTRIES} paths looked at by the includes of this load \
         (limit), expected fewer: too many or too broad include patterns"
    )]
    BudgetSpent,
}

/// Files matching `pattern`; a relative pattern is taken from `base`.
///
/// Each alternative of its braces is expanded in turn, in the order written
/// (`{b,a}.conf` reads `b.conf` first, as glob(3) does).
pub fn expand(pattern: &str, base: &Path, budget: &mut u64) -> Result<Expansion, GlobError> {
    let too_many = || GlobError::TooManyMatches(pattern.to_string());
    let mut alternatives = Vec::new();
    braces(pattern, &mut alternatives).map_err(|()| too_many())?;
    let mut all = Expansion::default();
    for alternative in &alternatives {
        let one = expand_one(alternative, base, budget)?;
        all.paths.extend(one.paths);
        all.skipped = all.skipped.or(one.skipped);
        if all.paths.len() > MAX_GLOB_MATCHES {
            return Err(too_many());
        }
    }
    Ok(all)
}

/// The csh brace alternatives of `pattern`, appended to `out`: `a{b,c}d` is
/// `abd` then `acd`, braces may nest, and a `{` without its `}` is itself.
/// Err when there would be more than [`MAX_GLOB_MATCHES`].
fn braces(pattern: &str, out: &mut Vec<String>) -> Result<(), ()> {
    let bytes = pattern.as_bytes();
    // The first `{` whose `}` is there, and the top-level commas between.
    let mut open = None;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'{' {
            continue;
        }
        let mut depth = 0usize;
        let mut commas = Vec::new();
        for (j, &c) in bytes.iter().enumerate().skip(i) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        open = Some((i, j, commas));
                        break;
                    }
                }
                b',' if depth == 1 => commas.push(j),
                _ => {}
            }
        }
        if open.is_some() {
            break;
        }
    }
    let Some((open, close, commas)) = open else {
        if out.len() >= MAX_GLOB_MATCHES {
            return Err(());
        }
        out.push(pattern.to_string());
        return Ok(());
    };
    let mut from = open + 1;
    for to in commas.into_iter().chain([close]) {
        let alternative = format!(
            "{}{}{}",
            &pattern[..open],
            &pattern[from..to],
            &pattern[close + 1..]
        );
        braces(&alternative, out)?;
        from = to + 1;
    }
    Ok(())
}

/// Files matching `pattern`, which has no braces.
///
/// `budget` is how many paths (directory entries listed, files checked) the
/// caller lets this walk look at; it is decreased by what was looked at. The
/// walk stops as soon as more than [`MAX_GLOB_MATCHES`] paths match at any
/// level, and never lists a directory on a kernel filesystem (procfs, sysfs
/// and the like): `include /*/*/*` must not read the state of every process.
fn expand_one(pattern: &str, base: &Path, budget: &mut u64) -> Result<Expansion, GlobError> {
    let too_many = || GlobError::TooManyMatches(pattern.to_string());
    let mut spend = |n: u64| -> Result<(), GlobError> {
        *budget = budget.checked_sub(n).ok_or(GlobError::BudgetSpent)?;
        Ok(())
    };
    let pattern_path = Path::new(pattern);
    let mut current: Vec<PathBuf> = vec![if pattern_path.is_absolute() {
        PathBuf::from("/")
    } else if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base.to_path_buf()
    }];
    let mut skipped = None;
    for component in pattern_path.components() {
        let name = match component {
            Component::Normal(name) => name.to_string_lossy().into_owned(),
            Component::ParentDir => "..".to_string(),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => continue,
        };
        let mut next = Vec::new();
        for dir in &current {
            if !has_magic(&name) {
                next.push(dir.join(&name));
                continue;
            }
            if let Some(fs) = kernel_filesystem_at(dir) {
                skipped.get_or_insert_with(|| (dir.clone(), fs));
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<String> = Vec::new();
            for entry in entries {
                spend(1)?;
                let Ok(entry) = entry else { continue };
                let n = entry.file_name().to_string_lossy().into_owned();
                if (!n.starts_with('.') || name.starts_with('.')) && matches(&name, &n) {
                    found.push(n);
                    if next.len() + found.len() > MAX_GLOB_MATCHES {
                        return Err(too_many());
                    }
                }
            }
            found.sort();
            next.extend(found.into_iter().map(|n| dir.join(n)));
        }
        current = next;
    }
    spend(u64::try_from(current.len()).unwrap_or(u64::MAX))?;
    current.retain(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_dir()));
    Ok(Expansion {
        paths: current,
        skipped,
    })
}

/// Wildcard match with single-star backtracking: linear in practice and never
/// exponential, whatever the pattern.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], n[ni]) {
                        if ok {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class at the start of `p` (`[...]`); returns whether it
/// matched and the class's length, or None when the `[` is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{braces, matches};

    #[test]
    fn brace_alternatives_in_order() {
        let cases: &[(&str, &[&str])] = &[
            ("a.conf", &["a.conf"]),
            ("{b,a}.conf", &["b.conf", "a.conf"]),
            ("x/{a,b{1,2}}/c", &["x/a/c", "x/b1/c", "x/b2/c"]),
            ("{a", &["{a"]),
            ("{a}", &["a"]),
        ];
        for (pattern, expected) in cases {
            let mut out = Vec::new();
            braces(pattern, &mut out).unwrap();
            assert_eq!(out, *expected, "{pattern}");
        }
        let mut out = Vec::new();
        assert!(braces(&"{a,b}".repeat(12), &mut out).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(matches("*.conf", "a.conf"));
        assert!(!matches("*.conf", "a.conf.bak"));
        assert!(matches("vs-?.conf", "vs-1.conf"));
        assert!(matches("vs-[0-9].conf", "vs-7.conf"));
        assert!(!matches("vs-[!0-9].conf", "vs-7.conf"));
        assert!(matches("a[b", "a[b"));
        assert!(matches("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!matches(&"*a".repeat(30), &"a".repeat(29)));
    }
}
