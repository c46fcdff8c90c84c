//! Text extraction: source bytes of a supported format -> sections of plain text, each with
//! its provenance (PDF page, markdown/HTML heading path). Pure: no database, no network. The
//! PDF and HTML parsers, and any large document, run in a child process under time and
//! memory limits (see `worker`).

mod html;
mod markdown;
mod outline;
mod pdf;
mod text;
pub mod worker;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

pub use worker::ExtractLimits;

/// Documents up to this size in formats whose parsers are linear (plain text, markdown) are
/// extracted in process; larger ones, and every PDF and HTML file, in the worker.
pub const IN_PROCESS_MAX_BYTES: usize = 1024 * 1024;

/// A supported document format, recognised by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
}

impl Format {
    /// The format a file name's extension names, if kb supports it.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "txt" | "text" => Some(Format::Text),
            "md" | "markdown" => Some(Format::Markdown),
            "html" | "htm" => Some(Format::Html),
            "pdf" => Some(Format::Pdf),
            _ => None,
        }
    }

    /// The `file_type` stored with the document.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }
}

/// Where a section's text came from inside its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    Whole,
    Page(u32),
    Headings(Vec<String>),
}

impl Location {
    /// The provenance written into each chunk's `metadata`.
    pub fn to_metadata(&self) -> serde_json::Value {
        match self {
            Location::Whole => json!({}),
            Location::Page(page) => json!({ "page": page }),
            Location::Headings(path) if path.is_empty() => json!({}),
            Location::Headings(path) => json!({ "headings": path }),
        }
    }
}

/// A run of text that chunks are cut from; chunks never cross sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub text: String,
    pub location: Location,
}

/// What extraction found in one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    pub format: Format,
    /// The document's own title (markdown H1, HTML `<title>`), if it has one.
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

impl Extracted {
    /// The document's full plain text, as stored in `knowledge_documents.content`.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self.sections.iter().map(|s| s.text.trim()).collect();
        parts.join("\n\n")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExtractError {
    #[error("unsupported file type {0:?}: kb reads .txt, .md, .html and .pdf")]
    Unsupported(String),
    #[error("the file is binary, not text (it contains NUL bytes)")]
    Binary,
    #[error("the file is not valid UTF-8 (invalid byte sequence at byte {0})")]
    InvalidUtf8(usize),
    #[error("the document contains no text")]
    Empty,
    #[error("the PDF could not be read: {0}")]
    Pdf(String),
    #[error("extracting the text did not finish within {0} seconds")]
    Timeout(u64),
    #[error("the text extractor crashed ({0})")]
    Crashed(String),
    #[error("the extracted text is larger than {0} MiB")]
    TooLarge(u64),
    #[error("the document has more than {0} chunks, the limit per document")]
    TooManyChunks(usize),
}

/// Extracts the text of a document of the given format, in the worker process where the
/// format or the size calls for it.
pub fn extract(format: Format, bytes: &[u8], limits: &ExtractLimits) -> Result<Extracted, ExtractError> {
    let isolate = matches!(format, Format::Pdf | Format::Html) || bytes.len() > IN_PROCESS_MAX_BYTES;
    if isolate { worker::extract(format, bytes, limits) } else { extract_here(format, bytes) }
}

/// Extracts in this process: what the worker runs, and small text and markdown files.
fn extract_here(format: Format, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let extracted = match format {
        Format::Text => text::extract(bytes)?,
        Format::Markdown => markdown::extract(bytes)?,
        Format::Html => html::extract(bytes)?,
        Format::Pdf => pdf::extract(bytes)?,
    };
    if extracted.sections.iter().all(|s| s.text.trim().is_empty()) {
        return Err(ExtractError::Empty);
    }
    Ok(extracted)
}

/// Decodes bytes that must be UTF-8 text: no NUL bytes, valid UTF-8, BOM dropped.
fn decode_text(bytes: &[u8]) -> Result<&str, ExtractError> {
    if bytes.contains(&0) {
        return Err(ExtractError::Binary);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| ExtractError::InvalidUtf8(e.valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_extension_in_any_case() {
        assert_eq!(Format::from_path(Path::new("a/b.MD")), Some(Format::Markdown));
        assert_eq!(Format::from_path(Path::new("x.htm")), Some(Format::Html));
        assert_eq!(Format::from_path(Path::new("x.pdf")), Some(Format::Pdf));
        assert_eq!(Format::from_path(Path::new("x.txt")), Some(Format::Text));
        assert_eq!(Format::from_path(Path::new("x.docx")), None);
        assert_eq!(Format::from_path(Path::new("Makefile")), None);
    }

    #[test]
    fn nul_bytes_mean_binary() {
        assert_eq!(extract_here(Format::Text, b"abc\0def"), Err(ExtractError::Binary));
    }

    #[test]
    fn invalid_utf8_reports_the_offset() {
        assert_eq!(extract_here(Format::Markdown, b"# ok\nfine \xff\xfe"), Err(ExtractError::InvalidUtf8(10)));
    }

    #[test]
    fn whitespace_only_is_empty() {
        assert_eq!(extract_here(Format::Text, b"  \n\t\n"), Err(ExtractError::Empty));
        assert_eq!(extract_here(Format::Text, b""), Err(ExtractError::Empty));
        assert_eq!(extract_here(Format::Html, b"<html><script>x()</script></html>"), Err(ExtractError::Empty));
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let doc = extract_here(Format::Text, b"\xEF\xBB\xBFhello").expect("text");
        assert_eq!(doc.text(), "hello");
    }

    fn hostile(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile").join(name);
        std::fs::read(path).expect("fixture exists")
    }

    #[test]
    fn hostile_text_fixtures_get_clear_errors_in_every_text_format() {
        for format in [Format::Text, Format::Markdown, Format::Html] {
            assert_eq!(extract_here(format, &hostile("empty.txt")), Err(ExtractError::Empty));
            assert_eq!(extract_here(format, &hostile("binary.txt")), Err(ExtractError::Binary));
            let invalid = hostile("invalid-utf8.md");
            let first_bad = invalid.iter().position(|&b| b == 0xff).expect("has an invalid byte");
            assert_eq!(extract_here(format, &invalid), Err(ExtractError::InvalidUtf8(first_bad)));
        }
    }

    #[test]
    fn locations_become_chunk_metadata() {
        assert_eq!(Location::Page(3).to_metadata(), json!({"page": 3}));
        assert_eq!(Location::Headings(vec!["A".into(), "B".into()]).to_metadata(), json!({"headings": ["A", "B"]}));
        assert_eq!(Location::Whole.to_metadata(), json!({}));
    }
}
