#!/usr/bin/env python3
"""kb's local embedder against sentence-transformers (PyTorch), same model files, same texts, one run.

For texts of exactly 32, 128 and 256 tokens ([CLS]/[SEP] included; 64 texts per call, 32 per
forward pass in both engines) the two engines take turns, a call each, --reps times; texts/s is
the median over each engine's calls. The ratio is the median over the pairs of calls made one
after the other (this shared machine's speed drifts by tens of percent within a minute, and a
pair sees the same conditions), with the lowest and highest pair's ratio beside it. Single-query latency:
one short query embedded alone, as a search does, median of --reps x 10 calls. Quality: the cosine
of kb's vector and sentence-transformers' for every text (the minimum is reported).

Run through benches/embed_side_by_side.sh, which installs sentence-transformers into a private
virtual environment and builds kb. Prints a table, and JSON with --json FILE.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The paragraph benches/embed_local.rs cuts its texts from.
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
QUERY = "how did we handle retries when the upload failed"


def texts_of_exact_tokens(tok, n_tokens, count):
    """`count` distinct texts of exactly n_tokens ids with [CLS]/[SEP], each from another offset."""
    body = tok(PARAGRAPH, add_special_tokens=False)["input_ids"]
    out = []
    for i in range(count):
        start = (i * 7) % len(body)
        ids = (body[start:] + body * (n_tokens // len(body) + 2))
        k = n_tokens - 2
        while True:
            text = tok.decode(ids[:k])
            got = len(tok(text)["input_ids"])
            if got == n_tokens:
                break
            k += -1 if got > n_tokens else 1
        out.append(text)
    return out


class Kb:
    """`kb bench embed`: one JSON request per line, one answer per line."""

    def __init__(self, binary, model_dir):
        self.proc = subprocess.Popen(
            [binary, "bench", "embed", "--model-dir", model_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    def embed(self, texts, batch):
        self.proc.stdin.write(json.dumps({"texts": texts, "reps": 1, "batch": batch}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"kb bench embed exited ({self.proc.wait()})")
        answer = json.loads(line)
        return answer["seconds"][0], answer["vectors"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", required=True, help="the kb binary")
    ap.add_argument("--model-dir", required=True, help="the sentence-transformers model directory both load")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--texts", type=int, default=64, help="texts per call")
    ap.add_argument("--batch", type=int, default=32, help="texts per forward pass, both engines")
    ap.add_argument("--lengths", default="32,128,256")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import torch
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model_dir, device="cpu")
    model.eval()
    tok = model.tokenizer
    kb = Kb(args.kb, args.model_dir)
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), sentence-transformers "
        f"{sentence_transformers.__version__}, {os.cpu_count()} CPUs; {args.texts} texts per call, "
        f"{args.batch} per forward pass, {args.reps} calls each, in turns"
    )

    def st_embed(texts):
        started = time.perf_counter()
        vectors = model.encode(texts, normalize_embeddings=True, batch_size=args.batch, convert_to_numpy=True)
        return time.perf_counter() - started, vectors.tolist()

    rows = []
    for n in [int(x) for x in args.lengths.split(",")]:
        texts = texts_of_exact_tokens(tok, n, args.texts)
        st_embed(texts)  # warm-up
        kb.embed(texts, args.batch)
        st_times, kb_times, worst = [], [], 1.0
        for _ in range(args.reps):
            seconds, st_vectors = st_embed(texts)
            st_times.append(seconds)
            seconds, kb_vectors = kb.embed(texts, args.batch)
            kb_times.append(seconds)
            worst = min(worst, min(cosine(a, b) for a, b in zip(st_vectors, kb_vectors)))
        st_rate = len(texts) / statistics.median(st_times)
        kb_rate = len(texts) / statistics.median(kb_times)
        pairs = [st / kb for st, kb in zip(st_times, kb_times)]
        rows.append({"tokens": n, "kb_texts_per_s": kb_rate, "st_texts_per_s": st_rate,
                     "ratio": statistics.median(pairs), "pair_ratios": pairs, "min_cosine": worst})

    st_lat, kb_lat = [], []
    for _ in range(args.reps * 10):
        seconds, st_vector = st_embed([QUERY])
        st_lat.append(seconds)
        seconds, kb_vector = kb.embed([QUERY], args.batch)
        kb_lat.append(seconds)
    kb.close()
    query = {"kb_ms": 1000 * statistics.median(kb_lat), "st_ms": 1000 * statistics.median(st_lat),
             "min_cosine": cosine(st_vector[0], kb_vector[0])}

    print(f"\n{'tokens':>6} | {'kb texts/s':>10} | {'sentence-transformers':>21} | {'kb / ST':>7} | "
          f"{'pairs':>11} | {'min cosine':>10}")
    print("-" * 82)
    for r in rows:
        spread = f"{min(r['pair_ratios']):.2f}-{max(r['pair_ratios']):.2f}"
        print(f"{r['tokens']:>6} | {r['kb_texts_per_s']:>10.1f} | {r['st_texts_per_s']:>21.1f} | "
              f"{r['ratio']:>6.2f}x | {spread:>11} | {r['min_cosine']:>10.6f}")
    print(f"\nsingle query ({len(tok(QUERY)['input_ids'])} tokens), median: kb {query['kb_ms']:.2f} ms, "
          f"sentence-transformers {query['st_ms']:.2f} ms; cosine {query['min_cosine']:.6f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lengths": rows, "single_query": query, "reps": args.reps, "texts": args.texts,
                       "batch": args.batch}, f, indent=2)


if __name__ == "__main__":
    main()
