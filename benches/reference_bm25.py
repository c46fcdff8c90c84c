"""Reference BM25 figures for `kb eval` (see reference_bm25.sh, which tokenises with PostgreSQL).

Arguments: docs.tsv (id TAB space-separated tokens), queries.tsv (same), qrels (query-id TAB
corpus-id TAB grade, with a header), k1, b. Prints one JSON object per scorer:
- `rank_bm25 BM25Okapi`: the standard implementation (idf log((N-n+0.5)/(n+0.5)), negative
  idfs floored at 0.25 x the mean idf);
- `bm25 lucene idf, whole documents`: kb's formula (idf ln(1 + (N-n+0.5)/(n+0.5))) over whole
  documents, to tell the formula's share of a difference from chunking's.
Metrics are computed as `kb eval` computes them (src/cli/eval.rs): nDCG@10 with linear gain,
recall@10, recall@100, MRR@10, over the queries that have a positive judgment.
"""

import json
import math
import sys
import time

import numpy as np
from rank_bm25 import BM25Okapi


def read_tokens(path):
    ids, toks = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            doc_id, _, text = line.partition("\t")
            ids.append(doc_id)
            toks.append(text.split())
    return ids, toks


def read_qrels(path):
    qrels = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            try:
                grade = int(parts[2])
            except ValueError:
                if i == 0:
                    continue
                raise
            qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def metrics(ranking, judged):
    dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    relevant = sum(1 for g in judged.values() if g > 0)
    rel = lambda d: judged.get(d, 0) > 0
    r10 = sum(1 for d in ranking[:10] if rel(d)) / relevant
    r100 = sum(1 for d in ranking[:100] if rel(d)) / relevant
    mrr = next((1 / (i + 1) for i, d in enumerate(ranking[:10]) if rel(d)), 0.0)
    return (dcg / idcg if idcg else 0.0), r10, r100, mrr


class LuceneBM25:
    """kb's formula over whole documents."""

    def __init__(self, corpus, k1, b):
        self.k1, self.b = k1, b
        self.tf = []
        df = {}
        for doc in corpus:
            counts = {}
            for t in doc:
                counts[t] = counts.get(t, 0) + 1
            self.tf.append(counts)
            for t in counts:
                df[t] = df.get(t, 0) + 1
        self.len = np.array([len(d) for d in corpus], dtype=float)
        self.avg = self.len.mean()
        n = len(corpus)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def get_scores(self, query):
        scores = np.zeros(len(self.tf))
        norm = self.k1 * (1 - self.b + self.b * self.len / self.avg)
        for t in query:
            if t not in self.idf:
                continue
            tf = np.array([d.get(t, 0) for d in self.tf], dtype=float)
            scores += self.idf[t] * tf * (self.k1 + 1) / (tf + norm)
        return scores


def main():
    docs_path, queries_path, qrels_path, k1, b = sys.argv[1:6]
    k1, b = float(k1), float(b)
    doc_ids, corpus = read_tokens(docs_path)
    query_ids, queries = read_tokens(queries_path)
    qrels = read_qrels(qrels_path)
    judged_queries = [(q, t) for q, t in zip(query_ids, queries) if any(g > 0 for g in qrels.get(q, {}).values())]
    for name, scorer in [
        ("rank_bm25 BM25Okapi", BM25Okapi(corpus, k1=k1, b=b)),
        ("bm25 lucene idf, whole documents", LuceneBM25(corpus, k1, b)),
    ]:
        totals = np.zeros(4)
        started = time.perf_counter()
        for qid, tokens in judged_queries:
            scores = np.asarray(scorer.get_scores(tokens))
            # Documents that share no term with the query are not retrieved (as in kb).
            order = [i for i in np.argsort(-scores, kind="stable")[:100] if scores[i] > 0]
            totals += metrics([doc_ids[i] for i in order], qrels[qid])
        n = max(len(judged_queries), 1)
        ndcg, r10, r100, mrr = totals / n
        print(json.dumps({
            "scorer": name, "k1": k1, "b": b, "documents": len(doc_ids), "queries": len(judged_queries),
            "ndcg_at_10": round(ndcg, 4), "recall_at_10": round(r10, 4), "recall_at_100": round(r100, 4),
            "mrr_at_10": round(mrr, 4), "ms_per_query": round((time.perf_counter() - started) * 1000 / n, 2),
        }))


if __name__ == "__main__":
    main()
