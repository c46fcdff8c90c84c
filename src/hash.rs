//! Content hashes: sha256 of normalised chunk text, and of a document's source bytes.

use sha2::{Digest, Sha256};

/// Normalises text so that differences a reader cannot see (line endings, runs of
/// whitespace, surrounding blanks) do not change the hash.
pub fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Hex sha256 of the normalised text: the `content_hash` of a chunk.
pub fn chunk_hash(text: &str) -> String {
    bytes_hash(normalise(text).as_bytes())
}

/// Hex sha256 of raw bytes: the `content_hash` of a document's source file.
pub fn bytes_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_sha256_of_the_normalised_text() {
        // sha256("hello world")
        assert_eq!(
            chunk_hash("  hello \r\n world\t"),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn invisible_whitespace_changes_do_not_change_the_hash() {
        assert_eq!(chunk_hash("a b\nc"), chunk_hash("a  b\r\n\tc "));
    }

    #[test]
    fn different_words_give_different_hashes() {
        assert_ne!(chunk_hash("refund within 30 days"), chunk_hash("refund within 14 days"));
    }

    #[test]
    fn bytes_hash_is_64_hex_digits() {
        let h = bytes_hash(b"");
        assert_eq!(h.len(), 64);
        assert_eq!(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
