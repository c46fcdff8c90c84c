//! Markdown: plain text that keeps the block structure (paragraphs, "- item" lists, code),
//! split into sections at headings.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::outline::{Outline, TextBuf};
use super::{ExtractError, Extracted, Format, decode_text, html};

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let source = decode_text(bytes)?;
    // Front matter is metadata, not prose: recognising it keeps it out of the text.
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let mut writer = Writer::default();
    for event in Parser::new_ext(source, options) {
        writer.event(event);
    }
    writer.outline.body().block_break();
    let title = writer.outline.first_h1().map(str::to_owned);
    Ok(Extracted { format: Format::Markdown, title, sections: writer.outline.finish() })
}

/// Deeper list nesting is flattened: hostile input must not make each line kilobytes of indent.
const MAX_LIST_INDENT: usize = 8;

#[derive(Default)]
struct Writer {
    outline: Outline,
    /// Text of the heading being read, while inside one.
    heading: Option<String>,
    /// Open lists, innermost last: the next item number of an ordered list, `None` otherwise.
    lists: Vec<Option<u64>>,
    /// Raw HTML of the HTML block being read; its visible text is added when the block ends.
    html_block: Option<String>,
    /// The closing tag that ends inline raw HTML whose content is not text (`<script>`).
    hidden_until: Option<&'static str>,
    in_code_block: bool,
    in_metadata: bool,
}

impl Writer {
    fn out(&mut self) -> &mut TextBuf {
        self.outline.body()
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.text(&text),
            Event::Code(code) => self.inline(&code),
            Event::Html(raw) => {
                if let Some(block) = &mut self.html_block {
                    block.push_str(&raw);
                }
            }
            Event::InlineHtml(tag) => self.inline_html(&tag),
            Event::SoftBreak => self.inline(" "),
            Event::HardBreak if self.heading.is_some() => self.inline(" "),
            Event::HardBreak => self.out().hard_break(),
            Event::Rule => self.out().block_break(),
            Event::TaskListMarker(done) => self.out().push_raw(if done { "[x] " } else { "[ ] " }),
            // Footnote markers and math (not enabled) carry no prose of their own.
            Event::FootnoteReference(_) | Event::InlineMath(_) | Event::DisplayMath(_) => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { .. } => self.heading = Some(String::new()),
            Tag::BlockQuote(_) | Tag::Table(_) | Tag::FootnoteDefinition(_) => {
                self.out().block_break();
            }
            Tag::CodeBlock(_) => {
                self.out().block_break();
                self.in_code_block = true;
            }
            Tag::HtmlBlock => self.html_block = Some(String::new()),
            Tag::List(first) => {
                self.list_break();
                self.lists.push(first);
            }
            Tag::Item => {
                let depth = self.lists.len().clamp(1, MAX_LIST_INDENT);
                let marker = match self.lists.last_mut() {
                    Some(Some(next)) => {
                        *next += 1;
                        format!("{}. ", *next - 1)
                    }
                    _ => "- ".to_owned(),
                };
                let indent = "  ".repeat(depth - 1);
                self.out().push_marker(format!("{indent}{marker}"));
            }
            Tag::TableHead | Tag::TableRow | Tag::DefinitionListTitle | Tag::DefinitionListDefinition => {
                self.out().line_break();
            }
            Tag::TableCell => {
                if !self.outline.body().at_line_start() {
                    self.out().push_raw(" | ");
                }
            }
            Tag::MetadataBlock(_) => self.in_metadata = true,
            Tag::Paragraph
            | Tag::DefinitionList
            | Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Superscript
            | Tag::Subscript
            | Tag::Link { .. }
            | Tag::Image { .. } => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(level) => {
                let text = self.heading.take().unwrap_or_default();
                self.outline.heading(level as u8, &text);
            }
            TagEnd::Paragraph if !self.lists.is_empty() => self.out().line_break(),
            TagEnd::Paragraph
            | TagEnd::BlockQuote(_)
            | TagEnd::Table
            | TagEnd::FootnoteDefinition
            | TagEnd::DefinitionList => self.out().block_break(),
            TagEnd::CodeBlock => {
                self.in_code_block = false;
                self.out().block_break();
            }
            TagEnd::HtmlBlock => {
                let raw = self.html_block.take().unwrap_or_default();
                self.out().block_break();
                html::render_fragment(&raw, &mut self.outline);
                self.out().block_break();
            }
            TagEnd::List(_) => {
                self.lists.pop();
                self.list_break();
            }
            TagEnd::Item
            | TagEnd::TableHead
            | TagEnd::TableRow
            | TagEnd::DefinitionListTitle
            | TagEnd::DefinitionListDefinition => self.out().line_break(),
            TagEnd::MetadataBlock(_) => self.in_metadata = false,
            TagEnd::TableCell
            | TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image => {}
        }
    }

    fn text(&mut self, text: &str) {
        if self.in_metadata || self.hidden_until.is_some() {
            return;
        }
        if self.in_code_block && self.heading.is_none() {
            self.out().push_raw(text);
        } else {
            self.inline(text);
        }
    }

    fn inline(&mut self, text: &str) {
        if self.hidden_until.is_some() {
            return;
        }
        match &mut self.heading {
            Some(heading) => heading.push_str(text),
            None => self.out().push_collapsed(text),
        }
    }

    /// Inline raw HTML arrives one tag per event: tags are dropped, `<br>` breaks the line,
    /// and the content of an inline `<script>`/`<style>` is skipped up to its closing tag.
    fn inline_html(&mut self, tag: &str) {
        let lower = tag.trim().to_ascii_lowercase();
        if let Some(closing) = self.hidden_until {
            if lower.starts_with(closing) {
                self.hidden_until = None;
            }
            return;
        }
        for (open, close) in [("<script", "</script"), ("<style", "</style")] {
            if lower.starts_with(open) && !lower.contains(close) && !lower.ends_with("/>") {
                self.hidden_until = Some(close);
                return;
            }
        }
        if lower.starts_with("<br") {
            self.out().hard_break();
        }
    }

    /// A top-level list stands apart as a block; a nested one only starts a new line.
    fn list_break(&mut self) {
        if self.lists.is_empty() {
            self.out().block_break();
        } else {
            self.out().line_break();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{Location, Section};

    fn extract_str(markdown: &str) -> Extracted {
        extract(markdown.as_bytes()).expect("valid markdown")
    }

    fn headings(path: &[&str]) -> Location {
        Location::Headings(path.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn markdown_sections_carry_their_heading_path() {
        let doc = extract_str(
            "Preamble.\n\n# Brand Voice\n\nWe are warm.\n\n## LinkedIn\n\nProfessional.\n\n\
             ### Hashtags\n\nThree at most.\n\n## Email\n\nShort.\n",
        );
        assert_eq!(
            doc.sections,
            vec![
                Section { text: "Preamble.".into(), location: headings(&[]) },
                Section { text: "Brand Voice\n\nWe are warm.".into(), location: headings(&["Brand Voice"]) },
                Section { text: "LinkedIn\n\nProfessional.".into(), location: headings(&["Brand Voice", "LinkedIn"]) },
                Section {
                    text: "Hashtags\n\nThree at most.".into(),
                    location: headings(&["Brand Voice", "LinkedIn", "Hashtags"])
                },
                Section { text: "Email\n\nShort.".into(), location: headings(&["Brand Voice", "Email"]) },
            ]
        );
    }

    #[test]
    fn the_title_is_the_first_h1() {
        let doc = extract_str("## Not this\n\ntext\n\n# The *real* title\n\nmore\n\n# Second\n");
        assert_eq!(doc.title.as_deref(), Some("The real title"));
        assert_eq!(extract_str("just text").title, None);
    }

    #[test]
    fn blocks_are_plain_text_separated_by_blank_lines() {
        let doc = extract_str(
            "A *soft*\nwrapped **paragraph** with `code` and [a link](http://x.test).\n\n\
             - one\n- two\n  - nested\n\n1. first\n2. second\n\n> quoted\n\n\
             ```rust\nfn main() {\n    run();\n}\n```\n\n| Plan | Price |\n|---|---|\n| Starter | 29 |\n",
        );
        assert_eq!(
            doc.text(),
            "A soft wrapped paragraph with code and a link.\n\n- one\n- two\n  - nested\n\n\
             1. first\n2. second\n\nquoted\n\nfn main() {\n    run();\n}\n\nPlan | Price\nStarter | 29"
        );
    }

    #[test]
    fn raw_html_tags_are_stripped_but_their_text_kept() {
        let doc = extract_str(
            "Text with <span class=\"x\">inline</span> html<br>and a break.\n\n\
             <div align=\"center\">\n<b>Block</b> html &amp; entities\n</div>\n\n\
             Inline <script>alert('no')</script> script.\n\n<!-- a comment -->\n\nEnd.\n",
        );
        assert_eq!(
            doc.text(),
            "Text with inline html\nand a break.\n\nBlock html & entities\n\nInline script.\n\nEnd."
        );
    }

    #[test]
    fn front_matter_is_not_text() {
        let doc = extract_str("---\ntitle: meta\ntags: [a]\n---\n\n# Real\n\nBody.\n");
        assert_eq!(doc.text(), "Real\n\nBody.");
    }

    #[test]
    fn loose_list_items_stay_one_per_line() {
        let doc = extract_str("- first item\n\n- second item\n\n  continued\n");
        assert_eq!(doc.text(), "- first item\n- second item\ncontinued");
    }

    #[test]
    fn the_sample_markdown_documents_extract_to_sectioned_text() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_docs");
        let name = "brand-voice-and-tone.md";
        let doc = extract(&std::fs::read(dir.join(name)).expect("sample exists")).expect(name);
        assert!(doc.title.is_some());
        assert!(doc.sections.len() > 2);
        assert!(doc.sections.iter().all(|s| matches!(&s.location, Location::Headings(p) if !p.is_empty())));
        assert!(!doc.text().contains("## "), "heading markers are gone");
    }
}
