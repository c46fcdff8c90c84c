//! Fuzzes `/rest/v1`'s request grammar (src/http/rest/parse.rs, compiled here alone: it
//! depends on nothing but std). Every input must be parsed or refused with a `ParseError`
//! (answered as PGRST100): never a panic, an overflow or a hang.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/http/rest/parse.rs"]
mod parse;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The whole query string, as the server reads it.
    if let Ok(pairs) = parse::pairs(text) {
        let _ = parse::query(&pairs);
    }
    // Each grammar on its own, so the fuzzer reaches deep into each.
    let _ = parse::select(text);
    let _ = parse::order(text);
    if let Ok(field) = parse::field(text.split('=').next().unwrap_or("")) {
        let _ = parse::filter(field, text.split_once('=').map(|(_, v)| v).unwrap_or(""));
    }
    let _ = parse::range(text);
    let _ = parse::Preferences::parse(std::iter::once(text));
});
