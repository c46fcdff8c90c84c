//! The BERT encoder the local embedder runs on the CPU: the same arithmetic as Hugging Face's
//! `BertModel` in f32, laid out for speed on a few cores.
//!
//! - **No padding.** The texts of a batch are packed row after row (`[tokens, hidden]`); the
//!   matrix products see every token of the batch at once and attention runs per text, so a
//!   short text never pays for a long one.
//! - **Matrix products** through candle's (the `gemm` crate: runtime-dispatched AVX/AVX2/FMA
//!   or NEON kernels, threaded by rayon), with the weights transposed once at load time and
//!   query, key and value fused into one product.
//! - **Everything else fused and threaded**: bias + GELU, bias + residual + LayerNorm, and
//!   attention (scores, softmax, weighted sum) in one pass per text, each split over rayon's
//!   threads and compiled for the widest SIMD the CPU has (`pulp`'s runtime dispatch of
//!   plain loops, so the binary still runs on any x86-64 or aarch64 CPU).
//!   `KB_EMBED_SIMD=scalar` turns the dispatch off (baseline instructions only).

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Device, Layout, Shape, Tensor};
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

/// A linear layer: `x · weight + bias`, the weight stored `[in, out]`.
struct Dense {
    weight: Tensor,
    bias: Vec<f32>,
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
    let weight = vb.get((outputs, inputs), "weight")?.t()?.contiguous()?;
    Ok(Dense { weight, bias: vector(&vb, outputs, "bias")? })
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
            let (q, k, v) = (q?, k?, v?);
            let qkv = Dense {
                weight: Tensor::cat(&[&q.weight, &k.weight, &v.weight], 1)?.contiguous()?,
                bias: [q.bias, k.bias, v.bias].concat(),
            };
            layers.push(Layer {
                qkv,
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
        })
    }

    /// The last layer's token vectors of `texts` (token ids, [CLS]/[SEP] included), packed:
    /// `[Σ lengths, hidden]` row-major, text after text.
    pub(super) fn forward(&self, texts: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
        let mut spans = Vec::with_capacity(texts.len());
        let mut offset = 0;
        for ids in texts {
            if ids.len() > self.positions {
                candle_core::bail!("{} tokens, more than the model's {} positions", ids.len(), self.positions);
            }
            if let Some(id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
                candle_core::bail!("token id {id} outside the vocabulary of {}", self.vocab);
            }
            spans.push((offset, ids.len()));
            offset += ids.len();
        }
        let tokens = offset;
        if tokens == 0 {
            return Ok(Vec::new());
        }
        let mut x = self.embed(texts, tokens);
        normalize_rows(&mut x, &self.embedding_norm, self.hidden, self.eps);
        let mut x = Tensor::from_vec(x, (tokens, self.hidden), &Device::Cpu)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &spans)?;
        }
        x.flatten_all()?.to_vec1()
    }

    /// Word + position + token type embeddings of every token.
    fn embed(&self, texts: &[&[u32]], tokens: usize) -> Vec<f32> {
        let h = self.hidden;
        let mut x = vec![0f32; tokens * h];
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
        x
    }

    fn layer(&self, layer: &Layer, x: &Tensor, spans: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        let qkv = x.matmul(&layer.qkv.weight)?;
        qkv.inplace_op1(&BiasActivation { bias: &layer.qkv.bias, activation: None })?;
        let context = qkv.apply_op1_no_bwd(&Attention { spans, hidden: self.hidden, heads: self.heads })?;
        let attended = context.matmul(&layer.attention_out.weight)?;
        attended.inplace_op2(
            x,
            &ResidualNorm { bias: &layer.attention_out.bias, norm: &layer.attention_norm, eps: self.eps },
        )?;
        let inner = attended.matmul(&layer.up.weight)?;
        inner.inplace_op1(&BiasActivation { bias: &layer.up.bias, activation: Some(self.activation) })?;
        let out = inner.matmul(&layer.down.weight)?;
        out.inplace_op2(&attended, &ResidualNorm { bias: &layer.down.bias, norm: &layer.output_norm, eps: self.eps })?;
        Ok(out)
    }
}

/// Rows per rayon task in the row-wise kernels: enough work to outweigh the task's cost.
const ROWS_PER_TASK: usize = 16;

/// The contiguous f32 data of a kernel's operand (the encoder's tensors always are).
fn f32_data<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op}: expected f32, got {:?}", storage.dtype()) };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

fn f32_data_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a mut [f32]> {
    let dtype = storage.dtype();
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op}: expected f32, got {dtype:?}") };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

/// `x += bias` per row, then the activation, in place.
struct BiasActivation<'a> {
    bias: &'a [f32],
    activation: Option<Activation>,
}

impl candle_core::InplaceOp1 for BiasActivation<'_> {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let cols = self.bias.len();
        let data = f32_data_mut(storage, layout, self.name())?;
        data.par_chunks_mut(cols * ROWS_PER_TASK).for_each(|rows| simd(BiasActivationRows { op: self, rows }));
        Ok(())
    }
}

struct BiasActivationRows<'a, 'b> {
    op: &'a BiasActivation<'b>,
    rows: &'a mut [f32],
}

impl pulp::WithSimd for BiasActivationRows<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let bias = self.op.bias;
        for row in self.rows.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
            match self.op.activation {
                None => {}
                Some(Activation::Gelu) => {
                    for v in row.iter_mut() {
                        *v = gelu(*v);
                    }
                }
                Some(Activation::GeluTanh) => {
                    for v in row.iter_mut() {
                        *v = gelu_tanh(*v);
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
struct ResidualNorm<'a> {
    bias: &'a [f32],
    norm: &'a Norm,
    eps: f32,
}

impl candle_core::InplaceOp2 for ResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "residual-layer-norm"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let cols = self.bias.len();
        let residual = f32_data(s2, l2, self.name())?;
        let data = f32_data_mut(s1, l1, self.name())?;
        if residual.len() != data.len() {
            candle_core::bail!("{}: operands of {} and {} values", self.name(), data.len(), residual.len());
        }
        data.par_chunks_mut(cols * ROWS_PER_TASK)
            .zip(residual.par_chunks(cols * ROWS_PER_TASK))
            .for_each(|(rows, residual)| simd(ResidualNormRows { op: self, rows, residual }));
        Ok(())
    }
}

struct ResidualNormRows<'a, 'b> {
    op: &'a ResidualNorm<'b>,
    rows: &'a mut [f32],
    residual: &'a [f32],
}

impl pulp::WithSimd for ResidualNormRows<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let cols = self.op.bias.len();
        for (row, residual) in self.rows.chunks_exact_mut(cols).zip(self.residual.chunks_exact(cols)) {
            for ((v, r), b) in row.iter_mut().zip(residual).zip(self.op.bias) {
                *v += r + b;
            }
            normalize(row, self.op.norm, self.op.eps);
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

/// Self-attention of each text over its own tokens: `[tokens, 3·hidden]` (query, key, value,
/// each head's `hidden / heads` columns side by side) to `[tokens, hidden]`.
struct Attention<'a> {
    spans: &'a [(usize, usize)],
    hidden: usize,
    heads: usize,
}

impl candle_core::CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = f32_data(storage, layout, self.name())?;
        let h = self.hidden;
        let tokens = qkv.len() / (3 * h);
        let mut out = vec![0f32; tokens * h];
        // Each text writes its own rows: split the output along the spans.
        let mut parts = Vec::with_capacity(self.spans.len());
        let mut rest = out.as_mut_slice();
        for &(offset, len) in self.spans {
            if offset + len > tokens {
                candle_core::bail!("{}: span {offset}+{len} past {tokens} tokens", self.name());
            }
            let (part, tail) = rest.split_at_mut(len * h);
            parts.push((offset, len, part));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(offset, len, out)| {
            simd(AttentionText { op: self, qkv: &qkv[offset * 3 * h..(offset + len) * 3 * h], n: len, out });
        });
        Ok((CpuStorage::F32(out), Shape::from((tokens, h))))
    }
}

/// One text's attention, head after head. Scores are built row by row as sums of scaled key
/// columns (the keys transposed once per head), so every inner loop runs along contiguous
/// memory.
struct AttentionText<'a, 'b> {
    op: &'a Attention<'b>,
    qkv: &'a [f32],
    n: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for AttentionText<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let AttentionText { op, qkv, n, out } = self;
        let h = op.hidden;
        let d = h / op.heads;
        let scale = 1.0 / (d as f32).sqrt();
        // Keys transposed and padded with zero columns to whole blocks.
        let width = n.div_ceil(BLOCK) * BLOCK;
        let mut keys = vec![0f32; d * width];
        let mut scores = vec![0f32; width];
        for head in 0..op.heads {
            let (q0, k0, v0) = (head * d, h + head * d, 2 * h + head * d);
            for (j, token) in qkv.chunks_exact(3 * h).enumerate() {
                for (c, &k) in token[k0..k0 + d].iter().enumerate() {
                    keys[c * width + j] = k;
                }
            }
            for i in 0..n {
                let query = &qkv[i * 3 * h + q0..][..d];
                // A block of scores stays in registers while every key dimension adds to it.
                for (start, block) in scores.chunks_exact_mut(BLOCK).enumerate() {
                    let mut acc = [0f32; BLOCK];
                    for (c, &q) in query.iter().enumerate() {
                        let q = q * scale;
                        for (a, k) in acc.iter_mut().zip(&keys[c * width + start * BLOCK..][..BLOCK]) {
                            *a += q * k;
                        }
                    }
                    block.copy_from_slice(&acc);
                }
                let weights = &mut scores[..n];
                softmax(weights);
                let context = &mut out[i * h + q0..][..d];
                if d.is_multiple_of(BLOCK) {
                    for (b, context) in context.chunks_exact_mut(BLOCK).enumerate() {
                        let mut acc = [0f32; BLOCK];
                        for (&p, token) in weights.iter().zip(qkv.chunks_exact(3 * h)) {
                            for (a, v) in acc.iter_mut().zip(&token[v0 + b * BLOCK..][..BLOCK]) {
                                *a += p * v;
                            }
                        }
                        context.copy_from_slice(&acc);
                    }
                } else {
                    for (&p, token) in weights.iter().zip(qkv.chunks_exact(3 * h)) {
                        for (c, v) in context.iter_mut().zip(&token[v0..v0 + d]) {
                            *c += p * v;
                        }
                    }
                }
            }
        }
    }
}

/// Columns of attention scores (and of a head's context) accumulated in registers at once:
/// four AVX2 registers.
const BLOCK: usize = 32;

#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = max(row);
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let inverse = 1.0 / sum(row);
    for v in row.iter_mut() {
        *v *= inverse;
    }
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

/// e^x for the kernels: Cephes' `expf` (range reduction by ln 2, degree-6 polynomial; relative
/// error about 1e-7), branch-free so that loops of it vectorise. Below -87.3 it returns 0.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n through the exponent bits; n is within [-126, 127] after the clamp.
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = e * two_n;
    if x <= -87.3 { 0.0 } else { y }
}

/// The error function: Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_72) * t + 0.254_829_6) * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    // tanh(u) = 1 - 2 / (e^{2u} + 1)
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// Runs `kernel` compiled for the widest SIMD instructions this CPU has (chosen at run time),
/// or for the baseline when `KB_EMBED_SIMD=scalar`.
fn simd<K: pulp::WithSimd>(kernel: K) -> K::Output {
    static ARCH: OnceLock<Option<pulp::Arch>> = OnceLock::new();
    let arch = ARCH.get_or_init(|| match std::env::var("KB_EMBED_SIMD").as_deref() {
        Ok("scalar") => None,
        _ => Some(pulp::Arch::new()),
    });
    match arch {
        Some(arch) => arch.dispatch(kernel),
        None => pulp::Simd::vectorize(pulp::Scalar::new(), kernel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let relative = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(relative);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn gelu_matches_the_exact_definition() {
        let mut x = -10.0f64;
        while x < 10.0 {
            let exact = 0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2));
            let got = gelu(x as f32) as f64;
            assert!((got - exact).abs() < 2e-6 * (1.0 + x.abs()), "gelu({x}) = {got}, expected {exact}");
            x += 0.01;
        }
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
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row = vec![1.0, 2.0, 3.0, -50.0, 0.5];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[2] > row[1] && row[1] > row[0] && row[0] > row[4] && row[4] > row[3]);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0, -50.0, 0.5].iter().map(|v| (v - 3.0).exp()).collect();
        let total: f64 = e.iter().sum();
        for (got, e) in row.iter().zip(&e) {
            assert!((*got as f64 - e / total).abs() < 1e-6);
        }
    }
}
