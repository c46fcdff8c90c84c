//! The search bench's data: real texts embedded with kb's model, and rows derived from them.
//!
//! Base: the distinct short descriptions of the Debian packages `apt-cache dumpavail` lists
//! (every Debian machine has them) and NFCorpus's abstracts (title and first words), if
//! `--nfcorpus` is given. Queries: real texts held out of the base (every 120th Debian
//! description) and NFCorpus's queries. Both are embedded once and cached
//! (`<cache>/base.npy`, `queries.npy`, keyed by the texts' sha256 and the model).
//!
//! Rows beyond the base are derived so that the distribution stays that of real embeddings:
//! each is a random convex combination (Dirichlet(1, ...) weights) of a base vector and one
//! or two of its 8 exact nearest neighbours in the base, plus Gaussian noise of standard
//! deviation `NOISE` per dimension, renormalised.

use std::collections::BTreeSet;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::chunk::Tokenizer;
use crate::embed::Embedder;

/// Neighbours kept per base vector for the derivation.
const NEIGHBOURS: usize = 8;
/// Standard deviation of the noise added per dimension of a derived row (its norm is about
/// NOISE * sqrt(384) = 0.06 before renormalising).
pub const NOISE: f32 = 0.003;
/// Every this many Debian descriptions, one is held out of the base as a query.
const HOLD_OUT_EVERY: usize = 120;
/// Words of an NFCorpus abstract kept (title + text), so that each fits the model's window.
const NFCORPUS_WORDS: usize = 120;

/// Real texts and their embeddings: the base, and the held-out queries.
pub struct Dataset {
    pub texts: Vec<String>,
    pub base: Vec<Vec<f32>>,
    pub query_texts: Vec<String>,
    pub queries: Vec<Vec<f32>>,
}

/// The texts, in named parts (each embedded and cached on its own): Debian's descriptions,
/// NFCorpus's abstracts (words kept while they fit `max_tokens`), and the queries.
fn texts(
    nfcorpus: Option<&Path>,
    tokenizer: &Tokenizer,
    max_tokens: usize,
) -> anyhow::Result<Vec<(&'static str, Vec<String>)>> {
    let out = std::process::Command::new("apt-cache")
        .arg("dumpavail")
        .output()
        .context("running `apt-cache dumpavail` (the bench's texts are Debian's package descriptions)")?;
    if !out.status.success() {
        bail!("`apt-cache dumpavail` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let descriptions: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Description: "))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    let mut debian = Vec::new();
    let mut queries = Vec::new();
    for (i, d) in descriptions.into_iter().enumerate() {
        if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 { queries.push(d) } else { debian.push(d) }
    }
    let mut abstracts = Vec::new();
    if let Some(dir) = nfcorpus {
        for line in read_lines(&dir.join("corpus.jsonl"))? {
            let record: serde_json::Value = serde_json::from_str(&line).context("corpus.jsonl")?;
            let text = format!("{} {}", record["title"].as_str().unwrap_or(""), record["text"].as_str().unwrap_or(""));
            let mut words: Vec<&str> = text.split_whitespace().take(NFCORPUS_WORDS).collect();
            while words.len() > 1 && tokenizer.count(&words.join(" ")) > max_tokens {
                words.truncate(words.len() * 9 / 10);
            }
            abstracts.push(words.join(" "));
        }
        for line in read_lines(&dir.join("queries.jsonl"))? {
            let record: serde_json::Value = serde_json::from_str(&line).context("queries.jsonl")?;
            queries.push(record["text"].as_str().unwrap_or("").to_string());
        }
    }
    Ok(vec![("debian", debian), ("nfcorpus", abstracts), ("queries", queries)])
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let lines: Result<Vec<String>, _> = std::io::BufReader::new(file).lines().collect();
    Ok(lines
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// The texts and their embeddings; each part from the cache when its key (the model and the
/// texts' sha256) matches, else embedded now and cached at once.
pub async fn load(embedder: &dyn Embedder, cache: &Path, nfcorpus: Option<&Path>) -> anyhow::Result<Dataset> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let mut data = Dataset { texts: Vec::new(), base: Vec::new(), query_texts: Vec::new(), queries: Vec::new() };
    for (name, texts) in texts(nfcorpus, &embedder.tokenizer(), embedder.max_input_tokens())? {
        let vectors = cached(embedder, cache, name, &texts).await?;
        if name == "queries" {
            data.query_texts = texts;
            data.queries = vectors;
        } else {
            data.texts.extend(texts);
            data.base.extend(vectors);
        }
    }
    Ok(data)
}

async fn cached(embedder: &dyn Embedder, cache: &Path, name: &str, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let mut hash = Sha256::new();
    hash.update(embedder.model());
    for t in texts {
        hash.update(t.as_bytes());
        hash.update([0]);
    }
    let key = format!("{:x}", hash.finalize());
    let (key_file, npy) = (cache.join(format!("{name}.key")), cache.join(format!("{name}.npy")));
    if std::fs::read_to_string(&key_file).is_ok_and(|k| k.trim() == key) {
        let vectors = read_npy(&npy)?;
        if vectors.len() == texts.len() {
            eprintln!("{} {name} texts: embeddings from {}", texts.len(), npy.display());
            return Ok(vectors);
        }
    }
    eprintln!(
        "embedding {} {name} texts with {} (cached in {} for later runs)...",
        texts.len(),
        embedder.model(),
        cache.display()
    );
    let vectors = embed_all(embedder, texts).await?;
    write_npy(&npy, &vectors)?;
    std::fs::write(&key_file, &key).with_context(|| format!("writing {}", key_file.display()))?;
    Ok(vectors)
}

async fn embed_all(embedder: &dyn Embedder, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
    const BATCH: usize = 256;
    let started = Instant::now();
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(BATCH) {
        out.extend(embedder.embed(batch).await.context("embedding the bench's texts")?);
        if out.len() % (BATCH * 20) < BATCH || out.len() == texts.len() {
            let rate = out.len() as f64 / started.elapsed().as_secs_f64();
            eprintln!("  {}/{} embedded ({rate:.0} texts/s)", out.len(), texts.len());
        }
    }
    Ok(out)
}

/// The `NEIGHBOURS` exact nearest neighbours (cosine) of every base vector among the others.
pub fn neighbours(base: &[Vec<f32>]) -> anyhow::Result<Vec<[u32; NEIGHBOURS]>> {
    const BLOCK: usize = 512;
    let dims = base.first().map_or(0, Vec::len);
    let flat: Vec<f32> = base.iter().flatten().copied().collect();
    let all = Tensor::from_vec(flat, (base.len(), dims), &Device::Cpu)?;
    let all_t = all.t()?.contiguous()?;
    let mut out = Vec::with_capacity(base.len());
    for start in (0..base.len()).step_by(BLOCK) {
        let len = BLOCK.min(base.len() - start);
        let scores: Vec<Vec<f32>> = all.narrow(0, start, len)?.matmul(&all_t)?.to_vec2()?;
        for (i, row) in scores.iter().enumerate() {
            out.push(top_k(row, start + i));
        }
    }
    Ok(out)
}

/// The indexes of the `NEIGHBOURS` highest scores, best first, `skip` left out.
fn top_k(scores: &[f32], skip: usize) -> [u32; NEIGHBOURS] {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(NEIGHBOURS + 1);
    for (j, &s) in scores.iter().enumerate() {
        if j == skip || (best.len() == NEIGHBOURS && s <= best[NEIGHBOURS - 1].0) {
            continue;
        }
        let at = best.partition_point(|b| b.0 >= s);
        best.insert(at, (s, j as u32));
        best.truncate(NEIGHBOURS);
    }
    let mut out = [0u32; NEIGHBOURS];
    for (o, b) in out.iter_mut().zip(&best) {
        *o = b.1;
    }
    out
}

/// `rows` vectors: the base first, then derived rows. Also the base row each derived row
/// starts from (its text is that row's).
pub fn derive(
    base: &[Vec<f32>],
    neighbours: &[[u32; NEIGHBOURS]],
    rows: usize,
    seed: u64,
) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut rng = Rng(seed);
    let mut vectors: Vec<Vec<f32>> = base.iter().take(rows).cloned().collect();
    let mut parents: Vec<u32> = (0..vectors.len() as u32).collect();
    while vectors.len() < rows {
        let a = rng.below(base.len());
        let parts = 2 + rng.below(2);
        let mut members = vec![a];
        while members.len() < parts {
            let n = neighbours[a][rng.below(NEIGHBOURS)] as usize;
            if !members.contains(&n) {
                members.push(n);
            }
        }
        // Dirichlet(1, ..., 1): normalised exponentials.
        let weights: Vec<f32> = members.iter().map(|_| -rng.unit().max(f32::MIN_POSITIVE).ln()).collect();
        let total: f32 = weights.iter().sum();
        let mut v = vec![0f32; base[a].len()];
        for (m, w) in members.iter().zip(&weights) {
            for (x, b) in v.iter_mut().zip(&base[*m]) {
                *x += w / total * b;
            }
        }
        for x in v.iter_mut() {
            *x += NOISE * rng.gaussian();
        }
        normalise(&mut v);
        vectors.push(v);
        parents.push(a as u32);
    }
    (vectors, parents)
}

/// SplitMix64: seeded, so a run's rows are the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A standard normal sample (Box-Muller).
    fn gaussian(&mut self) -> f32 {
        let u = self.unit().max(f32::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The exact top `k` rows (cosine: the vectors are unit length) of each query, among the
/// rows `keep` accepts, best first.
pub fn exact_top_k(
    rows: &[Vec<f32>],
    queries: &[Vec<f32>],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> anyhow::Result<Vec<Vec<(u32, f32)>>> {
    let dims = rows.first().map_or(0, Vec::len);
    let q =
        Tensor::from_vec(queries.iter().flatten().copied().collect::<Vec<f32>>(), (queries.len(), dims), &Device::Cpu)?;
    let mut best: Vec<Vec<(u32, f32)>> = vec![Vec::with_capacity(k + 1); queries.len()];
    const BLOCK: usize = 65_536;
    for start in (0..rows.len()).step_by(BLOCK) {
        let len = BLOCK.min(rows.len() - start);
        let block: Vec<f32> = rows[start..start + len].iter().flatten().copied().collect();
        let block = Tensor::from_vec(block, (len, dims), &Device::Cpu)?;
        let scores: Vec<Vec<f32>> = q.matmul(&block.t()?)?.to_vec2()?;
        for (qi, row) in scores.iter().enumerate() {
            let top = &mut best[qi];
            for (j, &s) in row.iter().enumerate() {
                let id = start + j;
                if (top.len() == k && s <= top[k - 1].1) || !keep(id) {
                    continue;
                }
                let at = top.partition_point(|b| b.1 >= s);
                top.insert(at, (id as u32, s));
                top.truncate(k);
            }
        }
    }
    Ok(best)
}

/// `.npy` (NumPy's format, version 1.0): little-endian float32, C order, [rows, dims].
pub fn write_npy(path: &Path, rows: &[Vec<f32>]) -> anyhow::Result<()> {
    let dims = rows.first().map_or(0, Vec::len);
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", rows.len(), dims);
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple
    // of 64 and ended by a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let tmp = path.with_extension("npy.tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for row in rows {
        for x in row {
            out.write_all(&x.to_le_bytes())?;
        }
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads what `write_npy` wrote.
fn read_npy(path: &Path) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    let bad = || anyhow::anyhow!("{} is not a float32 .npy file of kb's", path.display());
    if bytes.len() < 10 || &bytes[..8] != b"\x93NUMPY\x01\x00" {
        return Err(bad());
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(bytes.get(10..10 + header_len).ok_or_else(bad)?).map_err(|_| bad())?;
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or_else(bad)?;
    let dims: Vec<usize> = shape.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let [rows, width] = dims[..] else { return Err(bad()) };
    let data = &bytes[10 + header_len..];
    if !header.contains("'<f4'") || data.len() != rows * width * 4 {
        return Err(bad());
    }
    Ok(data
        .chunks_exact(width * 4)
        .map(|row| row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.npy");
        let rows = vec![vec![1.0, -2.5, 3.25], vec![0.0, f32::MIN_POSITIVE, 7.0]];
        write_npy(&path, &rows).expect("write");
        let bytes = std::fs::read(&path).expect("read");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "the data starts 64-byte aligned, as NumPy writes it");
        assert_eq!(read_npy(&path).expect("read back"), rows);
    }

    #[test]
    fn derived_rows_are_unit_vectors_near_their_parents() {
        let mut rng = Rng(1);
        let base: Vec<Vec<f32>> = (0..50)
            .map(|_| {
                let mut v: Vec<f32> = (0..16).map(|_| rng.gaussian()).collect();
                normalise(&mut v);
                v
            })
            .collect();
        let near = neighbours(&base).expect("neighbours");
        // Each vector's first neighbour is the best of the others.
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        for (i, n) in near.iter().enumerate() {
            let best = (0..50)
                .filter(|&j| j != i)
                .max_by(|&a, &b| dot(&base[i], &base[a]).total_cmp(&dot(&base[i], &base[b])));
            assert_eq!(Some(n[0] as usize), best);
        }
        let (rows, parents) = derive(&base, &near, 200, 7);
        assert_eq!(rows.len(), 200);
        assert_eq!(&rows[..50], &base[..], "the base comes first, unchanged");
        for (row, parent) in rows.iter().zip(&parents).skip(50) {
            assert!((dot(row, row) - 1.0).abs() < 1e-4, "unit length");
            // A mix of its parent and 1-2 of the parent's neighbours, one with weight >= 1/3.
            let p = *parent as usize;
            let members = std::iter::once(p).chain(near[p].iter().map(|&n| n as usize));
            let closest = members.map(|m| dot(row, &base[m])).fold(f32::MIN, f32::max);
            assert!(closest > 0.45, "close to a member of its mix: {closest}");
        }
        let top = exact_top_k(&rows, &rows[..3], 5, |_| true).expect("exact");
        assert_eq!(top[0][0].0, 0, "a row is its own nearest");
        let odd = exact_top_k(&rows, &rows[..3], 5, |id| id % 2 == 1).expect("exact, filtered");
        assert!(odd.iter().flatten().all(|(id, _)| id % 2 == 1));
    }
}
