//! Every environment variable kb reads is documented in the README's configuration table and
//! in `.env.example`: the names are taken from the sources, so a new one cannot go unlisted.

use std::collections::BTreeSet;
use std::path::Path;

use crate::helpers::repo_path;

/// The quoted names of environment variables in kb's sources: `KB_*`, `DATABASE_URL` and
/// `OPENAI_*`, as clap's `env = "..."` or `std::env::var("...")` spell them.
fn variables_in_sources() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in walkdir::WalkDir::new(repo_path("src")) {
        let entry = entry.expect("walk src");
        if entry.path().extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read source");
        for quoted in text.split('"').skip(1).step_by(2) {
            let is_name = quoted.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            let ours = quoted.starts_with("KB_") || quoted.starts_with("OPENAI_") || quoted == "DATABASE_URL";
            // KB_EXTRACT_WORKER_*: set by kb itself for its extraction child, not configuration.
            let internal = quoted.starts_with("KB_EXTRACT_WORKER_");
            if is_name && ours && !internal && quoted.len() > 3 {
                names.insert(quoted.to_string());
            }
        }
    }
    names
}

fn missing_from(path: &Path, names: &BTreeSet<String>) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read doc");
    names.iter().filter(|n| !text.contains(&format!("`{n}`")) && !text.contains(&format!("{n}="))).cloned().collect()
}

#[test]
fn every_variable_is_documented_in_the_readme_and_env_example() {
    let names = variables_in_sources();
    assert!(names.len() > 20 && names.contains("KB_JWT_SECRET"), "found {names:?}");
    let readme = missing_from(&repo_path("README.md"), &names);
    assert!(readme.is_empty(), "not in README.md: {readme:?}");
    let example = missing_from(&repo_path(".env.example"), &names);
    assert!(example.is_empty(), "not in .env.example: {example:?}");
}
