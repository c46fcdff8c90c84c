//! `kb context "question" --budget N`: the context an AI agent would get for the question
//! (`crate::context`), as the local owner: the text block to paste into a prompt, or the
//! passages and their citations as JSON.

use uuid::Uuid;

use super::{ModeArg, bucket_named, owner};
use crate::config::Config;
use crate::context::{self, ContextRequest, Encoding};
use crate::runtime;
use crate::store::Role;

#[derive(Debug, clap::Args)]
pub struct ContextArgs {
    /// The question.
    pub question: String,
    /// Most tokens the context may take, counted with `--encoding`.
    #[arg(long, default_value_t = 2000)]
    pub budget: usize,
    /// The chat model's tokenizer.
    #[arg(long, value_enum, default_value_t = EncodingArg::Cl100kBase)]
    pub encoding: EncodingArg,
    /// Only this bucket.
    #[arg(long)]
    pub bucket: Option<String>,
    /// Only buckets of this type.
    #[arg(long)]
    pub bucket_type: Option<String>,
    /// Only buckets of this campaign.
    #[arg(long)]
    pub campaign: Option<Uuid>,
    /// How passages are found.
    #[arg(long, value_enum, default_value_t = ModeArg::Vector)]
    pub mode: ModeArg,
    /// Minimum cosine similarity of a passage (vector and hybrid modes).
    #[arg(long, default_value_t = 0.2)]
    pub threshold: f64,
    /// Print the passages, citations and token count as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--encoding` of `kb context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncodingArg {
    #[value(name = "cl100k_base")]
    Cl100kBase,
    #[value(name = "o200k_base")]
    O200kBase,
}

impl From<EncodingArg> for Encoding {
    fn from(encoding: EncodingArg) -> Encoding {
        match encoding {
            EncodingArg::Cl100kBase => Encoding::Cl100k,
            EncodingArg::O200kBase => Encoding::O200k,
        }
    }
}

pub async fn run(config: &Config, args: ContextArgs) -> anyhow::Result<()> {
    let pool = runtime::connect(config).await?;
    let embedder = runtime::load_embedder(config).await?;
    let owner = owner(&pool, embedder.as_ref()).await?;
    let bucket_id = bucket_named(&pool, owner, embedder.as_ref(), args.bucket.as_deref()).await?;
    let request = ContextRequest {
        question: args.question,
        budget: args.budget,
        encoding: args.encoding.into(),
        bucket_id,
        bucket_type: args.bucket_type,
        campaign_id: args.campaign,
        mode: args.mode.into(),
        threshold: args.threshold,
    };
    let context = context::build(&pool, embedder.as_ref(), owner, Role::Authenticated, &request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&context)?);
    } else if context.passages.is_empty() {
        println!("no passage above similarity {}", args.threshold);
    } else {
        println!("{}", context.text);
        eprintln!("\n{} passages, {} of {} tokens", context.passages.len(), context.tokens, context.budget);
    }
    Ok(())
}
