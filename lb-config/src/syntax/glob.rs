//! The subset of glob(3) that keepalived's `include` relies on: `*`, `?` and
//! `[...]` in any path component, matches sorted by name.

use std::path::{Component, Path, PathBuf};

fn has_magic(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// Files matching `pattern`; a relative pattern is taken from `base`.
pub fn expand(pattern: &str, base: &Path) -> Vec<PathBuf> {
    let pattern_path = Path::new(pattern);
    let mut current: Vec<PathBuf> = vec![if pattern_path.is_absolute() {
        PathBuf::from("/")
    } else if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base.to_path_buf()
    }];
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
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| (!n.starts_with('.') || name.starts_with('.')) && matches(&name, n))
                .collect();
            found.sort();
            next.extend(found.into_iter().map(|n| dir.join(n)));
        }
        current = next;
    }
    current.retain(|p| p.is_file());
    current
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
    use super::matches;

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
