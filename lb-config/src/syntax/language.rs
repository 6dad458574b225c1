//! keepalived's configuration language above its keywords, as its reader
//! (lib/parser.c, `read_line`) applies it to each line before splitting it
//! into words; keepalived.conf(5), "ADVANCED CONFIGURATION":
//!
//! - comments start at the first `!` or `#` outside quotes, even inside a
//!   word; `\!` and `\#` are the characters themselves;
//! - a conditional line `@ID rest` keeps `rest` only when ID is the config
//!   id (`-i`/`--config-id`), `@^ID rest` only when it is not;
//! - `$NAME=VALUE` defines a parameter (a value ending with `\` goes on over
//!   the next lines, up to one that does not, or an empty one); afterwards
//!   `$NAME` (followed by a blank, `,`, `)` or the end of the line) and
//!   `${NAME}` anywhere are replaced by the value. Values are read when used,
//!   not when defined, and substituted text is read again, so values may use
//!   other parameters; an undefined `$NAME` is left as written. A multi-line
//!   value is only used where `$NAME` ends the line: its first line replaces
//!   it and the others follow as lines of their own. `${_PWD}`,
//!   `${_INSTANCE}`, `${_HASH}` and `${_BANG}` are predefined.
//!
//! Only lines that use these features come here (the lexer reads the others
//! as they are); the line that comes out keeps, for every byte, where it was
//! typed, so diagnostics point into the value of a parameter and name the
//! `$NAME` it was substituted for.
//!
//! Substitution is bounded: values nested more than
//! [`MAX_SUBSTITUTION_DEPTH`] deep (a parameter whose value uses itself), a
//! line longer than [`MAX_LINE_BYTES`] once substituted, and more than
//! [`MAX_SUBSTITUTED_BYTES`] substituted in one load are errors where the
//! `$NAME` was written. keepalived's sequence and list blocks (`~SEQ`,
//! `~LST`) and `${_RANDOM}` are refused.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use crate::diagnostic::{Diags, FileId, Pos};
use crate::limits::{MAX_LINE_BYTES, MAX_SUBSTITUTED_BYTES, MAX_SUBSTITUTION_DEPTH};

use super::mapped::Mapped;

/// A parameter's value, one entry per line.
struct Parameter {
    lines: Vec<Mapped>,
    multiline: bool,
}

/// What a line becomes.
pub(crate) enum Read {
    /// Nothing to read: a comment, a conditional line for another id, a
    /// definition, or a line dropped after an error.
    Nothing,
    /// The line to split into words.
    Line(Mapped),
    /// A definition whose value goes on over the next lines.
    Defining(Arc<str>),
}

/// The state of the language over one load: the config id and the
/// parameters defined so far, in reading order across included files.
pub(crate) struct Language {
    config_id: Option<String>,
    parameters: HashMap<Arc<str>, Parameter>,
    /// Bytes substitution may still produce in this load.
    bytes_left: u64,
    /// The budget was spent and said so: substitution stops.
    spent: bool,
}

/// Where the line being read comes from, for `${_PWD}`.
pub(crate) struct Context<'a> {
    pub dir: &'a Path,
}

impl Language {
    pub fn new(config_id: Option<String>) -> Self {
        Language {
            config_id,
            parameters: HashMap::new(),
            bytes_left: MAX_SUBSTITUTED_BYTES,
            spent: false,
        }
    }

    /// A line of a file as read (without its line end) when `from_file`,
    /// else a line of a multi-line value that its `$NAME` put in place of
    /// the next line (its comments were removed when it was defined).
    pub fn read(
        &mut self,
        line: Mapped,
        from_file: bool,
        cx: &Context<'_>,
        expansion: &mut VecDeque<Mapped>,
        diags: &mut Diags,
    ) -> Read {
        let line = if from_file {
            decomment(&line, diags).0
        } else {
            line
        };
        if line.is_empty() {
            return Read::Nothing;
        }
        self.line(line, cx, expansion, diags)
    }

    /// The next line of the multi-line value of `name`, read from a file
    /// when `from_file`, else produced by an expansion. Returns whether the
    /// value goes on after it.
    pub fn continue_definition(
        &mut self,
        name: &Arc<str>,
        raw: &Mapped,
        from_file: bool,
        diags: &mut Diags,
    ) -> bool {
        let (value, goes_on) = if from_file {
            // keepalived ends the value at an empty line, and skips a line
            // of blanks or a comment.
            if raw.is_empty() {
                return false;
            }
            let (line, continued) = decomment(raw, diags);
            if line.is_empty() {
                return true;
            }
            if continued {
                let before = &line.text()[..line.len() - 1];
                (
                    line.slice(0, before.trim_end_matches([' ', '\t']).len()),
                    true,
                )
            } else {
                (line, false)
            }
        } else {
            (raw.clone(), false)
        };
        if let Some(parameter) = self.parameters.get_mut(name)
            && !value.is_empty()
        {
            parameter.lines.push(value);
        }
        goes_on
    }

    /// keepalived's read_line after comments are removed: conditional,
    /// definition, substitution, over again while substitution changed the
    /// line into one that starts with `@` or still holds a `$`.
    fn line(
        &mut self,
        mut line: Mapped,
        cx: &Context<'_>,
        expansion: &mut VecDeque<Mapped>,
        diags: &mut Diags,
    ) -> Read {
        for _ in 0..=MAX_SUBSTITUTION_DEPTH {
            if line.text().starts_with('@') {
                match self.conditional(&line) {
                    Some(rest) => line = rest,
                    None => return Read::Nothing,
                }
            }
            if let Some(read) = self.definition(&line) {
                return read;
            }
            let text = line.text();
            if text.starts_with("~SEQ") || text.starts_with("~LST") {
                diags.error(
                    line.pos(0),
                    format!(
                        "found `{}`, expected a keyword: keepalived's sequence and list blocks \
                         (~SEQ, ~LST) are not supported by xlb; write the lines out, or define a \
                         multi-line `$NAME=` value and use it once per value",
                        &text[..4]
                    ),
                );
                return Read::Nothing;
            }
            // keepalived leaves the rest of a line that starts with `~` as it is.
            if text.starts_with('~') || !text.contains('$') {
                return Read::Line(line);
            }
            match self.substitute(line, cx, expansion, diags) {
                None => return Read::Nothing,
                Some((same, false)) => return Read::Line(same),
                Some((changed, true)) => {
                    line = decomment(&changed, diags).0;
                    if line.is_empty() {
                        return Read::Nothing;
                    }
                    if !line.text().starts_with('@') && !line.text().contains('$') {
                        return Read::Line(line);
                    }
                }
            }
        }
        Read::Line(line)
    }

    /// `@ID rest` or `@^ID rest`: `rest` if it is to be read with this config id.
    fn conditional(&self, line: &Mapped) -> Option<Mapped> {
        let text = line.text();
        let (negated, id_start) = if text[1..].starts_with('^') {
            (true, 2)
        } else {
            (false, 1)
        };
        // keepalived drops a conditional line with nothing after the id.
        let id_end = id_start + text[id_start..].find([' ', '\t'])?;
        let matches = self.config_id.as_deref() == Some(&text[id_start..id_end]);
        if matches == negated {
            return None;
        }
        let rest =
            id_end + (text.len() - id_end - text[id_end..].trim_start_matches([' ', '\t']).len());
        Some(line.slice(rest, line.len()))
    }

    /// `$NAME=VALUE`: records it. None if the line is not a definition.
    fn definition(&mut self, line: &Mapped) -> Option<Read> {
        let text = line.text();
        let rest = text.strip_prefix('$')?;
        let name_len = name_len(rest)?;
        // No blank before `=`: `$NAME =x` is a use of $NAME.
        let after = rest[name_len..].strip_prefix('=')?;
        let name: Arc<str> = Arc::from(&rest[..name_len]);
        let value_start = text.len() - after.trim_start_matches([' ', '\t']).len();
        let value = &text[value_start..];
        let (lines, multiline) = match value.strip_suffix('\\') {
            Some(before) => {
                let kept = value_start + before.trim_end_matches([' ', '\t']).len();
                let first = line.slice(value_start, kept);
                (
                    if first.is_empty() {
                        vec![]
                    } else {
                        vec![first]
                    },
                    true,
                )
            }
            None => (vec![line.slice(value_start, text.len())], false),
        };
        self.parameters
            .insert(name.clone(), Parameter { lines, multiline });
        Some(if multiline {
            Read::Defining(name)
        } else {
            Read::Nothing
        })
    }

    /// Replaces every defined parameter in `line`. Returns the line and
    /// whether anything was replaced, or None when an error dropped it.
    fn substitute(
        &mut self,
        mut line: Mapped,
        cx: &Context<'_>,
        expansion: &mut VecDeque<Mapped>,
        diags: &mut Diags,
    ) -> Option<(Mapped, bool)> {
        let mut changed = false;
        let mut from = 0;
        while let Some(found) = line.text()[from..].find('$') {
            let start = from + found;
            let Some(reference) = Reference::at(line.text(), start) else {
                from = start + 1;
                continue;
            };
            let name = &line.text()[reference.name.clone()];
            let ends_line = reference.end == line.len();
            let at = line.pos(start);
            let Some(value) = self.value(name, &reference, ends_line, at, cx, diags) else {
                from = start + 1;
                continue;
            };
            if self.spent {
                return None;
            }
            let Value {
                first,
                rest,
                written,
            } = match value {
                Ok(value) => value,
                Err(()) => return None,
            };
            // Each substitution writes the whole line again: what is bounded
            // is that work, so that many small values in one long line cost
            // no more than one long value.
            let new_len = line.len() - (reference.end - start) + first.len();
            let produced = new_len + rest.iter().map(Mapped::len).sum::<usize>();
            let produced = u64::try_from(produced).unwrap_or(u64::MAX);
            // Said where the line uses the parameter, however deep in values.
            let used_at = diags.written_at(at);
            if produced > self.bytes_left {
                self.spent = true;
                diags.error(
                    used_at,
                    format!(
                        "found more than {MAX_SUBSTITUTED_BYTES} bytes written by substituting \
                         parameters in this load (limit), expected fewer: parameters that \
                         expand without end?"
                    ),
                );
                return None;
            }
            self.bytes_left -= produced;
            if new_len > MAX_LINE_BYTES {
                diags.error(
                    used_at,
                    format!(
                        "found a line of {new_len} bytes once `{}` is substituted, expected at \
                         most {MAX_LINE_BYTES}",
                        &line.text()[start..reference.end]
                    ),
                );
                return None;
            }
            let mut out = line.slice(0, start);
            out.push_all(&first);
            out.push(&line, reference.end, line.len());
            for later in rest.into_iter().rev() {
                expansion.push_front(later);
            }
            // Substituted text is read again (values may use other
            // parameters); a predefined value is not, it holds no parameter.
            from = if written { start } else { start + first.len() };
            line = out;
            changed = true;
        }
        Some((line, changed))
    }

    /// The value of `$name` used at `at`, its positions moved into a reading
    /// that names this use; None when it is not to be replaced (undefined,
    /// or multi-line where the line goes on), Some(Err) after an error.
    fn value(
        &mut self,
        name: &str,
        reference: &Reference,
        ends_line: bool,
        at: Pos,
        cx: &Context<'_>,
        diags: &mut Diags,
    ) -> Option<Result<Value, ()>> {
        if let Some(parameter) = self.parameters.get(name) {
            if reference.params || (parameter.multiline && !ends_line) {
                return None;
            }
            let parameter_name: Arc<str> = Arc::from(name);
            let mut readings: Vec<(FileId, FileId)> = Vec::new();
            let mut lines = Vec::with_capacity(parameter.lines.len().max(1));
            for written in &parameter.lines {
                let mut line = written.clone();
                let mut nested_too_deep = false;
                line.map_positions(|pos| {
                    let file = match readings.iter().find(|(from, _)| *from == pos.file) {
                        Some((_, to)) => *to,
                        None => match diags.substitution(
                            pos.file,
                            &parameter_name,
                            at,
                            MAX_SUBSTITUTION_DEPTH,
                        ) {
                            Some(to) => {
                                readings.push((pos.file, to));
                                to
                            }
                            None => {
                                nested_too_deep = true;
                                pos.file
                            }
                        },
                    };
                    Pos { file, ..pos }
                });
                if nested_too_deep {
                    // Said where the line uses it, not 32 levels down.
                    let inner = diags.span(at);
                    diags.error(
                        diags.written_at(at),
                        format!(
                            "found parameters nested more than {MAX_SUBSTITUTION_DEPTH} \
                             substitutions deep, expected fewer: a value uses itself, directly \
                             or through other parameters (`${name}` at {inner})"
                        ),
                    );
                    return Some(Err(()));
                }
                lines.push(line);
            }
            let mut lines = lines.into_iter();
            let first = lines.next().unwrap_or_default();
            return Some(Ok(Value {
                first,
                rest: lines.collect(),
                written: true,
            }));
        }
        let predefined = match name {
            "_PWD" => Some(cx.dir.display().to_string()),
            "_INSTANCE" => Some(self.config_id.clone().unwrap_or_default()),
            "_HASH" => Some("#".to_string()),
            "_BANG" => Some("!".to_string()),
            "_RANDOM" => {
                diags.error(
                    at,
                    "found `${_RANDOM}`, expected a value that is the same at every reading: xlb \
                     does not support random values (each reload would change the config); \
                     define the value with `$NAME=VALUE` instead",
                );
                return Some(Err(()));
            }
            _ => None,
        }?;
        if reference.params {
            return None;
        }
        let mut first = Mapped::default();
        first.push_str_at(&predefined, at);
        Some(Ok(Value {
            first,
            rest: Vec::new(),
            written: false,
        }))
    }
}

/// A parameter's value, ready to put in place of its `$NAME`.
struct Value {
    first: Mapped,
    rest: Vec<Mapped>,
    /// Written in the configuration (and so to be read again for parameters
    /// it uses), not predefined.
    written: bool,
}

/// `$NAME` or `${NAME}` (or `${NAME PARAMS}`) at a `$` of a line.
struct Reference {
    name: std::ops::Range<usize>,
    /// Bytes up to here are replaced.
    end: usize,
    /// `${NAME 1 2}`: only `${_RANDOM}` takes parameters.
    params: bool,
}

impl Reference {
    /// As keepalived's find_definition reads one.
    fn at(text: &str, dollar: usize) -> Option<Reference> {
        let after = &text[dollar + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            let start = dollar + 2;
            let len = name_len(inner)?;
            let tail = &inner[len..];
            let params_len = tail
                .bytes()
                .take_while(|b| *b == b' ' || b.is_ascii_digit())
                .count();
            let params = &tail[..params_len];
            if params.ends_with(' ') || !tail[params_len..].starts_with('}') {
                return None;
            }
            Some(Reference {
                name: start..start + len,
                end: start + len + params_len + 1,
                params: !params.trim().is_empty(),
            })
        } else {
            let start = dollar + 1;
            let len = name_len(after)?;
            let ends = matches!(
                after.as_bytes().get(len),
                None | Some(b' ' | b'\t' | b',' | b')')
            );
            ends.then(|| Reference {
                name: start..start + len,
                end: start + len,
                params: false,
            })
        }
    }
}

/// The length of the parameter name at the start of `text`: a letter or `_`,
/// then letters, digits and `_`.
fn name_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return None;
    }
    Some(
        bytes
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count(),
    )
}

/// keepalived's decomment(): leading blanks and the comment removed, `\!` and
/// `\#` outside quotes unescaped, trailing blanks removed. Returns the line
/// and whether it ended with `\` (kept), which continues a definition.
pub(crate) fn decomment(line: &Mapped, diags: &mut Diags) -> (Mapped, bool) {
    let text = line.text();
    let bytes = text.as_bytes();
    let start = text.len() - text.trim_start_matches([' ', '\t']).len();
    let mut out = Mapped::default();
    // Bytes before this are in `out`, but for escapes.
    let mut copied = start;
    let mut quoted = false;
    let mut end = text.len();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b'\\' if !quoted && matches!(bytes.get(i + 1), Some(b'!' | b'#')) => {
                out.push(line, copied, i);
                copied = i + 1;
                i += 2;
                continue;
            }
            // A final `\` is looked for below.
            b'\\' if i + 1 == bytes.len() => break,
            b'\\' => {
                i += 2;
                continue;
            }
            b'!' | b'#' if !quoted => {
                if i > start && !matches!(bytes[i - 1], b' ' | b'\t' | b'"' | b'{' | b'}') {
                    super::lexer::comment_inside_word(text, i, line.pos(i), diags);
                }
                end = i;
                break;
            }
            _ => {}
        }
        i += 1;
    }
    // keepalived 2.2 looks for a final `\` even past the comment.
    let mut j = i;
    let mut continued = false;
    while j < bytes.len() {
        if bytes[j] == b'\\' {
            if j + 1 == bytes.len() {
                continued = true;
            }
            j += 2;
        } else {
            j += 1;
        }
    }
    if continued && end == text.len() {
        end -= 1;
    }
    let tail = &text[copied..end];
    out.push(
        line,
        copied,
        copied + tail.trim_end_matches([' ', '\t']).len(),
    );
    if continued {
        out.push(line, bytes.len() - 1, bytes.len());
    }
    (out, continued)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn diags() -> (Diags, FileId) {
        let mut diags = Diags::default();
        let file = diags.reading(&Arc::from("t.conf"));
        (diags, file)
    }

    /// The lines `text` reads as, with `config_id`.
    fn read_all(text: &str, config_id: Option<&str>) -> (Vec<String>, Vec<crate::Diagnostic>) {
        let (mut diags, file) = diags();
        let mut language = Language::new(config_id.map(str::to_string));
        let cx = Context {
            dir: Path::new("/etc/keepalived"),
        };
        let mut out = Vec::new();
        let mut expansion = VecDeque::new();
        let mut defining: Option<Arc<str>> = None;
        let mut raw_lines = text.split('\n').enumerate();
        loop {
            let (read, from_file, raw) = if let Some(line) = expansion.pop_front() {
                (None, false, line)
            } else if let Some((i, raw)) = raw_lines.next() {
                let pos = Pos {
                    file,
                    line: u32::try_from(i).unwrap() + 1,
                    col: 1,
                };
                (None::<Read>, true, Mapped::written(raw, pos))
            } else {
                break;
            };
            let _ = read;
            if let Some(name) = &defining {
                if !language.continue_definition(name, &raw, from_file, &mut diags) {
                    defining = None;
                }
                continue;
            }
            match language.read(raw, from_file, &cx, &mut expansion, &mut diags) {
                Read::Nothing => {}
                Read::Line(line) => out.push(line.text().to_string()),
                Read::Defining(name) => defining = Some(name),
            }
        }
        (out, diags.into_sorted())
    }

    #[test]
    fn table_of_lines() {
        // (text, config id, lines read)
        let cases: &[(&str, Option<&str>, &[&str])] = &[
            ("a b # c", None, &["a b"]),
            ("auth_pass ab\\#c", None, &["auth_pass ab#c"]),
            ("script \"a # b\" # c", None, &["script \"a # b\""]),
            (
                "@main router_id m\n@backup router_id b",
                Some("main"),
                &["router_id m"],
            ),
            (
                "@main router_id m\n@backup router_id b",
                Some("backup"),
                &["router_id b"],
            ),
            (
                "@^main priority 1\n@main priority 2",
                Some("main"),
                &["priority 2"],
            ),
            (
                "@^main priority 1\n@main priority 2",
                Some("other"),
                &["priority 1"],
            ),
            ("@main priority 1", None, &[]),
            ("@^main priority 1", None, &["priority 1"]),
            ("@main", Some("main"), &[]),
            ("$P=150\npriority $P", None, &["priority 150"]),
            ("$P=15\npriority ${P}0", None, &["priority 150"]),
            // Not followed by a blank, `,`, `)` or the end: left as written.
            ("$P=15\npriority $P0", None, &["priority $P0"]),
            ("priority $UNDEFINED", None, &["priority $UNDEFINED"]),
            ("$P =1\n$P", None, &["$P =1", "$P"]),
            // Values are read when used.
            (
                "$BASE=10.2.${SUB}\n$SUB=0\n${BASE}.100/32\n$SUB=10\n${BASE}.100/32",
                None,
                &["10.2.0.100/32", "10.2.10.100/32"],
            ),
            (
                "@main $P=240\n@backup $P=200\npriority $P",
                Some("backup"),
                &["priority 200"],
            ),
            (
                "$IF_MAIN=@main\n$IF_MAIN priority 240",
                Some("main"),
                &["priority 240"],
            ),
            ("$IF_MAIN=@main\n$IF_MAIN priority 240", Some("backup"), &[]),
            (
                "$VI= \\\nvrrp_instance VI_${N} { \\\n    priority 1 \\\n}\n$N=0\n$VI\n$N=1\n$VI",
                None,
                &[
                    "vrrp_instance VI_0 {",
                    "priority 1",
                    "}",
                    "vrrp_instance VI_1 {",
                    "priority 1",
                    "}",
                ],
            ),
            // An empty line ends a multi-line value; a comment does not.
            ("$M=a \\\n# c\nb \\\n\nc\n$M", None, &["c", "a", "b"]),
            // A multi-line value is only used where it ends the line.
            ("$M=a \\\nb\nx $M y\nx $M", None, &["x $M y", "x a", "b"]),
            (
                "dir ${_PWD}/x ${_INSTANCE}",
                Some("n1"),
                &["dir /etc/keepalived/x n1"],
            ),
            (
                "misc_path \"/bin/x ${_HASH}1\"",
                None,
                &["misc_path \"/bin/x #1\""],
            ),
            (
                "$X=1\nscript \"kill -0 $1 ${X}\"",
                None,
                &["script \"kill -0 $1 1\""],
            ),
            (
                "$X=1\nscript \"kill -0 $X\"",
                None,
                &["script \"kill -0 $X\""],
            ),
        ];
        for (text, id, expected) in cases {
            let (lines, d) = read_all(text, *id);
            assert_eq!(lines, *expected, "{text:?} with {id:?}: {d:?}");
            assert!(d.iter().all(|d| !d.is_error()), "{text:?}: {d:?}");
        }
    }

    #[test]
    fn self_reference_is_an_error_at_the_use() {
        let (lines, d) = read_all("$A=x$A\nv ${A}", None);
        assert!(lines.is_empty(), "{lines:?}");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].col), (2, 3));
        assert!(d[0].message.contains("nested more than"), "{d:?}");
        let (_, d) = read_all("$M=\\\nx\n$M\n\n$M", None);
        assert!(d.is_empty(), "{d:?}");
        let (_, d) = read_all("$M=a \\\n$M\n\n$M", None);
        assert_eq!(d.len(), 1, "{d:?}");
    }

    #[test]
    fn sequences_and_random_are_refused() {
        for text in [
            "~SEQ(i, 1, 1, 3) x $i",
            "priority ${_RANDOM 1 9}",
            "p ${_RANDOM}",
        ] {
            let (lines, d) = read_all(text, None);
            assert!(lines.is_empty());
            assert_eq!(d.len(), 1, "{d:?}");
            assert!(d[0].is_error());
        }
    }
}
