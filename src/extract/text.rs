//! Plain text: the whole file is one section.

use super::{ExtractError, Extracted, Format, Location, Section, decode_text};

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes)?.replace("\r\n", "\n");
    Ok(Extracted { format: Format::Text, title: None, sections: vec![Section { text, location: Location::Whole }] })
}
