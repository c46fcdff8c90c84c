-- Hybrid search as three steps, so that its two rankings can run side by side.
--
-- The hybrid search ran its vector ranking, then its BM25 ranking (which also scored the
-- vector candidates), then fused: its latency was the sum of both rankings (p99 ~3x a vector
-- search at 100k chunks). Now the two rankings are independent: the vector candidates, the
-- BM25 candidates with their scores, then `fuse_knowledge_chunks` given both. `kb` runs the
-- two rankings at the same time on two connections acting as the same caller, then fuses
-- (`src/search.rs`); `hybrid_search_knowledge_chunks` (the SQL API, `/rest/v1/rpc`) runs
-- the same steps one after the other, with the same results.
-- A vector candidate outside BM25's top candidates now counts as BM25 0 instead of being
-- scored exactly: on NFCorpus, hybrid nDCG@10 0.3576 instead of 0.3584 (`kb eval`).

-- The best p_limit of the union of p_dense (vector candidates) and p_lexical (BM25
-- candidates, with p_lexical_scores), by alpha * normalised cosine + (1 - alpha) *
-- normalised BM25, each min-max normalised over the union (BM25 0 for a candidate of
-- p_dense alone); cosines come from the embeddings. Chunks are read under the caller's row
-- level security: a candidate the caller may not read drops out, whoever named it. Scores
-- are computed over narrow rows; only the hits' contents are read.
CREATE FUNCTION public.fuse_knowledge_chunks(
  p_query_embedding vector,
  p_embedding_model TEXT,
  p_dense UUID[],
  p_lexical UUID[],
  p_lexical_scores FLOAT[],
  p_limit INTEGER DEFAULT 10,
  p_similarity_threshold FLOAT DEFAULT 0,
  p_alpha FLOAT DEFAULT NULL
)
RETURNS TABLE(
  chunk_id UUID,
  bucket_id UUID,
  document_id UUID,
  bucket_name TEXT,
  document_title TEXT,
  document_summary TEXT,
  chunk_content TEXT,
  chunk_index INTEGER,
  similarity_score FLOAT,
  metadata JSONB,
  fused_score FLOAT
)
LANGUAGE plpgsql STABLE
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_alpha FLOAT := least(1, greatest(0, coalesce(p_alpha,
                     nullif(current_setting('kb.hybrid_alpha', true), '')::float, 0.5)));
BEGIN
  IF p_limit IS NULL OR p_limit < 1 THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH candidates AS (
    SELECT kc.id,
           (1 - (kc.embedding::vector <=> p_query_embedding))::float AS cosine,
           coalesce(l.score, 0) AS bm25
    FROM (SELECT unnest(p_dense) UNION SELECT unnest(p_lexical)) u(id)
    JOIN public.knowledge_chunks kc ON kc.id = u.id
    LEFT JOIN unnest(p_lexical, p_lexical_scores) l(id, score) ON l.id = u.id
    WHERE kc.embedding_model = p_embedding_model
  ),
  fused AS (
    SELECT c.id, c.cosine,
           (v_alpha * coalesce((c.cosine - min(c.cosine) OVER ())
                                 / nullif(max(c.cosine) OVER () - min(c.cosine) OVER (), 0), 1)
            + (1 - v_alpha) * coalesce((c.bm25 - min(c.bm25) OVER ())
                                         / nullif(max(c.bm25) OVER () - min(c.bm25) OVER (), 0), 0))::float
             AS score
    FROM candidates c
  ),
  best AS (
    SELECT f.id, f.cosine, f.score FROM fused f
    WHERE f.cosine >= coalesce(p_similarity_threshold, -1)
    ORDER BY f.score DESC, f.id
    LIMIT p_limit
  )
  SELECT kc.id, kc.bucket_id, kc.document_id, kb.name, kd.title, kd.summary, kc.content, kc.chunk_index,
         best.cosine, kc.metadata, best.score
  FROM best
  JOIN public.knowledge_chunks kc ON kc.id = best.id
  JOIN public.knowledge_buckets kb ON kb.id = kc.bucket_id
  JOIN public.knowledge_documents kd ON kd.id = kc.document_id
  ORDER BY best.score DESC, best.id;
END;
$$;

-- The candidate depth of a hybrid search: p_candidates, else kb.hybrid_candidates, else 100;
-- at least p_limit, at most 1000.
CREATE FUNCTION public.hybrid_candidate_depth(p_limit INTEGER, p_candidates INTEGER)
RETURNS INTEGER
LANGUAGE sql STABLE
AS $$
  SELECT least(1000, greatest(p_limit, coalesce(p_candidates,
           nullif(current_setting('kb.hybrid_candidates', true), '')::integer, 100)))
$$;

CREATE OR REPLACE FUNCTION public.hybrid_search_knowledge_chunks(
  p_user_id UUID,
  p_query_text TEXT,
  p_query_embedding vector,
  p_bucket_type TEXT DEFAULT NULL,
  p_campaign_id UUID DEFAULT NULL,
  p_limit INTEGER DEFAULT 10,
  p_similarity_threshold FLOAT DEFAULT 0,
  p_bucket_id UUID DEFAULT NULL,
  p_embedding_model TEXT DEFAULT NULL,
  p_alpha FLOAT DEFAULT NULL,
  p_candidates INTEGER DEFAULT NULL
)
RETURNS TABLE(
  chunk_id UUID,
  bucket_id UUID,
  document_id UUID,
  bucket_name TEXT,
  document_title TEXT,
  document_summary TEXT,
  chunk_content TEXT,
  chunk_index INTEGER,
  similarity_score FLOAT,
  metadata JSONB,
  fused_score FLOAT
)
LANGUAGE plpgsql
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_model public.embedding_models;
  v_depth INTEGER;
  v_dense UUID[];
  v_lexical UUID[];
  v_lexical_scores FLOAT[];
BEGIN
  IF p_user_id IS NOT NULL AND p_user_id IS DISTINCT FROM auth.uid()
     AND NOT public.caller_is_privileged() THEN
    RETURN;
  END IF;
  v_model := public.resolve_embedding_model(vector_dims(p_query_embedding), p_embedding_model, p_bucket_id);
  IF v_model.name IS NULL OR p_limit IS NULL OR p_limit < 1 THEN
    RETURN;
  END IF;
  v_depth := public.hybrid_candidate_depth(p_limit, p_candidates);

  SELECT coalesce(array_agg(n.chunk_id), '{}') INTO v_dense
  FROM public.nearest_knowledge_chunks(p_user_id, p_query_embedding, p_bucket_type, p_campaign_id,
                                       v_depth, p_bucket_id, v_model.name) n;
  SELECT coalesce(array_agg(l.chunk_id), '{}'), coalesce(array_agg(l.score), '{}') INTO v_lexical, v_lexical_scores
  FROM public.lexical_knowledge_chunks(p_query_text, v_model.name, p_user_id, p_bucket_type, p_campaign_id,
                                       p_bucket_id, v_depth) l;

  RETURN QUERY SELECT * FROM public.fuse_knowledge_chunks(
    p_query_embedding, v_model.name, v_dense, v_lexical, v_lexical_scores,
    p_limit, p_similarity_threshold, p_alpha);
END;
$$;

GRANT EXECUTE ON FUNCTION public.fuse_knowledge_chunks(vector, TEXT, UUID[], UUID[], FLOAT[], INTEGER, FLOAT, FLOAT)
  TO authenticated, service_role;

-- Whether the search's scope is small enough for an exact search: the chunk counts the
-- lexical statistics keep per bucket (exact, transactional) instead of counting up to
-- kb.exact_search_max_rows chunks through the bucket index on every search (~1-5 ms for a
-- large scope; a hybrid search asks twice).
CREATE OR REPLACE FUNCTION public.small_search_scope(
  p_embedding_model TEXT,
  p_user_id UUID,
  p_bucket_type TEXT,
  p_campaign_id UUID,
  p_bucket_id UUID
)
RETURNS UUID[]
LANGUAGE plpgsql STABLE
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_max_rows INTEGER := coalesce(nullif(current_setting('kb.exact_search_max_rows', true), '')::integer, 5000);
  v_buckets UUID[];
  v_rows BIGINT;
BEGIN
  IF v_max_rows <= 0 THEN
    RETURN NULL;
  END IF;
  SELECT coalesce(array_agg(kb.id), '{}') INTO v_buckets
  FROM (
    SELECT kb.id FROM public.knowledge_buckets kb
    WHERE kb.embedding_model = p_embedding_model
      AND (p_user_id IS NULL OR kb.created_by = p_user_id)
      AND (p_bucket_type IS NULL OR kb.bucket_type = p_bucket_type)
      AND (p_campaign_id IS NULL OR kb.campaign_id = p_campaign_id)
      AND (p_bucket_id IS NULL OR kb.id = p_bucket_id)
    LIMIT 1001
  ) kb;
  IF cardinality(v_buckets) > 1000 THEN
    RETURN NULL;
  END IF;
  SELECT coalesce(sum(s.chunk_count), 0) INTO v_rows
  FROM public.knowledge_lexical_buckets s
  WHERE s.bucket_id = ANY(v_buckets);
  RETURN CASE WHEN v_rows <= v_max_rows THEN v_buckets END;
END;
$$;
