//! HTML: the visible text of a page, split into sections at its `h1`-`h6` headings.

use scraper::{Html, Node};

use super::outline::{Outline, TextBuf};
use super::{ExtractError, Extracted, Format, decode_text};

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let doc = Html::parse_document(decode_text(bytes)?);
    let mut outline = Outline::default();
    render(&doc, &mut outline);
    let title = title_element(&doc).or_else(|| outline.first_h1().map(str::to_owned));
    Ok(Extracted { format: Format::Html, title, sections: outline.finish() })
}

/// Writes the visible text of an HTML fragment (a markdown HTML block) into `outline`.
pub(super) fn render_fragment(html: &str, outline: &mut Outline) {
    render(&Html::parse_fragment(html), outline);
}

/// Elements whose content a reader never sees as text.
const INVISIBLE: &[&str] = &[
    "script", "style", "noscript", "template", "head", "title", "svg", "iframe", "object", "embed", "canvas", "audio",
    "video", "map", "input", "select", "textarea", "button",
];

/// Elements that stand apart from their neighbours by a blank line.
const BLOCKS: &[&str] = &[
    "p",
    "blockquote",
    "table",
    "dl",
    "figure",
    "address",
    "details",
    "fieldset",
    "form",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
];

/// Elements that start and end a line.
const LINES: &[&str] = &[
    "div",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "dt",
    "dd",
    "figcaption",
    "summary",
    "caption",
    "legend",
    "tr",
    "thead",
    "tbody",
    "tfoot",
    "li",
    "center",
    "body",
    "html",
];

/// Deeper list nesting is flattened: hostile input must not make each line kilobytes of indent.
const MAX_LIST_INDENT: usize = 8;

fn render(doc: &Html, outline: &mut Outline) {
    let mut walker = Walker { outline, heading: None, lists: Vec::new(), pre_depth: 0 };
    // An explicit stack, not recursion: hostile pages nest elements thousands deep.
    let mut stack = vec![(doc.tree.root(), false)];
    while let Some((node, closing)) = stack.pop() {
        match node.value() {
            Node::Text(text) if !closing => walker.text(text),
            Node::Element(element) if closing => walker.close(element.name()),
            Node::Element(element) => {
                if !is_visible(element) {
                    continue;
                }
                walker.open(element.name());
                stack.push((node, true));
                stack.extend(node.children().rev().map(|child| (child, false)));
            }
            Node::Document | Node::Fragment => {
                stack.extend(node.children().rev().map(|child| (child, false)));
            }
            _ => {}
        }
    }
    walker.outline.body().block_break();
}

fn is_visible(element: &scraper::node::Element) -> bool {
    if INVISIBLE.contains(&element.name()) || element.attr("hidden").is_some() {
        return false;
    }
    let style = element.attr("style").unwrap_or_default().to_ascii_lowercase();
    let style: String = style.split_whitespace().collect();
    !style.contains("display:none") && !style.contains("visibility:hidden")
}

struct Walker<'a> {
    outline: &'a mut Outline,
    /// Level and text of the heading being read, while inside one.
    heading: Option<(u8, String)>,
    /// Open lists, innermost last: the next item number of an `ol`, `None` for a `ul`.
    lists: Vec<Option<u64>>,
    /// How many `pre` elements enclose the current node (their whitespace is kept).
    pre_depth: usize,
}

impl Walker<'_> {
    fn out(&mut self) -> &mut TextBuf {
        self.outline.body()
    }

    fn text(&mut self, text: &str) {
        if let Some((_, heading)) = &mut self.heading {
            heading.push_str(text);
        } else if self.pre_depth > 0 {
            self.out().push_raw(text);
        } else {
            self.out().push_collapsed(text);
        }
    }

    fn open(&mut self, name: &str) {
        if let Some(level) = heading_level(name) {
            self.heading = Some((level, String::new()));
            return;
        }
        if self.heading.is_some() {
            // Markup inside a heading (`<h2><span>..</span></h2>`) is part of its text.
            if name == "br" {
                self.text(" ");
            }
            return;
        }
        match name {
            "br" => self.out().hard_break(),
            "pre" => {
                self.out().block_break();
                self.pre_depth += 1;
            }
            "ul" | "ol" => {
                self.list_break();
                self.lists.push((name == "ol").then_some(1));
            }
            "li" => {
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
            // Cells after the first in a row are set off by a bar.
            "td" | "th" if !self.outline.body().at_line_start() => self.out().push_raw(" | "),
            _ if BLOCKS.contains(&name) => self.out().block_break(),
            _ if LINES.contains(&name) => self.out().line_break(),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if let Some(level) = heading_level(name) {
            // A heading nested in a heading closes the outer one's capture early; the outer
            // close then finds nothing to do.
            if let Some((open_level, text)) = self.heading.take() {
                self.outline.heading(open_level.min(level), &text);
            }
            return;
        }
        if self.heading.is_some() {
            return;
        }
        match name {
            "pre" => {
                self.pre_depth = self.pre_depth.saturating_sub(1);
                self.out().block_break();
            }
            "ul" | "ol" => {
                self.lists.pop();
                self.list_break();
            }
            _ if BLOCKS.contains(&name) => self.out().block_break(),
            _ if LINES.contains(&name) => self.out().line_break(),
            _ => {}
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

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

/// The `<title>` text, whitespace collapsed, if the page has a non-empty one.
fn title_element(doc: &Html) -> Option<String> {
    let title = doc.root_element().descendants().find_map(|node| {
        let element = scraper::ElementRef::wrap(node)?;
        (element.value().name() == "title").then_some(element)
    })?;
    let text = title.text().collect::<Vec<_>>().join(" ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{Location, Section};

    fn extract_str(html: &str) -> Extracted {
        extract(html.as_bytes()).expect("valid html")
    }

    fn headings(path: &[&str]) -> Location {
        Location::Headings(path.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn scripts_and_styles_are_not_visible_text() {
        let doc = extract_str(
            "<html><head><title>T</title><style>p { color: red }</style>\
             <script>var secret = 1;</script></head><body><p>Shown</p>\
             <script>alert('x')</script><noscript>enable js</noscript>\
             <template><p>later</p></template><div hidden>gone</div>\
             <span style=\"display: none\">also gone</span></body></html>",
        );
        assert_eq!(doc.text(), "Shown");
    }

    #[test]
    fn entities_are_decoded_and_markup_removed() {
        let doc = extract_str("<p>Fish &amp; chips &lt;b&gt; &#8364;5 &nbsp;<b>bold</b> <i>it</i>alic</p>");
        assert_eq!(doc.text(), "Fish & chips <b> \u{20ac}5 bold italic");
    }

    #[test]
    fn block_elements_break_lines_and_inline_elements_do_not() {
        let doc = extract_str(
            "<body><p>One <a href='#'>link</a> here</p><div>Two</div><div>Three</div>\
             <ul><li>first</li><li>second<ul><li>nested</li></ul></li></ul>\
             <ol><li>a</li><li>b</li></ol>line<br>break\
             <table><tr><th>Plan</th><th>Price</th></tr><tr><td>Starter</td><td>29</td></tr></table></body>",
        );
        assert_eq!(
            doc.text(),
            "One link here\n\nTwo\nThree\n\n- first\n- second\n  - nested\n\n1. a\n2. b\n\n\
             line\nbreak\n\nPlan | Price\nStarter | 29"
        );
    }

    #[test]
    fn html_sections_carry_their_heading_path() {
        let doc = extract_str(
            "<h1>Guide</h1><p>Intro.</p><h2>Setup</h2><p>Install it.</p>\
             <h3>Linux</h3><p>apt.</p><h2>Usage <small>v2</small></h2><p>Run it.</p>",
        );
        assert_eq!(
            doc.sections,
            vec![
                Section { text: "Guide\n\nIntro.".into(), location: headings(&["Guide"]) },
                Section { text: "Setup\n\nInstall it.".into(), location: headings(&["Guide", "Setup"]) },
                Section { text: "Linux\n\napt.".into(), location: headings(&["Guide", "Setup", "Linux"]) },
                Section { text: "Usage v2\n\nRun it.".into(), location: headings(&["Guide", "Usage v2"]) },
            ]
        );
    }

    #[test]
    fn the_title_element_wins_over_the_first_h1() {
        assert_eq!(
            extract_str("<title> Page\n title </title><h1>Heading</h1><p>x</p>").title.as_deref(),
            Some("Page title")
        );
        assert_eq!(extract_str("<h2>Sub</h2><h1>Main</h1><p>x</p>").title.as_deref(), Some("Main"));
        assert_eq!(extract_str("<p>no title</p>").title, None);
    }

    #[test]
    fn preformatted_text_keeps_its_whitespace() {
        let doc = extract_str("<p>See:</p><pre>fn main() {\n    run();\n}</pre>");
        assert_eq!(doc.text(), "See:\n\nfn main() {\n    run();\n}");
    }

    #[test]
    fn deeply_nested_markup_does_not_overflow_the_stack() {
        // 15,000 levels: a recursive walk would risk the test thread's 2 MiB stack. Not deeper,
        // because html5ever's tree builder takes time quadratic in the nesting depth.
        let html = format!("{}deep{}", "<div><ul><li>".repeat(5_000), "</li></ul></div>".repeat(5_000));
        let doc = extract_str(&html);
        let text = &doc.sections[0].text;
        assert_eq!(text, &format!("{}- deep", "  ".repeat(MAX_LIST_INDENT - 1)));
    }

    #[test]
    fn the_sample_html_documents_extract_to_sectioned_text() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_docs");
        for name in ["product-faq.html", "partner-affiliate-program.html", "webinar-and-event-playbook.html"] {
            let doc = extract(&std::fs::read(dir.join(name)).expect("sample exists")).expect(name);
            assert!(doc.title.is_some(), "{name} has a title");
            assert!(doc.sections.len() > 2, "{name} has several sections");
            assert!(!doc.text().contains('<'), "{name} has no markup left");
        }
    }
}
