"""Reference vector search engines on the vectors `kb bench search` uses, for a side-by-side table.

Run through side_by_side.sh (which installs the pinned packages). Engines:
- faiss-flat: FAISS IndexFlatIP, exact search (also the ground truth);
- faiss-hnsw: FAISS IndexHNSWFlat by inner product, one build, an efSearch sweep;
- chroma: Chroma's embedded PersistentClient (what LangChain/LlamaIndex users pick), cosine
  space with its default HNSW parameters.

Inputs: --base, float32 [N, d] with L2-normalised rows (row i has id i and tag i % 100), and
--queries, float32 [Q, d]. On normalised rows inner product ranks as cosine similarity does.
For each engine and setting it measures build (or insert) time, recall@k against the exact top-k,
single-client latency (one query per call) and, unfiltered, throughput at each client count;
filtered (p% of rows: tag < p, as kb does it) recall and latency too. It prints a table and
writes JSON in the `runs` schema that `kb bench search` also writes; plots.py draws both.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import threading
import time
from importlib.metadata import version

import chromadb
import faiss
import numpy as np
from chromadb.config import Settings

ENGINES = ("faiss-flat", "faiss-hnsw", "chroma")
WARMUP = 20  # untimed queries before each latency pass


def int_list(text):
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="float32 [N, d] .npy, L2-normalised rows")
    p.add_argument("--queries", required=True, help="float32 [Q, d] .npy")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--clients", type=int_list, default=[1, 4, 16], help="client thread counts, e.g. 1,4,16")
    p.add_argument("--filters", type=int_list, default=[1, 10],
                   help="filter selectivities in percent (tag < p), e.g. 1,10; empty for none")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ",".join(ENGINES))
    p.add_argument("--hnsw-ef", type=int_list, default=[16, 32, 64, 128, 256], help="FAISS efSearch sweep")
    p.add_argument("--hnsw-m", type=int, default=16, help="FAISS HNSW M (pgvector's m default)")
    p.add_argument("--hnsw-ef-construction", type=int, default=64, help="FAISS HNSW efConstruction (pgvector's default)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput measurement")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args()
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(args.engines) - set(ENGINES)
    if unknown:
        p.error(f"unknown engines {sorted(unknown)}; known: {', '.join(ENGINES)}")
    if any(not 1 <= f <= 100 for f in args.filters):
        p.error("--filters are percentages in 1..100")
    if args.k < 1 or any(c < 1 for c in args.clients) or any(e < 1 for e in args.hnsw_ef):
        p.error("--k, --clients and --hnsw-ef must be positive")
    return args


def log(msg):
    print(f"side_by_side: {msg}", file=sys.stderr, flush=True)


def load(path):
    a = np.load(path)
    if a.ndim != 2:
        sys.exit(f"side_by_side: error: {path}: expected a 2-d array, found shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "faiss_simd": faiss.get_compile_options().strip(),
        "chromadb": version("chromadb"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def seconds_of(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def filter_ids(n, percent):
    """Ids whose tag (id % 100) is below `percent`: 1 -> tag 0, 10 -> tags 0..9."""
    ids = np.arange(n, dtype=np.int64)
    return ids[ids % 100 < percent]


def chroma_where(percent):
    return {"tag": 0} if percent == 1 else {"tag": {"$lt": percent}}


# An engine setting is (engine, setting text, build seconds, searcher), where searcher(filter
# percent or None) returns a function from one query row [1, d] to the ids of its top k.


def faiss_flat(flat, build_seconds, selectors, k):
    def searcher(percent):
        params = faiss.SearchParameters(sel=selectors[percent]) if percent else None
        return lambda q: flat.search(q, k, params=params)[1][0]

    return [("faiss-flat", "exact", build_seconds, searcher)]


def faiss_hnsw(base, args, selectors):
    index = faiss.IndexHNSWFlat(base.shape[1], args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.hnsw_ef_construction
    seconds = seconds_of(lambda: index.add(base))
    log(f"faiss-hnsw built in {seconds:.1f} s")

    def searcher_for(ef):
        def searcher(percent):
            extra = {"sel": selectors[percent]} if percent else {}
            params = faiss.SearchParametersHNSW(efSearch=ef, **extra)
            return lambda q: index.search(q, args.k, params=params)[1][0]

        return searcher

    prefix = f"m={args.hnsw_m} ef_construction={args.hnsw_ef_construction}"
    return [("faiss-hnsw", f"{prefix} ef_search={ef}", seconds, searcher_for(ef)) for ef in args.hnsw_ef]


def chroma(base, k, tmp, notes):
    client = chromadb.PersistentClient(path=tmp, settings=Settings(anonymized_telemetry=False))
    # No embedding function: embeddings are given, so Chroma never loads its default model.
    col = client.create_collection("bench", metadata={"hnsw:space": "cosine"}, embedding_function=None)
    batch = client.get_max_batch_size()

    def insert():
        for start in range(0, len(base), batch):
            ids = range(start, min(start + batch, len(base)))
            col.add(ids=[str(i) for i in ids], embeddings=base[ids.start:ids.stop],
                    metadatas=[{"tag": i % 100} for i in ids])

    seconds = seconds_of(insert)
    log(f"chroma inserted in {seconds:.1f} s")
    hnsw = col.configuration_json["hnsw"]
    notes.append(f"chroma: PersistentClient in a temporary directory, collection metadata "
                 f"{{'hnsw:space': 'cosine'}}, default HNSW configuration {json.dumps(hnsw)}; "
                 f"added in batches of {batch} (its max batch size) with metadata tag = id % 100, "
                 f"build_seconds is the whole insert; queried one embedding per call with "
                 f"n_results=k, include=['distances'], filters as where={{'tag': 0}} (1%) or "
                 f"{{'tag': {{'$lt': p}}}}; its Rust core runs a query with the GIL released")

    def searcher(percent):
        where = chroma_where(percent) if percent else None
        return lambda q: col.query(query_embeddings=q, n_results=k, include=["distances"],
                                   where=where)["ids"][0]

    setting = (f"max_neighbors={hnsw['max_neighbors']} ef_construction={hnsw['ef_construction']} "
               f"ef_search={hnsw['ef_search']} (defaults)")
    return [("chroma", setting, seconds, searcher)]


def latency_and_recall(search, queries, truth):
    """One query per call, in order, after a warm-up: (recall, latencies in ms)."""
    for q in queries[:WARMUP]:
        search(q)
    hits, ms = 0.0, []
    for q, t in zip(queries, truth):
        start = time.perf_counter()
        ids = search(q)
        ms.append((time.perf_counter() - start) * 1e3)
        hits += len(t & {int(i) for i in ids}) / len(t)
    return hits / len(queries), sorted(ms)


def percentile(sorted_ms, p):
    """The sorted value at index round((n - 1) p), as `kb bench search` computes it."""
    return sorted_ms[int((len(sorted_ms) - 1) * p + 0.5)]


def throughput(search, queries, clients, seconds):
    """Queries/s of `clients` threads, each issuing single queries in a loop for `seconds`."""
    counts = [0] * clients
    ready = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(c):
        # OpenMP's thread count is per calling thread: the main thread's setting does not carry
        # over, and FAISS would otherwise start a team of os.cpu_count() threads per query.
        faiss.omp_set_num_threads(1)
        i, n = c * len(queries) // clients, 0
        ready.wait()
        while time.perf_counter() < deadline[0]:
            search(queries[i % len(queries)])
            i, n = i + 1, n + 1
        counts[c] = n

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    ready.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def print_row(cells, widths):
    print("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))),
          flush=True)


def main():
    args = parse_args()
    base, queries = load(args.base), load(args.queries)
    n, d = base.shape
    if queries.shape[1] != d:
        sys.exit(f"side_by_side: error: queries have {queries.shape[1]} dimensions, base {d}")
    norms = np.linalg.norm(base, axis=1)
    if np.abs(norms - 1).max() > 1e-3:
        sys.exit(f"side_by_side: error: base rows are not L2-normalised (norms {norms.min():.4f}..{norms.max():.4f})")
    if args.filters and n < 100:
        sys.exit("side_by_side: error: filters need at least 100 rows (tags are id % 100)")
    log(f"{n} rows, {len(queries)} queries, {d} dimensions, k={args.k}")

    build_threads = faiss.omp_get_max_threads()
    notes = [
        f"recall@{args.k}: mean over queries of |result ∩ exact top-{args.k}| / |exact top-{args.k}| "
        f"(= {args.k} unless a filter matches fewer rows); the exact top-k is FAISS IndexFlatIP's "
        f"(inner product = cosine on L2-normalised rows), under the same filter for filtered runs",
        f"filter p%: rows whose tag (= id % 100) is < p; FAISS applies it during search with "
        f"IDSelectorBatch in SearchParameters / SearchParametersHNSW",
        f"latency: one client, one query per call (as a server answers one request), each query once "
        f"after {WARMUP} warm-up queries; a percentile p is the sorted latency at index round((n-1) p)",
        f"qps: that many Python threads each issuing single queries in a loop for {args.seconds:g} s, "
        f"completed queries / wall time; FAISS releases the GIL during search; FAISS OpenMP threads "
        f"are set to 1 in every searching thread, so concurrency comes from the clients; filtered "
        f"runs measure no qps ({{}})",
        f"builds use each library's own threading: FAISS with {build_threads} OpenMP threads, Chroma "
        f"its defaults",
    ]

    # Ground truth (and the faiss-flat engine): exact search, batched.
    flat = faiss.IndexFlatIP(d)
    flat_seconds = seconds_of(lambda: flat.add(base))
    selectors = {p: faiss.IDSelectorBatch(filter_ids(n, p)) for p in args.filters}
    truth = {}
    for p in [None] + args.filters:
        params = faiss.SearchParameters(sel=selectors[p]) if p else None
        ids = flat.search(queries, args.k, params=params)[1]
        truth[p] = [{int(i) for i in row if i >= 0} for row in ids]

    settings = []
    with tempfile.TemporaryDirectory(prefix="kb-bench-chroma-") as tmp:
        for engine in args.engines:
            if engine == "faiss-flat":
                settings += faiss_flat(flat, flat_seconds, selectors, args.k)
            elif engine == "faiss-hnsw":
                settings += faiss_hnsw(base, args, selectors)
            else:
                settings += chroma(base, args.k, tmp, notes)

        faiss.omp_set_num_threads(1)  # for the latency passes, in this thread
        rows = [q[None, :] for q in queries]  # one [1, d] row per call, sliced once
        widths = [10, max(len(s[1]) for s in settings), 6, 8, 6, 8, 8, 8] + [9] * len(args.clients)
        print_row(["engine", "setting", "filter", "build s", "recall", "p50 ms", "p95 ms", "p99 ms"]
                  + [f"qps@{c}" for c in args.clients], widths)
        runs = []
        for percent in [None] + args.filters:
            for engine, setting, build_seconds, searcher in settings:
                search = searcher(percent)
                recall, ms = latency_and_recall(search, rows, truth[percent])
                p50, p95, p99 = (percentile(ms, p) for p in (0.5, 0.95, 0.99))
                qps = {} if percent else {str(c): round(throughput(search, rows, c, args.seconds), 1)
                                          for c in args.clients}
                runs.append({"engine": engine, "setting": setting, "filter_percent": percent,
                             "build_seconds": round(build_seconds, 3), "recall": round(recall, 4),
                             "p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "p99_ms": round(p99, 3),
                             "qps": qps})
                print_row([engine, setting, f"{percent}%" if percent else "-", f"{build_seconds:.1f}",
                           f"{recall:.4f}", f"{p50:.3f}", f"{p95:.3f}", f"{p99:.3f}"]
                          + [f"{qps[str(c)]:.0f}" if qps else "-" for c in args.clients], widths)

    result = {"machine": machine(), "rows": n, "dim": d, "queries": len(queries), "k": args.k,
              "runs": runs, "notes": notes}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
