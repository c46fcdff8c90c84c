//! Shared by the markdown and HTML extractors: plain-text layout of blocks and lines, and the
//! split of a document into sections at its headings.

use super::{Location, Section};

/// Plain text written block by block: the extractors say where blocks and lines end, and the
/// buffer keeps exactly one blank line between blocks and no stray blanks at line starts.
#[derive(Debug, Default)]
pub(super) struct TextBuf {
    text: String,
    /// A list marker ("- ", "  2. ") not yet written: it appears with the item's first text,
    /// so an item holding only a nested list leaves no bare marker line.
    marker: String,
}

impl TextBuf {
    /// Ends the current block: what follows starts after one blank line.
    pub(super) fn block_break(&mut self) {
        self.marker.clear();
        self.trim_trailing_blanks();
        if self.text.is_empty() {
            return;
        }
        while !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// Ends the current line (if it has anything on it).
    pub(super) fn line_break(&mut self) {
        self.marker.clear();
        self.trim_trailing_blanks();
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
    }

    /// A forced line break (`<br>`, a markdown hard break): ends the line even if it is empty
    /// of text, but never stacks more than one blank line.
    pub(super) fn hard_break(&mut self) {
        self.marker.clear();
        self.trim_trailing_blanks();
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// Appends text as it is (code, preformatted text, already-collapsed inline text).
    pub(super) fn push_raw(&mut self, text: &str) {
        if !text.is_empty() {
            self.flush_marker();
        }
        self.text.push_str(text);
    }

    /// Starts a list item on a new line; `marker` is written before the item's first text.
    pub(super) fn push_marker(&mut self, marker: String) {
        self.line_break();
        self.marker = marker;
    }

    fn flush_marker(&mut self) {
        if !self.marker.is_empty() {
            self.text.push_str(&std::mem::take(&mut self.marker));
        }
    }

    /// Appends inline text with HTML whitespace rules: every run of whitespace is one space,
    /// and none at the start of a line.
    pub(super) fn push_collapsed(&mut self, text: &str) {
        // Whitespace at either end still separates this run from its neighbours
        // (`<b>bold</b> text`), so it becomes a space too.
        if text.starts_with(char::is_whitespace) {
            self.space();
        }
        for (i, word) in text.split_whitespace().enumerate() {
            if i > 0 {
                self.space();
            }
            self.flush_marker();
            self.text.push_str(word);
        }
        if text.ends_with(char::is_whitespace) {
            self.space();
        }
    }

    fn space(&mut self) {
        if !self.at_line_start() && !self.text.ends_with(' ') {
            self.text.push(' ');
        }
    }

    /// True when nothing has been written on the current line yet.
    pub(super) fn at_line_start(&self) -> bool {
        self.text.is_empty() || self.text.ends_with('\n')
    }

    /// The finished text: trailing blanks cut from each line, at most one blank line in a row.
    pub(super) fn finish(self) -> String {
        tidy(&self.text)
    }

    fn trim_trailing_blanks(&mut self) {
        let kept = self.text.trim_end_matches([' ', '\t']).len();
        self.text.truncate(kept);
    }
}

/// Cuts trailing blanks from each line, collapses runs of blank lines to one, trims the ends.
pub(super) fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

/// Splits a document into sections at its headings, each section carrying the path of headings
/// above it. The heading's own text opens its section, so the stored text stays complete and a
/// chunk's text names its topic.
#[derive(Debug, Default)]
pub(super) struct Outline {
    /// Finished sections, each with whether it holds more than its heading line.
    sections: Vec<(Section, bool)>,
    /// (level, text) of the headings enclosing the current position, outermost first.
    path: Vec<(u8, String)>,
    /// Text of the current section: everything since the last heading.
    body: TextBuf,
    /// The heading line that opened the current section, if one did.
    opened_by: Option<String>,
    /// First level-1 heading, the document title when it has no better one.
    first_h1: Option<String>,
}

impl Outline {
    /// The buffer that body text goes into.
    pub(super) fn body(&mut self) -> &mut TextBuf {
        &mut self.body
    }

    /// Closes the current section and opens one under a heading of `level` (1..=6).
    pub(super) fn heading(&mut self, level: u8, text: &str) {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        self.close_section();
        if level == 1 && self.first_h1.is_none() && !text.is_empty() {
            self.first_h1 = Some(text.clone());
        }
        if text.is_empty() {
            // An empty heading names nothing; keep the current path.
            return;
        }
        while self.path.last().is_some_and(|(l, _)| *l >= level) {
            self.path.pop();
        }
        self.body.push_raw(&text);
        self.body.block_break();
        self.opened_by = Some(text.clone());
        self.path.push((level, text));
    }

    pub(super) fn first_h1(&self) -> Option<&str> {
        self.first_h1.as_deref()
    }

    /// All sections, in document order. Sections holding only a heading are dropped (the
    /// heading lives on in the path of the sections under it) unless nothing else has text.
    pub(super) fn finish(mut self) -> Vec<Section> {
        self.close_section();
        let any_body = self.sections.iter().any(|(_, has_body)| *has_body);
        self.sections.into_iter().filter(|(_, has_body)| *has_body || !any_body).map(|(section, _)| section).collect()
    }

    fn close_section(&mut self) {
        let text = std::mem::take(&mut self.body).finish();
        let opened_by = self.opened_by.take();
        let has_body = opened_by.as_ref() != Some(&text);
        if text.is_empty() {
            return;
        }
        let path = self.path.iter().map(|(_, heading)| heading.clone()).collect();
        let section = Section { text, location: Location::Headings(path) };
        self.sections.push((section, has_body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_separated_by_exactly_one_blank_line() {
        let mut buf = TextBuf::default();
        buf.block_break();
        buf.push_collapsed("  one \n two ");
        buf.block_break();
        buf.block_break();
        buf.push_collapsed("three");
        buf.line_break();
        buf.push_collapsed("four");
        assert_eq!(buf.finish(), "one two\n\nthree\nfour");
    }

    #[test]
    fn a_list_marker_appears_only_with_text() {
        let mut buf = TextBuf::default();
        buf.push_marker("- ".into());
        buf.push_marker("  - ".into());
        buf.push_collapsed(" nested ");
        buf.push_marker("- ".into());
        buf.line_break();
        assert_eq!(buf.finish(), "  - nested");
    }

    #[test]
    fn whitespace_between_inline_runs_separates_words() {
        let mut buf = TextBuf::default();
        buf.push_collapsed("bold");
        buf.push_collapsed(" ");
        buf.push_collapsed("text");
        buf.push_collapsed("glued");
        assert_eq!(buf.finish(), "bold textglued");
    }

    #[test]
    fn heading_paths_pop_back_to_the_parent_level() {
        let mut outline = Outline::default();
        outline.heading(1, "Guide");
        outline.body().push_collapsed("intro");
        outline.heading(2, "A");
        outline.body().push_collapsed("a");
        outline.heading(3, "A.1");
        outline.body().push_collapsed("a1");
        outline.heading(2, "B");
        outline.body().push_collapsed("b");
        let paths: Vec<Location> = outline.finish().into_iter().map(|s| s.location).collect();
        let path = |p: &[&str]| Location::Headings(p.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            paths,
            vec![path(&["Guide"]), path(&["Guide", "A"]), path(&["Guide", "A", "A.1"]), path(&["Guide", "B"])]
        );
    }

    #[test]
    fn a_heading_with_nothing_under_it_is_not_a_section() {
        let mut outline = Outline::default();
        outline.heading(1, "Title");
        outline.heading(2, "Part");
        outline.body().push_collapsed("body");
        let sections = outline.finish();
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].text, "Part\n\nbody");
    }

    #[test]
    fn a_document_of_only_headings_keeps_them() {
        let mut outline = Outline::default();
        outline.heading(1, "Just a title");
        let sections = outline.finish();
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].text, "Just a title");
    }
}
