//! The BERT encoder the local embedder runs on the CPU: the same arithmetic as Hugging Face's
//! `BertModel` in f32, laid out for speed on a few cores.
//!
//! - **No padding.** The texts of a batch are packed row after row (`[tokens, hidden]`); the
//!   matrix products see every token of the batch at once and attention runs per text, so a
//!   short text never pays for a long one.
//! - **Matrix products** through faer's (runtime-dispatched AVX-512 / AVX2+FMA kernels, with a
//!   portable fallback; threaded by rayon), written into buffers kept from pass to pass, with
//!   the weights transposed once at load time and query, key and value fused into one product.
//!   Attention is two small products per (text, head) around a softmax, the pairs spread over
//!   rayon's threads.
//! - **Everything else fused and threaded**: bias + GELU, bias + residual + LayerNorm and the
//!   softmax, each split over rayon's threads and compiled for the widest SIMD the CPU has
//!   (`pulp`'s runtime dispatch of plain loops, so the binary still runs on any x86-64 or
//!   aarch64 CPU). `KB_EMBED_SIMD=scalar` turns that dispatch off (baseline instructions only).

use std::sync::{Mutex, OnceLock, PoisonError};

use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::Deserialize;

/// The parts of a Hugging Face BERT `config.json` the encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_position_embedding_type() -> String {
    "absolute".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// `gelu`: x·Φ(x) with the exact error function.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
}

/// Scale and shift of a LayerNorm.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// A linear layer: `x · weight + bias`, the weight stored `[in, out]` row-major.
struct Dense {
    weight: Vec<f32>,
    inputs: usize,
    bias: Vec<f32>,
}

impl Dense {
    fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `out = x · weight` for the `rows` rows of `x` (the bias is left to the fused kernel
    /// that follows). `out` is reused across layers: the product overwrites it.
    fn product(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        let (inputs, outputs) = (self.inputs, self.outputs());
        let x = faer::MatRef::from_row_major_slice(&x[..rows * inputs], rows, inputs);
        let weight = faer::MatRef::from_row_major_slice(&self.weight, inputs, outputs);
        let out = faer::MatMut::from_row_major_slice_mut(&mut out[..rows * outputs], rows, outputs);
        faer::linalg::matmul::matmul(out, faer::Accum::Replace, x, weight, 1.0, faer::Par::rayon(0));
    }
}

struct Layer {
    /// Query, key and value side by side: `[hidden, 3·hidden]`.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    up: Dense,
    down: Dense,
    output_norm: Norm,
}

pub(super) struct Encoder {
    /// `[vocab, hidden]`, `[positions, hidden]`, and token type 0's row (single-segment inputs).
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    positions: usize,
    vocab: usize,
    activation: Activation,
    eps: f32,
    /// The activations, kept from pass to pass (one model thread uses them; the lock is
    /// never contended). They grow to the largest pass and stay: about 15 KB per token.
    scratch: Mutex<Buffers>,
}

fn vector(vb: &VarBuilder, len: usize, name: &str) -> candle_core::Result<Vec<f32>> {
    vb.get(len, name)?.to_vec1::<f32>()
}

fn norm(vb: VarBuilder, hidden: usize) -> candle_core::Result<Norm> {
    // Old checkpoints name them gamma/beta.
    let (gamma, beta) = if vb.contains_tensor("weight") { ("weight", "bias") } else { ("gamma", "beta") };
    Ok(Norm { gamma: vector(&vb, hidden, gamma)?, beta: vector(&vb, hidden, beta)? })
}

/// A PyTorch `Linear` (weight `[out, in]`) stored transposed for `x · weight`.
fn dense(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Dense> {
    let weight = vb.get((outputs, inputs), "weight")?.t()?.flatten_all()?.to_vec1()?;
    Ok(Dense { weight, inputs, bias: vector(&vb, outputs, "bias")? })
}

/// Query, key and value's layers as one `[hidden, 3·hidden]` product.
fn fused(parts: [Dense; 3]) -> Dense {
    let inputs = parts[0].inputs;
    let mut weight = Vec::with_capacity(parts.iter().map(|p| p.weight.len()).sum());
    for row in 0..inputs {
        for part in &parts {
            weight.extend_from_slice(&part.weight[row * part.outputs()..][..part.outputs()]);
        }
    }
    Dense { weight, inputs, bias: parts.iter().flat_map(|p| p.bias.iter().copied()).collect() }
}

impl Encoder {
    pub(super) fn load(vb: VarBuilder, config: &Config) -> Result<Encoder, String> {
        let activation = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(format!("unsupported hidden_act {other:?} (gelu, gelu_new, relu)")),
        };
        if config.position_embedding_type != "absolute" {
            return Err(format!("unsupported position_embedding_type {:?}", config.position_embedding_type));
        }
        let (hidden, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}"));
        }
        // Checkpoints of `BertModel` name the tensors `embeddings.*`; of a model with a head on
        // top (`BertForMaskedLM`, ...), `bert.embeddings.*`.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp("bert") };
        Self::load_tensors(&vb, config, activation).map_err(|e| e.to_string())
    }

    fn load_tensors(vb: &VarBuilder, config: &Config, activation: Activation) -> candle_core::Result<Encoder> {
        let hidden = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        let word = embeddings.get((config.vocab_size, hidden), "word_embeddings.weight")?;
        let position = embeddings.get((config.max_position_embeddings, hidden), "position_embeddings.weight")?;
        let token_type = embeddings.get((config.type_vocab_size, hidden), "token_type_embeddings.weight")?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let layer = vb.pp(format!("encoder.layer.{i}"));
            let attention = layer.pp("attention");
            let [q, k, v] = ["query", "key", "value"].map(|name| dense(attention.pp("self").pp(name), hidden, hidden));
            layers.push(Layer {
                qkv: fused([q?, k?, v?]),
                attention_out: dense(attention.pp("output.dense"), hidden, hidden)?,
                attention_norm: norm(attention.pp("output.LayerNorm"), hidden)?,
                up: dense(layer.pp("intermediate.dense"), hidden, config.intermediate_size)?,
                down: dense(layer.pp("output.dense"), config.intermediate_size, hidden)?,
                output_norm: norm(layer.pp("output.LayerNorm"), hidden)?,
            });
        }
        Ok(Encoder {
            word: word.flatten_all()?.to_vec1()?,
            position: position.flatten_all()?.to_vec1()?,
            token_type: token_type.get(0)?.to_vec1()?,
            embedding_norm: norm(embeddings.pp("LayerNorm"), hidden)?,
            layers,
            hidden,
            heads: config.num_attention_heads,
            positions: config.max_position_embeddings,
            vocab: config.vocab_size,
            activation,
            eps: config.layer_norm_eps as f32,
            scratch: Mutex::default(),
        })
    }

    /// The last layer's token vectors of each of `texts` (token ids, [CLS]/[SEP] included),
    /// handed to `each` as the text's `[length, hidden]` rows (row-major); its results, in order.
    pub(super) fn forward<T>(&self, texts: &[&[u32]], mut each: impl FnMut(&[f32]) -> T) -> Result<Vec<T>, String> {
        let mut spans = Vec::with_capacity(texts.len());
        let mut offset = 0;
        for ids in texts {
            if ids.len() > self.positions {
                return Err(format!("{} tokens, more than the model's {} positions", ids.len(), self.positions));
            }
            if let Some(id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(format!("token id {id} outside the vocabulary of {}", self.vocab));
            }
            spans.push((offset, ids.len()));
            offset += ids.len();
        }
        let (tokens, h) = (offset, self.hidden);
        if tokens == 0 {
            return Ok(texts.iter().map(|_| each(&[])).collect());
        }
        // A pass that panicked left nothing a new pass reads: each pass overwrites every
        // buffer before reading it.
        let mut scratch = self.scratch.lock().unwrap_or_else(PoisonError::into_inner);
        let b = &mut *scratch;
        let inner = self.layers.iter().map(|l| l.up.outputs()).max().unwrap_or(0);
        for (buffer, width) in
            [(&mut b.x, h), (&mut b.qkv, 3 * h), (&mut b.context, h), (&mut b.attended, h), (&mut b.inner, inner)]
        {
            buffer.resize(tokens * width, 0.0);
        }
        self.embed(texts, &mut b.x);
        normalize_rows(&mut b.x, &self.embedding_norm, h, self.eps);
        for layer in &self.layers {
            self.layer(layer, b, &spans);
        }
        Ok(spans.iter().map(|&(offset, n)| each(&b.x[offset * h..(offset + n) * h])).collect())
    }

    /// Word + position + token type embeddings of every token, into `x` (`[tokens, hidden]`).
    fn embed(&self, texts: &[&[u32]], x: &mut [f32]) {
        let h = self.hidden;
        let mut rows = x.chunks_exact_mut(h);
        for ids in texts {
            for (position, &id) in ids.iter().enumerate() {
                let Some(row) = rows.next() else { break };
                let word = &self.word[id as usize * h..][..h];
                let pos = &self.position[position * h..][..h];
                for (((out, w), p), t) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                    *out = w + p + t;
                }
            }
        }
    }

    /// One encoder layer over `b.x` (`[tokens, hidden]`), in place.
    fn layer(&self, layer: &Layer, b: &mut Buffers, spans: &[(usize, usize)]) {
        let tokens = b.x.len() / self.hidden;
        layer.qkv.product(&b.x, tokens, &mut b.qkv);
        bias_activation(&mut b.qkv, &layer.qkv.bias, None);
        attention(&b.qkv, &mut b.context, spans, self.hidden, self.heads);
        layer.attention_out.product(&b.context, tokens, &mut b.attended);
        residual_norm(&mut b.attended, &b.x, &layer.attention_out.bias, &layer.attention_norm, self.eps);
        layer.up.product(&b.attended, tokens, &mut b.inner);
        bias_activation(&mut b.inner, &layer.up.bias, Some(self.activation));
        // The layer's output lands in `context` (free again), which then becomes `x`.
        layer.down.product(&b.inner, tokens, &mut b.context);
        residual_norm(&mut b.context, &b.attended, &layer.down.bias, &layer.output_norm, self.eps);
        std::mem::swap(&mut b.x, &mut b.context);
    }
}

/// A forward pass's activations.
#[derive(Default)]
struct Buffers {
    /// `[tokens, hidden]`: the layers' input and output.
    x: Vec<f32>,
    /// `[tokens, 3·hidden]`
    qkv: Vec<f32>,
    /// `[tokens, hidden]`: attention's output, then the layer's.
    context: Vec<f32>,
    /// `[tokens, hidden]`
    attended: Vec<f32>,
    /// `[tokens, intermediate]`
    inner: Vec<f32>,
}

/// Rows per rayon task in the row-wise kernels: enough work to outweigh the task's cost.
const ROWS_PER_TASK: usize = 16;

/// `x += bias` per row, then the activation, in place.
fn bias_activation(x: &mut [f32], bias: &[f32], activation: Option<Activation>) {
    x.par_chunks_mut(bias.len() * ROWS_PER_TASK).for_each(|rows| simd(BiasActivationRows { bias, activation, rows }));
}

struct BiasActivationRows<'a> {
    bias: &'a [f32],
    activation: Option<Activation>,
    rows: &'a mut [f32],
}

impl pulp::WithSimd for BiasActivationRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let bias = self.bias;
        for row in self.rows.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
            match self.activation {
                None => {}
                Some(Activation::Gelu) => {
                    for v in row.iter_mut() {
                        *v = gelu::<S>(*v);
                    }
                }
                Some(Activation::GeluTanh) => {
                    for v in row.iter_mut() {
                        *v = gelu_tanh::<S>(*v);
                    }
                }
                Some(Activation::Relu) => {
                    for v in row.iter_mut() {
                        *v = v.max(0.0);
                    }
                }
            }
        }
    }
}

/// `x = LayerNorm(x + bias + residual)` per row, in place.
fn residual_norm(x: &mut [f32], residual: &[f32], bias: &[f32], norm: &Norm, eps: f32) {
    let chunk = bias.len() * ROWS_PER_TASK;
    x.par_chunks_mut(chunk)
        .zip(residual.par_chunks(chunk))
        .for_each(|(rows, residual)| simd(ResidualNormRows { rows, residual, bias, norm, eps }));
}

struct ResidualNormRows<'a> {
    rows: &'a mut [f32],
    residual: &'a [f32],
    bias: &'a [f32],
    norm: &'a Norm,
    eps: f32,
}

impl pulp::WithSimd for ResidualNormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let cols = self.bias.len();
        for (row, residual) in self.rows.chunks_exact_mut(cols).zip(self.residual.chunks_exact(cols)) {
            for ((v, r), b) in row.iter_mut().zip(residual).zip(self.bias) {
                *v += r + b;
            }
            normalize(row, self.norm, self.eps);
        }
    }
}

/// LayerNorm of each `cols`-wide row of `rows`, in place.
fn normalize_rows(rows: &mut [f32], norm: &Norm, cols: usize, eps: f32) {
    rows.par_chunks_mut(cols * ROWS_PER_TASK).for_each(|rows| simd(NormRows { rows, norm, eps }));
}

struct NormRows<'a> {
    rows: &'a mut [f32],
    norm: &'a Norm,
    eps: f32,
}

impl pulp::WithSimd for NormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for row in self.rows.chunks_exact_mut(self.norm.gamma.len()) {
            normalize(row, self.norm, self.eps);
        }
    }
}

/// LayerNorm of one row, in place (as torch: biased variance, two passes).
#[inline(always)]
fn normalize(row: &mut [f32], norm: &Norm, eps: f32) {
    let mean = sum(row) / row.len() as f32;
    for v in row.iter_mut() {
        *v -= mean;
    }
    let variance = sum_of_squares(row) / row.len() as f32;
    let scale = 1.0 / (variance + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
        *v = *v * scale * g + b;
    }
}

/// Self-attention of each text over its own tokens: `qkv` is `[tokens, 3·hidden]` (query, key,
/// value, each head's `hidden / heads` columns side by side), `out` is `[tokens, hidden]`.
/// Every (text, head) pair is a task of two small matrix products around a softmax, whose
/// normalisation is applied to the `[n, d]` result rather than to the `[n, n]` weights.
fn attention(qkv: &[f32], out: &mut [f32], spans: &[(usize, usize)], hidden: usize, heads: usize) {
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut tasks = Vec::with_capacity(spans.len() * heads);
    let mut rest = faer::MatMut::from_row_major_slice_mut(out, out.len() / hidden, hidden);
    for &(offset, n) in spans.iter().filter(|&&(_, n)| n > 0) {
        let (text, tail) = rest.split_at_row_mut(n);
        rest = tail;
        let rows = &qkv[offset * 3 * hidden..(offset + n) * 3 * hidden];
        // Column `c` of the text's `[n, 3·hidden]` block, `d` wide.
        let part = |c: usize| faer::MatRef::from_row_major_slice_with_stride(&rows[c..], n, d, 3 * hidden);
        let mut text = text;
        for head in 0..heads {
            let (context, others) = text.split_at_col_mut(d);
            text = others;
            let (q, k, v) = (part(head * d), part(hidden + head * d), part(2 * hidden + head * d));
            tasks.push((q, k, v, context));
        }
    }
    tasks
        .into_par_iter()
        .for_each(|(q, k, v, context)| SCRATCH.with_borrow_mut(|scratch| head(scratch, q, k, v, context, scale)));
}

/// One head of one text: `context = softmax(scale · q·kᵀ) · v`.
fn head(
    scratch: &mut Scratch,
    q: faer::MatRef<f32>,
    k: faer::MatRef<f32>,
    v: faer::MatRef<f32>,
    mut context: faer::MatMut<f32>,
    scale: f32,
) {
    let n = q.nrows();
    // Grown, never shrunk: slices of them serve shorter texts.
    if scratch.scores.len() < n * n {
        scratch.scores.resize(n * n, 0.0);
        scratch.inverses.resize(n, 0.0);
    }
    let scores = &mut scratch.scores[..n * n];
    let weights = faer::MatMut::from_row_major_slice_mut(scores, n, n);
    faer::linalg::matmul::matmul(weights, faer::Accum::Replace, q, k.transpose(), scale, faer::Par::Seq);
    simd(SoftmaxRows { rows: scores, inverses: &mut scratch.inverses[..n] });
    let weights = faer::MatRef::from_row_major_slice(scores, n, n);
    faer::linalg::matmul::matmul(context.as_mut(), faer::Accum::Replace, weights, v, 1.0, faer::Par::Seq);
    for (row, &inverse) in context.row_iter_mut().zip(&scratch.inverses[..n]) {
        for value in row.iter_mut() {
            *value *= inverse;
        }
    }
}

/// A thread's attention buffers: a head's `[n, n]` scores, and each row's softmax divisor.
/// Kept per thread for the process: fresh ones per head or job cost page faults.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    inverses: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// The numerators of each `n`-wide row's softmax, `e^(v - max)`, in place, and the inverse of
/// each row's sum (the normalisation is left to the caller).
struct SoftmaxRows<'a> {
    rows: &'a mut [f32],
    inverses: &'a mut [f32],
}

impl pulp::WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let n = self.inverses.len();
        for (row, inverse) in self.rows.chunks_exact_mut(n).zip(self.inverses.iter_mut()) {
            *inverse = softmax_numerators::<S>(row);
        }
    }
}

/// `e^(v - max)` for each `v` of `row`, in place; returns the inverse of their sum.
#[inline(always)]
fn softmax_numerators<S: pulp::Simd>(row: &mut [f32]) -> f32 {
    let max = max(row);
    for v in row.iter_mut() {
        *v = exp::<S>(*v - max);
    }
    1.0 / sum(row)
}

/// Lanes of the reductions: independent partial sums the compiler keeps in SIMD registers.
const LANES: usize = 16;

#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sum_of_squares(values: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v * v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l = if v > *l { v } else { *l };
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// `a·b + c`, as one fused instruction at every SIMD level but the scalar baseline (whose
/// CPUs may lack FMA, where `mul_add` would be a slow library call).
#[inline(always)]
fn madd<S: pulp::Simd>(a: f32, b: f32, c: f32) -> f32 {
    if S::IS_SCALAR { a * b + c } else { a.mul_add(b, c) }
}

/// e^x for the kernels: Cephes' `expf` (range reduction by ln 2, degree-6 polynomial; relative
/// error about 1e-7), branch-free and without float-to-int conversions (which do not vectorise)
/// so that loops of it compile to SIMD. Below -87.3 it returns 0.
#[inline(always)]
fn exp<S: pulp::Simd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.3);
    let shifted = madd::<S>(clamped, LOG2E, SHIFTER);
    let n = shifted - SHIFTER;
    let r = madd::<S>(n, -LN2_LO, madd::<S>(n, -LN2_HI, clamped));
    let mut p = 1.987_569_1e-4;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = madd::<S>(p, r, c);
    }
    let e = madd::<S>(p, r * r, r + 1.0);
    // 2^n through the exponent bits; n is within [-126, 128) after the clamp.
    let two_n = f32::from_bits(shifted.to_bits().wrapping_sub(SHIFTER.to_bits()).wrapping_add(127) << 23);
    let y = e * two_n;
    if x <= -87.3 { 0.0 } else { y }
}

/// The error function: the rational approximation of Eigen and XLA for f32 (an odd degree-13
/// polynomial over an even degree-8 one on [-4, 4], beyond which erf is ±1 in f32; absolute
/// error about 1e-7): no `exp`, one division.
#[inline(always)]
fn erf<S: pulp::Simd>(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_4e-10;
    for c in [2.770_681_5e-8, -2.101_024e-6, -5.692_506_2e-5, -7.349_906_4e-4, -2.954_6e-3, -1.609_603_3e-2] {
        p = madd::<S>(p, x2, c);
    }
    let mut q = -1.456_607_15e-5;
    for c in [-2.133_740_5e-4, -1.682_827e-3, -7.373_329_3e-3, -1.426_473_9e-2] {
        q = madd::<S>(q, x2, c);
    }
    x * p / q
}

#[inline(always)]
fn gelu<S: pulp::Simd>(x: f32) -> f32 {
    let half = 0.5 * x;
    madd::<S>(half, erf::<S>(x * std::f32::consts::FRAC_1_SQRT_2), half)
}

#[inline(always)]
fn gelu_tanh<S: pulp::Simd>(x: f32) -> f32 {
    // tanh(u) = 1 - 2 / (e^{2u} + 1)
    let u = 0.797_884_6 * madd::<S>(0.044_715 * x, x * x, x);
    let tanh = 1.0 - 2.0 / (exp::<S>(2.0 * u) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// Runs `kernel` compiled for the widest SIMD instructions this CPU has (chosen at run time),
/// or for the baseline when `KB_EMBED_SIMD=scalar`.
fn simd<K: pulp::WithSimd>(kernel: K) -> K::Output {
    match arch() {
        Some(arch) => arch.dispatch(kernel),
        None => pulp::Simd::vectorize(pulp::Scalar::new(), kernel),
    }
}

/// The instruction set chosen once per process: `None` for `KB_EMBED_SIMD=scalar`.
fn arch() -> Option<pulp::Arch> {
    static ARCH: OnceLock<Option<pulp::Arch>> = OnceLock::new();
    *ARCH.get_or_init(|| match std::env::var("KB_EMBED_SIMD").as_deref() {
        Ok("scalar") => None,
        _ => Some(pulp::Arch::new()),
    })
}

/// The name of the instruction set the kernels run on: `Scalar` (the baseline, when the CPU
/// has nothing wider or `KB_EMBED_SIMD=scalar`), `V3` (x86-64 AVX2 + FMA), `V4` (AVX-512)...
pub(crate) fn simd_name() -> String {
    match arch() {
        Some(arch) => format!("{arch:?}").split('(').next().unwrap_or_default().to_owned(),
        None => "Scalar".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels' math at both of its levels: plain multiply-adds (the scalar baseline) and
    /// fused ones (every SIMD level).
    fn at_both_levels(check: impl Fn(&dyn Fn(f32) -> f32, &dyn Fn(f32) -> f32, &str)) {
        check(&exp::<pulp::Scalar>, &gelu::<pulp::Scalar>, "scalar");
        #[cfg(target_arch = "x86_64")]
        check(&exp::<pulp::x86::V3>, &gelu::<pulp::x86::V3>, "fused");
        #[cfg(target_arch = "aarch64")]
        check(&exp::<pulp::aarch64::Neon>, &gelu::<pulp::aarch64::Neon>, "fused");
    }

    #[test]
    fn exp_matches_the_standard_library() {
        at_both_levels(|exp, _, level| {
            let mut worst = 0f32;
            let mut x = -87.0f32;
            while x < 88.0 {
                let relative = ((exp(x) - x.exp()) / x.exp()).abs();
                worst = worst.max(relative);
                x += 0.0137;
            }
            assert!(worst < 3e-7, "{level}: worst relative error {worst}");
            assert_eq!(exp(-100.0), 0.0, "{level}");
            assert_eq!(exp(0.0), 1.0, "{level}");
        });
    }

    #[test]
    fn gelu_matches_the_exact_definition() {
        at_both_levels(|_, gelu, level| {
            let mut worst = 0f64;
            let mut x = -10.0f64;
            while x < 10.0 {
                let exact = 0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2));
                let got = gelu(x as f32) as f64;
                worst = worst.max((got - exact).abs() / (1.0 + x.abs()));
                x += 0.01;
            }
            assert!(worst < 2e-7, "{level}: worst error {worst} (relative to 1 + |x|)");
        });
    }

    /// erf in f64 by its series / continued fraction, for the test only.
    fn libm_erf(x: f64) -> f64 {
        // Abramowitz and Stegun 7.1.28 is not exact enough; integrate instead (Simpson, fine grid).
        let steps = 20_000;
        let h = x / steps as f64;
        let f = |t: f64| (-t * t).exp();
        let mut total = f(0.0) + f(x);
        for i in 1..steps {
            total += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        total * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn reductions_handle_every_length() {
        for len in [0, 1, 15, 16, 17, 100, 384] {
            let values: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let expected: f32 = values.iter().sum();
            assert!((sum(&values) - expected).abs() < 1e-4, "sum of {len}");
            let squares: f32 = values.iter().map(|v| v * v).sum();
            assert!((sum_of_squares(&values) - squares).abs() < 1e-4, "squares of {len}");
            let top = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&values), top, "max of {len}");
        }
    }

    #[test]
    fn softmax_numerators_and_their_inverse_sum_give_the_softmax() {
        let mut row = vec![1.0, 2.0, 3.0, -50.0, 0.5];
        let inverse = softmax_numerators::<pulp::Scalar>(&mut row);
        let row: Vec<f32> = row.iter().map(|v| v * inverse).collect();
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[2] > row[1] && row[1] > row[0] && row[0] > row[4] && row[4] > row[3]);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0, -50.0, 0.5].iter().map(|v| (v - 3.0).exp()).collect();
        let total: f64 = e.iter().sum();
        for (got, e) in row.iter().zip(&e) {
            assert!((*got as f64 - e / total).abs() < 1e-6);
        }
    }
}
