//! What is said about a keyword keepalived does not know: which known one it
//! probably is, and a blank that is no blank to keepalived.
//!
//! keepalived logs `Unknown keyword` and reads on; so does xlb, saying what
//! was probably meant. A line indented with no-break spaces (pasted from a web
//! page) is such a keyword too: keepalived splits words at ASCII blanks only,
//! so `\u{a0}\u{a0}script` is one unknown word and the line is ignored.

use std::fmt;

/// The known keyword `word` is most likely a misspelling of: the closest by
/// edits (a letter added, removed, changed, or two swapped), ignoring case,
/// if close enough to be a slip rather than another word.
pub(crate) fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    // A third of the longer word: `bal_defs` is 3 edits from `global_defs`.
    let most = |k: &str| (word.chars().count().max(k.chars().count()) / 3).max(1);
    known
        .iter()
        .map(|k| (edits(&word, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= most(k))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of two neighbours, each one edit.
fn edits(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![(0..=b.len()).collect::<Vec<usize>>()];
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (rows[i - 1][j] + 1)
                .min(row[j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(rows[i - 2][j - 2] + 1);
            }
        }
        rows.push(row);
    }
    rows[a.len()][b.len()]
}

/// ` (did you mean `X`?)` when `word` is close to one of `known`.
pub(crate) fn did_you_mean<'a>(word: &'a str, known: &'a [&'a str]) -> impl fmt::Display + 'a {
    fmt::from_fn(move |f| match closest(word, known) {
        Some(k) => write!(f, " (did you mean `{k}`?)"),
        None => Ok(()),
    })
}

/// A character keepalived does not split words at although it looks blank.
pub(crate) struct OddBlank {
    pub code: u32,
    pub name: &'static str,
    /// The word without it, for messages (`script` for `\u{a0}\u{a0}script`).
    pub rest: String,
}

/// The first look-alike blank in `word`, if any.
pub(crate) fn odd_blank(word: &str) -> Option<OddBlank> {
    let c = word.chars().find(|c| is_odd_blank(*c))?;
    let name = match c {
        '\u{a0}' => "no-break space",
        '\u{202f}' => "narrow no-break space",
        '\u{2007}' => "figure space",
        '\u{200b}' => "zero width space",
        '\u{feff}' => "zero width no-break space",
        '\u{3000}' => "ideographic space",
        '\u{2028}' => "line separator",
        '\u{2029}' => "paragraph separator",
        _ => "a space",
    };
    Some(OddBlank {
        code: u32::from(c),
        name,
        rest: word.chars().filter(|c| !is_odd_blank(*c)).collect(),
    })
}

fn is_odd_blank(c: char) -> bool {
    !c.is_ascii() && (c.is_whitespace() || matches!(c, '\u{200b}' | '\u{feff}'))
}

impl fmt::Display for OddBlank {
    /// `U+00A0 (no-break space) in `script``
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X} ({})", self.code, self.name)?;
        if !self.rest.is_empty() {
            write!(f, " in `{}`", self.rest)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_and_their_keyword() {
        let top = [
            "global_defs",
            "vrrp_script",
            "vrrp_sync_group",
            "vrrp_instance",
            "virtual_server",
        ];
        // (written, meant)
        let cases = [
            ("bal_defs", Some("global_defs")),
            ("vvrp_script", Some("vrrp_script")),
            ("vrrp_instace", Some("vrrp_instance")),
            ("Virtual_Server", Some("virtual_server")),
            ("vrrp_insatnce", Some("vrrp_instance")),
            ("frobnicate", None),
            ("x", None),
        ];
        for (written, meant) in cases {
            assert_eq!(closest(written, &top), meant, "{written}");
        }
        assert_eq!(closest("lb-kind", &["lb_kind", "lb_algo"]), Some("lb_kind"));
    }

    #[test]
    fn look_alike_blanks_are_named() {
        let odd = odd_blank("\u{a0}\u{a0}script").unwrap();
        assert_eq!(odd.to_string(), "U+00A0 (no-break space) in `script`");
        assert!(odd_blank("script").is_none());
        assert!(odd_blank("é").is_none());
    }
}
