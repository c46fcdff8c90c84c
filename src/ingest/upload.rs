//! An upload, whichever way it comes in (the HTTP API, the MCP `upload_document` tool): its
//! key in the bucket and its format, checked by one set of rules, and its submission as a
//! version of the document under that key, within the bucket owner's quotas.

use sqlx::PgConnection;

use super::quota::{QuotaError, Quotas};
use crate::extract::Format;
use crate::store::documents::{self, Submitted};
use crate::store::{Bucket, jobs};

/// Longest file name, in characters.
pub const MAX_FILE_NAME: usize = 255;
/// Longest document key (the client's path), in bytes.
pub const MAX_KEY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A file name or path breaks a rule; the message says which.
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0:?}: supported files are .txt, .md, .html and .pdf")]
    Unsupported(String),
    #[error("the bucket is embedded with {bucket}, but this server runs {server}")]
    ModelMismatch { bucket: String, server: String },
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The file name of a client-given name or path: its last part, trimmed.
pub fn base_name(name: &str) -> Result<String, UploadError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if base.is_empty() || base == "." || base == ".." {
        return Err(UploadError::Invalid("the file needs a name"));
    }
    if base.chars().count() > MAX_FILE_NAME || base.chars().any(char::is_control) {
        return Err(UploadError::Invalid("the file name is too long or has control characters"));
    }
    Ok(base.to_string())
}

/// A document key from a client-given path: `/`-separated, relative, without `.` or `..`
/// parts. Two files that share a base name in different folders are two documents.
pub fn document_key(path: &str) -> Result<String, UploadError> {
    let parts: Vec<&str> = path.split(['/', '\\']).map(str::trim).filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(UploadError::Invalid("the document path must name a file, without `..`"));
    }
    let key = parts.join("/");
    if key.len() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(UploadError::Invalid("the document path is too long or has control characters"));
    }
    Ok(format!("upload/{key}"))
}

/// The format a file name's extension names.
pub fn format_of(file_name: &str) -> Result<Format, UploadError> {
    Format::from_path(std::path::Path::new(file_name)).ok_or_else(|| UploadError::Unsupported(file_name.to_string()))
}

/// An upload with its key and format decided.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub key: &'a str,
    pub file_name: &'a str,
    pub format: Format,
    pub title: Option<&'a str>,
    pub body: &'a [u8],
}

/// Submits the upload into `bucket` in the caller's transaction: the bucket must be of the
/// server's `model`, and the owner's quotas must allow it (`submit_document` then decides
/// whether it is a new version, unchanged, or a duplicate). The caller commits.
pub async fn submit(
    conn: &mut PgConnection,
    bucket: &Bucket,
    model: &str,
    quotas: &Quotas,
    upload: &Upload<'_>,
) -> Result<Submitted, UploadError> {
    if bucket.embedding_model != model {
        return Err(UploadError::ModelMismatch { bucket: bucket.embedding_model.clone(), server: model.to_string() });
    }
    let usage = jobs::usage(&mut *conn, bucket.created_by).await?;
    let new_document = documents::document_id_by_key(&mut *conn, bucket.id, upload.key).await?.is_none();
    let adding = i64::try_from(upload.body.len()).unwrap_or(i64::MAX);
    quotas.check(&usage, adding, new_document)?;
    let submission = documents::Submission {
        bucket_id: bucket.id,
        key: upload.key,
        file_name: upload.file_name,
        file_type: Some(upload.format.as_str()),
        body: upload.body,
        title: upload.title,
    };
    Ok(documents::submit(conn, &submission).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_loses_its_directories() {
        assert_eq!(base_name("../../etc/passwd.txt").expect("test step"), "passwd.txt");
        assert_eq!(base_name("C:\\docs\\a.md").expect("test step"), "a.md");
        assert!(base_name("dir/").is_err());
    }

    #[test]
    fn files_in_different_folders_are_different_documents() {
        assert_eq!(document_key("/notes//./q2\\plan.md").expect("a valid path"), "upload/notes/q2/plan.md");
        assert_ne!(document_key("a/README.md").expect("key"), document_key("b/README.md").expect("key"));
        for bad in ["../etc/passwd.txt", "a/../../b.md", " / ", ""] {
            assert!(document_key(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn unsupported_extensions_are_refused() {
        assert_eq!(format_of("a.MD").expect("markdown"), Format::Markdown);
        assert!(matches!(format_of("image.png"), Err(UploadError::Unsupported(_))));
    }
}
