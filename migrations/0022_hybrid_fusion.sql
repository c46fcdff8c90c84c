-- Hybrid search as three steps, so that its two rankings can run side by side.
--
-- The hybrid search ran its vector ranking, then its BM25 ranking (which also scored the
-- vector candidates), then fused: its latency was the sum of both rankings (p99 ~3x a vector
-- search at 100k chunks). The fusion is now a function of its own,
-- `fuse_knowledge_chunks`, given each ranking's candidates. `kb` runs the two rankings at
-- the same time on two connections acting as the same caller, then fuses
-- (`src/search.rs`); `hybrid_search_knowledge_chunks` (the SQL API, `/rest/v1/rpc`) runs
-- the same three steps one after the other. Results are the same either way.

-- The best p_limit of the union of p_dense (vector candidates, best first) and p_lexical_ids
-- (BM25 candidates with their p_lexical_scores), by
-- alpha * normalised cosine + (1 - alpha) * normalised BM25, each min-max normalised over
-- the union. A vector candidate that is not among the BM25 candidates is scored here (0 if
-- it matches no query term); every candidate's cosine is computed from its embedding.
-- Chunks are read under the caller's row level security: a candidate the caller may not
-- read drops out, whoever named it.
CREATE FUNCTION public.fuse_knowledge_chunks(
  p_query_text TEXT,
  p_query_embedding vector,
  p_embedding_model TEXT,
  p_dense UUID[],
  p_lexical_ids UUID[],
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
  v_unscored UUID[];
  v_ids UUID[] := coalesce(p_lexical_ids, '{}');
  v_scores FLOAT[] := coalesce(p_lexical_scores, '{}');
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR cardinality(v_ids) <> cardinality(v_scores) THEN
    RETURN;
  END IF;
  SELECT array_agg(d.id) INTO v_unscored
  FROM unnest(p_dense) d(id)
  WHERE d.id <> ALL(v_ids);
  IF v_unscored IS NOT NULL THEN
    -- The bucket scope is the chunks' own: a candidate's score uses its bucket's statistics.
    SELECT v_ids || coalesce(array_agg(l.chunk_id), '{}'), v_scores || coalesce(array_agg(l.score), '{}')
      INTO v_ids, v_scores
    FROM public.lexical_knowledge_chunks(p_query_text, p_embedding_model, NULL, NULL, NULL, NULL,
                                         cardinality(v_unscored), v_unscored) l;
  END IF;

  RETURN QUERY
  WITH candidates AS (
    SELECT kc.id, kc.bucket_id, kc.document_id, kc.content, kc.chunk_index, kc.metadata,
           (1 - (kc.embedding::vector <=> p_query_embedding))::float AS cosine,
           coalesce(l.score, 0) AS bm25
    FROM (SELECT unnest(p_dense) UNION SELECT unnest(v_ids)) u(id)
    JOIN public.knowledge_chunks kc ON kc.id = u.id
    LEFT JOIN unnest(v_ids, v_scores) l(id, score) ON l.id = u.id
    WHERE kc.embedding_model = p_embedding_model
  ),
  scaled AS (
    SELECT c.*,
           (c.cosine - min(c.cosine) OVER ()) / nullif(max(c.cosine) OVER () - min(c.cosine) OVER (), 0) AS v,
           (c.bm25 - min(c.bm25) OVER ()) / nullif(max(c.bm25) OVER () - min(c.bm25) OVER (), 0) AS l
    FROM candidates c
  )
  SELECT s.id, s.bucket_id, s.document_id, kb.name, kd.title, kd.summary, s.content, s.chunk_index,
         s.cosine, s.metadata,
         (v_alpha * coalesce(s.v, 1) + (1 - v_alpha) * coalesce(s.l, 0))::float AS fused
  FROM scaled s
  JOIN public.knowledge_buckets kb ON kb.id = s.bucket_id
  JOIN public.knowledge_documents kd ON kd.id = s.document_id
  WHERE s.cosine >= coalesce(p_similarity_threshold, -1)
  ORDER BY fused DESC, s.id
  LIMIT p_limit;
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
  v_lexical_ids UUID[];
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

  SELECT array_agg(n.chunk_id) INTO v_dense
  FROM public.nearest_knowledge_chunks(p_user_id, p_query_embedding, p_bucket_type, p_campaign_id,
                                       v_depth, p_bucket_id, v_model.name) n;
  SELECT array_agg(l.chunk_id), array_agg(l.score) INTO v_lexical_ids, v_lexical_scores
  FROM public.lexical_knowledge_chunks(p_query_text, v_model.name, p_user_id, p_bucket_type, p_campaign_id,
                                       p_bucket_id, v_depth) l;

  RETURN QUERY SELECT * FROM public.fuse_knowledge_chunks(
    p_query_text, p_query_embedding, v_model.name, v_dense, v_lexical_ids, v_lexical_scores,
    p_limit, p_similarity_threshold, p_alpha);
END;
$$;

GRANT EXECUTE ON FUNCTION public.fuse_knowledge_chunks(TEXT, vector, TEXT, UUID[], UUID[], FLOAT[], INTEGER, FLOAT, FLOAT)
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
