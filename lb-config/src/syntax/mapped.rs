//! A line of text that was rewritten, with the place every byte of it was
//! written: a conditional prefix removed, a `$NAME` replaced by its value, a
//! `\#` unescaped. Diagnostics about any word of it still point at the file,
//! line and column where that word was typed.

use crate::diagnostic::Pos;

/// From byte `at` of the line on (up to the next segment), the text is as
/// written at `pos` and onwards on the same line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    at: usize,
    pos: Pos,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mapped {
    text: String,
    /// In increasing `at`, the first at 0 unless the text is empty.
    segments: Vec<Segment>,
}

impl Mapped {
    /// `text` as written from `pos` on.
    pub fn written(text: &str, pos: Pos) -> Self {
        Mapped {
            text: text.to_string(),
            segments: vec![Segment { at: 0, pos }],
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Where byte `at` (at most the length) was written; the end of the text
    /// counts as one column after its last character.
    pub fn pos(&self, at: usize) -> Pos {
        pos_in(&self.text, &self.segments, at)
    }

    /// The text from byte `from` to byte `to`.
    pub fn slice(&self, from: usize, to: usize) -> Mapped {
        let mut out = Mapped::default();
        out.push(self, from, to);
        out
    }

    /// Appends bytes `from..to` of `other`.
    pub fn push(&mut self, other: &Mapped, from: usize, to: usize) {
        if from >= to {
            return;
        }
        let base = self.text.len();
        self.text.push_str(&other.text[from..to]);
        self.segments.push(Segment {
            at: base,
            pos: other.pos(from),
        });
        self.segments.extend(
            other
                .segments
                .iter()
                .filter(|s| s.at > from && s.at < to)
                .map(|s| Segment {
                    at: base + s.at - from,
                    pos: s.pos,
                }),
        );
    }

    /// Appends all of `other`.
    pub fn push_all(&mut self, other: &Mapped) {
        self.push(other, 0, other.len());
    }

    /// Appends `text` as if written at `pos` (a value that was never typed,
    /// such as `${_INSTANCE}`, is placed where it was asked for).
    pub fn push_str_at(&mut self, text: &str, pos: Pos) {
        if text.is_empty() {
            return;
        }
        self.segments.push(Segment {
            at: self.text.len(),
            pos,
        });
        self.text.push_str(text);
    }

    /// Every position of the text moved into another reading by `map`
    /// (substituted text: same lines and columns, another note).
    pub fn map_positions(&mut self, mut map: impl FnMut(Pos) -> Pos) {
        for s in &mut self.segments {
            s.pos = map(s.pos);
        }
    }

    pub fn into_parts(self) -> (String, Positions) {
        (
            self.text,
            Positions {
                segments: self.segments,
            },
        )
    }
}

/// The positions of a [`Mapped`] line whose text went elsewhere (into the
/// arena the statement tree borrows from).
#[derive(Clone, Debug, Default)]
pub(crate) struct Positions {
    segments: Vec<Segment>,
}

impl Positions {
    /// Where byte `at` of `text`, the line these positions belong to, was written.
    pub fn pos(&self, text: &str, at: usize) -> Pos {
        pos_in(text, &self.segments, at)
    }
}

fn pos_in(text: &str, segments: &[Segment], at: usize) -> Pos {
    let i = segments.partition_point(|s| s.at <= at);
    let Some(seg) = i.checked_sub(1).and_then(|i| segments.get(i)) else {
        // Only an empty text has no segment; nothing in it is ever pointed at.
        return segments.first().map(|s| s.pos).unwrap_or(Pos {
            file: crate::diagnostic::FileId::FIRST,
            line: 0,
            col: 0,
        });
    };
    let chars = text
        .get(seg.at..at.min(text.len()))
        .map_or(0, |t| t.chars().count());
    Pos {
        col: seg
            .pos
            .col
            .saturating_add(u32::try_from(chars).unwrap_or(u32::MAX)),
        ..seg.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::FileId;

    fn at(line: u32, col: u32) -> Pos {
        Pos {
            file: FileId::FIRST,
            line,
            col,
        }
    }

    #[test]
    fn positions_follow_each_piece() {
        let line = Mapped::written("priority $P", at(9, 5));
        let value = Mapped::written("150", at(1, 4));
        let mut out = line.slice(0, 9);
        out.push_all(&value);
        assert_eq!(out.text(), "priority 150");
        assert_eq!(out.pos(0), at(9, 5));
        assert_eq!(out.pos(8), at(9, 13));
        assert_eq!(out.pos(9), at(1, 4));
        assert_eq!(out.pos(11), at(1, 6));
        let tail = out.slice(9, 12);
        assert_eq!(tail.pos(1), at(1, 5));
    }

    #[test]
    fn columns_count_characters() {
        let line = Mapped::written("é é x", at(1, 1));
        assert_eq!(line.pos(6).col, 5);
    }
}
