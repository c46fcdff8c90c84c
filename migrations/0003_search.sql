-- Similarity search over knowledge_chunks, fixed as DESIGN.md says:
-- * the caller's identity is auth.uid(); a p_user_id that is not the caller's own returns
--   nothing (service role and privileged logins excepted); RLS still applies (SECURITY INVOKER);
-- * the nearest chunks come from an inner query ordered by `embedding <=> query` with LIMIT, so
--   the model's vector index serves it; the threshold is applied outside;
-- * selective filters still return k rows: ivfflat iterative scans are exhaustive (max_probes
--   defaults to every list); hnsw falls back to an exact scan when its scan runs dry;
-- * each model's vectors are searched on their own, never mixed.

-- The embedding model a search runs against: named, or the bucket's, or the only model with
-- the query's dimensions.
CREATE FUNCTION public.resolve_embedding_model(
  p_dimensions INTEGER,
  p_embedding_model TEXT DEFAULT NULL,
  p_bucket_id UUID DEFAULT NULL
)
RETURNS public.embedding_models
LANGUAGE plpgsql STABLE
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_name TEXT := p_embedding_model;
  v_model public.embedding_models;
  v_count INTEGER;
BEGIN
  IF v_name IS NULL AND p_bucket_id IS NOT NULL THEN
    SELECT b.embedding_model INTO v_name FROM public.knowledge_buckets b WHERE b.id = p_bucket_id;
    IF v_name IS NULL THEN
      RETURN NULL; -- unknown or invisible bucket: nothing to search
    END IF;
  END IF;

  IF v_name IS NOT NULL THEN
    SELECT * INTO v_model FROM public.embedding_models m WHERE m.name = v_name;
    IF NOT FOUND THEN
      RETURN NULL;
    END IF;
    IF v_model.dimensions <> p_dimensions THEN
      RAISE EXCEPTION 'query embedding has % dimensions but model % has %',
        p_dimensions, v_model.name, v_model.dimensions
        USING ERRCODE = '22000';
    END IF;
    RETURN v_model;
  END IF;

  SELECT count(*) INTO v_count FROM public.embedding_models m WHERE m.dimensions = p_dimensions;
  IF v_count > 1 THEN
    RAISE EXCEPTION 'several embedding models have % dimensions: pass p_embedding_model', p_dimensions
      USING ERRCODE = '22000';
  END IF;
  SELECT * INTO v_model FROM public.embedding_models m WHERE m.dimensions = p_dimensions;
  RETURN v_model;
END;
$$;

-- The nearest-chunks query for one model. Its text is also what the plan test EXPLAINs.
-- Parameters: $1 query vector, $2 owner, $3 bucket type, $4 campaign, $5 bucket, $6 limit.
-- With p_exact the ORDER BY no longer matches the index expression, forcing an exact scan.
CREATE FUNCTION public.knowledge_nearest_chunks_sql(
  p_dimensions INTEGER,
  p_embedding_model TEXT,
  p_exact BOOLEAN DEFAULT false
)
RETURNS TEXT
LANGUAGE sql IMMUTABLE
AS $$
  SELECT format($q$
    SELECT kc.id, kc.embedding::vector(%1$s) <=> $1::vector(%1$s) AS distance
    FROM public.knowledge_chunks kc
    JOIN public.knowledge_buckets kb ON kb.id = kc.bucket_id
    JOIN public.knowledge_documents kd ON kd.id = kc.document_id
    WHERE kc.embedding_model = %2$L
      AND kd.status = 'ready'
      AND ($2::uuid IS NULL OR kb.created_by = $2::uuid)
      AND ($3::text IS NULL OR kb.bucket_type = $3::text)
      AND ($4::uuid IS NULL OR kb.campaign_id = $4::uuid)
      AND ($5::uuid IS NULL OR kc.bucket_id = $5::uuid)
    ORDER BY (kc.embedding::vector(%1$s) <=> $1::vector(%1$s))%3$s
    LIMIT $6::integer
  $q$, p_dimensions, p_embedding_model, CASE WHEN p_exact THEN ' + 0' ELSE '' END)
$$;

-- Whether the caller may pass another user's id: service role or a privileged login.
CREATE FUNCTION public.caller_is_privileged()
RETURNS BOOLEAN
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(auth.role() = 'service_role', false)
      OR coalesce((SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user), false)
$$;

-- Ids and distances of the nearest visible chunks, best first.
CREATE FUNCTION public.nearest_knowledge_chunks(
  p_user_id UUID,
  p_query_embedding vector,
  p_bucket_type TEXT,
  p_campaign_id UUID,
  p_limit INTEGER,
  p_bucket_id UUID,
  p_embedding_model TEXT
)
RETURNS TABLE(chunk_id UUID, distance FLOAT)
LANGUAGE plpgsql
SET search_path = public, extensions, pg_temp
SET ivfflat.probes = 10
SET ivfflat.iterative_scan = relaxed_order
SET hnsw.ef_search = 40
SET hnsw.iterative_scan = relaxed_order
AS $$
DECLARE
  v_model public.embedding_models;
  v_ids UUID[];
  v_distances FLOAT[];
BEGIN
  IF p_user_id IS NOT NULL AND p_user_id IS DISTINCT FROM auth.uid()
     AND NOT public.caller_is_privileged() THEN
    RETURN;
  END IF;
  IF p_limit IS NULL OR p_limit < 1 THEN
    RETURN;
  END IF;

  v_model := public.resolve_embedding_model(vector_dims(p_query_embedding), p_embedding_model, p_bucket_id);
  IF v_model.name IS NULL THEN
    RETURN;
  END IF;

  IF v_model.index_method = 'ivfflat' THEN
    -- Probes grow with the list count: sqrt(lists)/2, at least 10. At 1M rows (1000 lists)
    -- that is 16 probes: recall@10 0.99 against exact search, where 8 gave 0.955 and 32 gave
    -- 1.0 at twice the latency (BENCHMARKS.md).
    -- Under a filter, the nearest visible rows are spread over more lists: twice the probes
    -- (the iterative scan then adds lists until k rows pass the filter).
    PERFORM set_config('ivfflat.probes',
      least(v_model.index_lists,
            greatest(10, ceil(sqrt(v_model.index_lists) / 2)::int)
            * CASE WHEN p_bucket_type IS NULL AND p_campaign_id IS NULL AND p_bucket_id IS NULL
                   THEN 1 ELSE 2 END)::text, true);
  ELSIF v_model.index_method = 'hnsw' THEN
    PERFORM set_config('hnsw.ef_search', least(1000, greatest(40, p_limit * 2))::text, true);
  END IF;

  EXECUTE format('SELECT array_agg(c.id ORDER BY c.distance), array_agg(c.distance ORDER BY c.distance) FROM (%s) c',
                 public.knowledge_nearest_chunks_sql(v_model.dimensions, v_model.name))
    INTO v_ids, v_distances
    USING p_query_embedding, p_user_id, p_bucket_type, p_campaign_id, p_bucket_id, p_limit;

  -- An hnsw scan can run dry under a selective filter before finding k rows.
  IF v_model.index_method = 'hnsw' AND coalesce(cardinality(v_ids), 0) < p_limit THEN
    EXECUTE format('SELECT array_agg(c.id ORDER BY c.distance), array_agg(c.distance ORDER BY c.distance) FROM (%s) c',
                   public.knowledge_nearest_chunks_sql(v_model.dimensions, v_model.name, true))
      INTO v_ids, v_distances
      USING p_query_embedding, p_user_id, p_bucket_type, p_campaign_id, p_bucket_id, p_limit;
  END IF;

  RETURN QUERY SELECT u.id, u.distance FROM unnest(v_ids, v_distances) AS u(id, distance);
END;
$$;

CREATE FUNCTION public.search_knowledge_chunks(
  p_user_id UUID,
  p_query_embedding vector,
  p_bucket_type TEXT DEFAULT NULL,
  p_campaign_id UUID DEFAULT NULL,
  p_limit INTEGER DEFAULT 10,
  p_similarity_threshold FLOAT DEFAULT 0.7,
  p_bucket_id UUID DEFAULT NULL,
  p_embedding_model TEXT DEFAULT NULL
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
  metadata JSONB
)
LANGUAGE sql
SET search_path = public, extensions, pg_temp
AS $$
  SELECT kc.id, kc.bucket_id, kc.document_id, kb.name, kd.title, kd.summary,
         kc.content, kc.chunk_index, 1 - n.distance, kc.metadata
  FROM public.nearest_knowledge_chunks(p_user_id, p_query_embedding, p_bucket_type, p_campaign_id,
                                       p_limit, p_bucket_id, p_embedding_model) n
  JOIN public.knowledge_chunks kc ON kc.id = n.chunk_id
  JOIN public.knowledge_buckets kb ON kb.id = kc.bucket_id
  JOIN public.knowledge_documents kd ON kd.id = kc.document_id
  WHERE 1 - n.distance >= coalesce(p_similarity_threshold, -1)
  ORDER BY n.distance
$$;

-- Hybrid search: the vector ranking fused with PostgreSQL full-text ranking by reciprocal
-- rank fusion (score = sum of 1 / (p_rrf_k + rank)). Query words are OR-ed so a natural
-- question matches passages that contain some of its words.
CREATE FUNCTION public.hybrid_search_knowledge_chunks(
  p_user_id UUID,
  p_query_text TEXT,
  p_query_embedding vector,
  p_bucket_type TEXT DEFAULT NULL,
  p_campaign_id UUID DEFAULT NULL,
  p_limit INTEGER DEFAULT 10,
  p_similarity_threshold FLOAT DEFAULT 0,
  p_bucket_id UUID DEFAULT NULL,
  p_embedding_model TEXT DEFAULT NULL,
  p_rrf_k INTEGER DEFAULT 60
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
  v_candidates INTEGER := greatest(p_limit, 1) * 4;
  v_query tsquery;
BEGIN
  IF p_user_id IS NOT NULL AND p_user_id IS DISTINCT FROM auth.uid()
     AND NOT public.caller_is_privileged() THEN
    RETURN;
  END IF;
  v_model := public.resolve_embedding_model(vector_dims(p_query_embedding), p_embedding_model, p_bucket_id);
  IF v_model.name IS NULL OR p_limit IS NULL OR p_limit < 1 THEN
    RETURN;
  END IF;
  v_query := nullif(replace(plainto_tsquery('english', coalesce(p_query_text, ''))::text, ' & ', ' | '), '')::tsquery;

  RETURN QUERY
  WITH dense AS (
    SELECT n.chunk_id AS id, row_number() OVER (ORDER BY n.distance) AS rank
    FROM public.nearest_knowledge_chunks(p_user_id, p_query_embedding, p_bucket_type, p_campaign_id,
                                         v_candidates, p_bucket_id, v_model.name) n
  ),
  lexical AS (
    SELECT t.id, row_number() OVER (ORDER BY t.score DESC, t.id) AS rank
    FROM (
      SELECT kc.id, ts_rank_cd(kc.fts, v_query) AS score
      FROM public.knowledge_chunks kc
      JOIN public.knowledge_buckets kb ON kb.id = kc.bucket_id
      JOIN public.knowledge_documents kd ON kd.id = kc.document_id
      WHERE v_query IS NOT NULL
        AND kc.fts @@ v_query
        AND kc.embedding_model = v_model.name
        AND kd.status = 'ready'
        AND (p_user_id IS NULL OR kb.created_by = p_user_id)
        AND (p_bucket_type IS NULL OR kb.bucket_type = p_bucket_type)
        AND (p_campaign_id IS NULL OR kb.campaign_id = p_campaign_id)
        AND (p_bucket_id IS NULL OR kc.bucket_id = p_bucket_id)
      ORDER BY score DESC
      LIMIT v_candidates
    ) t
  ),
  fused AS (
    SELECT coalesce(d.id, l.id) AS id,
           coalesce(1.0 / (p_rrf_k + d.rank), 0) + coalesce(1.0 / (p_rrf_k + l.rank), 0) AS score
    FROM dense d FULL OUTER JOIN lexical l ON l.id = d.id
  )
  SELECT kc.id, kc.bucket_id, kc.document_id, kb.name, kd.title, kd.summary, kc.content,
         kc.chunk_index,
         (1 - (kc.embedding::vector <=> p_query_embedding))::float,
         kc.metadata, f.score::float
  FROM fused f
  JOIN public.knowledge_chunks kc ON kc.id = f.id
  JOIN public.knowledge_buckets kb ON kb.id = kc.bucket_id
  JOIN public.knowledge_documents kd ON kd.id = kc.document_id
  WHERE 1 - (kc.embedding::vector <=> p_query_embedding) >= coalesce(p_similarity_threshold, -1)
  ORDER BY f.score DESC, kc.id
  LIMIT p_limit;
END;
$$;

GRANT EXECUTE ON FUNCTION public.resolve_embedding_model(INTEGER, TEXT, UUID),
  public.knowledge_nearest_chunks_sql(INTEGER, TEXT, BOOLEAN),
  public.caller_is_privileged(),
  public.nearest_knowledge_chunks(UUID, vector, TEXT, UUID, INTEGER, UUID, TEXT),
  public.search_knowledge_chunks(UUID, vector, TEXT, UUID, INTEGER, FLOAT, UUID, TEXT),
  public.hybrid_search_knowledge_chunks(UUID, TEXT, vector, TEXT, UUID, INTEGER, FLOAT, UUID, TEXT, INTEGER)
  TO authenticated, service_role;
