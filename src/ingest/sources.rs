//! Finding the files to ingest: files named directly, and supported files under directories.

use std::path::{Path, PathBuf};

use crate::extract::Format;

/// A file to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Absolute path; also the document's `upload_path`, which identifies it in its bucket.
    pub path: PathBuf,
    pub format: Option<Format>,
    /// A title given by the uploader, kept over the one extraction finds.
    pub title: Option<String>,
}

impl Source {
    pub fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn extension(&self) -> String {
        self.path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// A file of the given name (an upload): its format follows its extension.
    pub fn named(file_name: &str, title: Option<String>) -> Source {
        let path = PathBuf::from(file_name);
        Source { format: Format::from_path(&path), path, title }
    }

    /// The title used until extraction finds the document's own.
    pub fn default_title(&self) -> String {
        match &self.title {
            Some(title) => title.clone(),
            None => {
                let stem = self.path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                stem.replace(['-', '_'], " ")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The files under `paths`, sorted, each once. A file named directly is always included
/// (an unsupported one then fails with a clear error); inside directories, files of
/// unsupported types and hidden files are skipped.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<Source>, SourceError> {
    let mut found = Vec::new();
    for path in paths {
        let abs = std::fs::canonicalize(path)
            .map_err(|source| SourceError::Io { path: path.display().to_string(), source })?;
        if abs.is_file() {
            found.push(Source { format: Format::from_path(&abs), path: abs, title: None });
            continue;
        }
        for entry in walkdir::WalkDir::new(&abs).follow_links(true).sort_by_file_name() {
            let entry = entry.map_err(|e| SourceError::Io {
                path: e.path().unwrap_or(&abs).display().to_string(),
                source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            })?;
            if !entry.file_type().is_file() || is_hidden(entry.path(), &abs) {
                continue;
            }
            if let Some(format) = Format::from_path(entry.path()) {
                found.push(Source { path: entry.path().to_path_buf(), format: Some(format), title: None });
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found.dedup_by(|a, b| a.path == b.path);
    Ok(found)
}

fn is_hidden(path: &Path, root: &Path) -> bool {
    path.strip_prefix(root).unwrap_or(path).components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_yield_supported_files_and_named_files_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/.git")).expect("mkdir");
        for name in ["a.md", "sub/b.txt", "sub/c.docx", "sub/.git/d.txt", ".hidden.md"] {
            std::fs::write(root.join(name), "x").expect("write");
        }
        let sources = collect(&[root.to_path_buf(), root.join("sub/c.docx"), root.join("a.md")]).expect("collect");
        let names: Vec<String> = sources.iter().map(|s| s.file_name()).collect();
        assert_eq!(names, vec!["a.md", "b.txt", "c.docx"]);
        assert_eq!(sources[2].format, None);
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let err = collect(&[PathBuf::from("/definitely/not/here")]).expect_err("missing");
        assert!(err.to_string().contains("/definitely/not/here"));
    }
}
