//! PDF: text per page via `pdf-extract`. The parser panics, loops and overflows its stack on
//! hostile files, so kb only ever runs it inside the extraction worker process (`worker`).

use super::outline::tidy;
use super::{ExtractError, Extracted, Format, Location, Section};

/// Extracts a PDF's pages; each non-empty page becomes a section. Run in the worker.
pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    parse_pages(bytes).map(to_extracted).map_err(ExtractError::Pdf)
}

/// The in-process parse: one string per page.
fn parse_pages(bytes: &[u8]) -> Result<Vec<String>, String> {
    pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| e.to_string())
}

fn to_extracted(pages: Vec<String>) -> Extracted {
    let sections = pages
        .iter()
        .zip(1u32..)
        .map(|(page, number)| Section { text: normalise_page(page), location: Location::Page(number) })
        .filter(|section| !section.text.is_empty())
        .collect();
    Extracted { format: Format::Pdf, title: None, sections }
}

/// Rebuilds paragraphs from the parser's output, which breaks a line wherever the PDF placed a
/// new line of glyphs and puts blank lines where the vertical gap is large (between paragraphs,
/// around headings). Wrapped lines are joined with a space (or nothing after a hyphen at the end
/// of a word); list items keep their own line.
fn normalise_page(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut line_open = false;
    for line in raw.lines() {
        let line: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
        let line: String = line.chars().filter(|c| !c.is_control()).collect();
        if line.is_empty() {
            if line_open {
                out.push_str("\n\n");
                line_open = false;
            }
            continue;
        }
        if line_open {
            if starts_list_item(&line) {
                out.push('\n');
            } else if !ends_with_word_hyphen(&out) {
                out.push(' ');
            }
        }
        out.push_str(&line);
        line_open = true;
    }
    tidy(&out)
}

fn starts_list_item(line: &str) -> bool {
    let first = line.split(' ').next().unwrap_or_default();
    matches!(first, "\u{2022}" | "-" | "*" | "\u{2013}" | "\u{25aa}" | "\u{25cf}")
        || first.strip_suffix(['.', ')']).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// "self-" at the end of a line: the word continues on the next line without a space.
fn ends_with_word_hyphen(text: &str) -> bool {
    let mut tail = text.chars().rev();
    tail.next() == Some('-') && tail.next().is_some_and(char::is_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_docs").join(name);
        std::fs::read(path).expect("sample pdf exists")
    }

    #[test]
    fn the_sample_pdf_parses_in_process_into_numbered_pages() {
        let pages = parse_pages(&sample("pricing-and-billing.pdf")).expect("parses");
        assert!(pages.len() >= 2, "multi-page sample, got {}", pages.len());
        let doc = to_extracted(pages);
        assert_eq!(doc.sections[0].location, Location::Page(1));
        assert_eq!(doc.sections[1].location, Location::Page(2));
        let first = &doc.sections[0].text;
        assert!(first.starts_with("Lighthouse Pricing Plans and Billing Guide"), "{first}");
        assert!(first.contains("Annual billing saves roughly 16 percent"), "words are not glued: {first}");
        let all = doc.text();
        assert!(all.contains("Upgrading and downgrading"), "the last page is read");
    }

    #[test]
    fn every_sample_pdf_reads_back_as_words() {
        for name in [
            "pricing-and-billing.pdf",
            "refund-and-cancellation-policy.pdf",
            "data-privacy-policy.pdf",
            "security-overview.pdf",
        ] {
            let doc = to_extracted(parse_pages(&sample(name)).expect(name));
            let text = doc.text();
            let words: Vec<&str> = text.split_whitespace().collect();
            let longest = words.iter().map(|w| w.chars().count()).max().unwrap_or(0);
            assert!(words.len() > 500, "{name}: {} words", words.len());
            assert!(longest < 40, "{name}: a {longest}-char word means glued text");
        }
    }

    #[test]
    fn wrapped_lines_are_joined_and_paragraphs_kept() {
        let raw = "\n\nTitle\n\nFirst line of a para-\ngraph that wraps\nonto   three lines.\n\n\n\
                   \u{2022} item one\n\u{2022} item two\n1. step\n\n\nEnd.  \n";
        assert_eq!(
            normalise_page(raw),
            "Title\n\nFirst line of a para-graph that wraps onto three lines.\n\n\u{2022} item one\n\
             \u{2022} item two\n1. step\n\nEnd."
        );
    }

    #[test]
    fn a_garbled_pdf_is_a_parse_error_in_process() {
        assert!(parse_pages(b"%PDF-1.7\nthis is not really a pdf").is_err());
        assert!(parse_pages(b"").is_err());
    }

    #[test]
    fn empty_pages_are_not_sections_but_keep_their_numbers() {
        let doc = to_extracted(vec!["one".into(), "  \n ".into(), "three".into()]);
        let pages: Vec<&Location> = doc.sections.iter().map(|s| &s.location).collect();
        assert_eq!(pages, vec![&Location::Page(1), &Location::Page(3)]);
    }
}
