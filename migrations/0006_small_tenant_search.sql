-- Small tenants search their own rows; filtered hnsw searches look wider.
--
-- * A caller whose visible chunks of the model (under the search's filters) number at most
--   `kb.exact_search_max_rows` (default 5000; 0 turns it off) gets an exact search over just
--   those rows, found through the bucket index: recall 1.0, and nothing of other tenants is
--   read. Before, such a caller's search walked the vector index of every tenant's rows until
--   its scan ran dry, and then scanned all of them exactly.
-- * Under an explicit filter (bucket type, campaign, bucket, owner) hnsw keeps 200 candidates
--   instead of 40: with a 1% filter, 40 gave recall@10 of 0.86 to 0.95 from one build to the next.

-- The buckets a search may read when they hold few chunks, or NULL when they hold more (or
-- the caller sees too many buckets for a scoped scan to pay). Runs under the caller's RLS.
CREATE FUNCTION public.small_search_scope(
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
  v_rows INTEGER;
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
  -- The bucket index alone answers this (an index-only scan, no heap reads): a bucket's
  -- chunks are all of its model, and the search itself still checks each chunk's model.
  SELECT count(*) INTO v_rows
  FROM (SELECT 1 FROM public.knowledge_chunks kc WHERE kc.bucket_id = ANY(v_buckets) LIMIT v_max_rows + 1) c;
  RETURN CASE WHEN v_rows <= v_max_rows THEN v_buckets END;
END;
$$;

-- The nearest-chunks query for one model. Its text is also what the plan tests EXPLAIN.
-- Parameters: $1 query vector, $2 owner, $3 bucket type, $4 campaign, $5 bucket, $6 limit,
-- and with p_scoped $7, the buckets to read (an exact scan through the bucket index).
-- With p_exact the ORDER BY no longer matches the index expression, forcing an exact scan.
DROP FUNCTION public.knowledge_nearest_chunks_sql(INTEGER, TEXT, BOOLEAN);
CREATE FUNCTION public.knowledge_nearest_chunks_sql(
  p_dimensions INTEGER,
  p_embedding_model TEXT,
  p_exact BOOLEAN DEFAULT false,
  p_scoped BOOLEAN DEFAULT false
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
      AND ($5::uuid IS NULL OR kc.bucket_id = $5::uuid)%4$s
    ORDER BY (kc.embedding::vector(%1$s) <=> $1::vector(%1$s))%3$s
    LIMIT $6::integer
  $q$, p_dimensions, p_embedding_model,
       CASE WHEN p_exact OR p_scoped THEN ' + 0' ELSE '' END,
       CASE WHEN p_scoped THEN E'\n      AND kc.bucket_id = ANY($7::uuid[])' ELSE '' END)
$$;

CREATE OR REPLACE FUNCTION public.nearest_knowledge_chunks(
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
  v_filtered BOOLEAN := p_user_id IS NOT NULL OR p_bucket_type IS NOT NULL
                        OR p_campaign_id IS NOT NULL OR p_bucket_id IS NOT NULL;
  v_scope UUID[];
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

  v_scope := public.small_search_scope(v_model.name, p_user_id, p_bucket_type, p_campaign_id, p_bucket_id);
  IF v_scope IS NOT NULL THEN
    EXECUTE format('SELECT array_agg(c.id ORDER BY c.distance), array_agg(c.distance ORDER BY c.distance) FROM (%s) c',
                   public.knowledge_nearest_chunks_sql(v_model.dimensions, v_model.name, true, true))
      INTO v_ids, v_distances
      USING p_query_embedding, p_user_id, p_bucket_type, p_campaign_id, p_bucket_id, p_limit, v_scope;
    RETURN QUERY SELECT u.id, u.distance FROM unnest(v_ids, v_distances) AS u(id, distance);
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
            * CASE WHEN v_filtered THEN 2 ELSE 1 END)::text, true);
  ELSIF v_model.index_method = 'hnsw' THEN
    PERFORM set_config('hnsw.ef_search',
      least(1000, greatest(CASE WHEN v_filtered THEN 400 ELSE 40 END, p_limit * 2))::text, true);
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

-- The chunks whose text matches a query, best first: through the full-text index, or for a
-- small scope (see small_search_scope) through the bucket index, reading only those rows.
CREATE FUNCTION public.lexical_knowledge_chunks(
  p_query tsquery,
  p_embedding_model TEXT,
  p_user_id UUID,
  p_bucket_type TEXT,
  p_campaign_id UUID,
  p_bucket_id UUID,
  p_limit INTEGER
)
RETURNS TABLE(chunk_id UUID, score FLOAT)
LANGUAGE plpgsql STABLE
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_scope UUID[];
BEGIN
  IF p_query IS NULL THEN
    RETURN;
  END IF;
  v_scope := public.small_search_scope(p_embedding_model, p_user_id, p_bucket_type, p_campaign_id, p_bucket_id);
  -- EXECUTE plans with the values known, so the NULL tests fold away. coalesce() hides the
  -- column from the full-text index: a small scope is read through the bucket index instead.
  RETURN QUERY EXECUTE format($q$
    SELECT kc.id, ts_rank_cd(kc.fts, $1)::float AS score
    FROM public.knowledge_chunks kc
    JOIN public.knowledge_buckets kb ON kb.id = kc.bucket_id
    JOIN public.knowledge_documents kd ON kd.id = kc.document_id
    WHERE %s @@ $1
      AND kc.embedding_model = $2
      AND kd.status = 'ready'
      AND ($3::uuid IS NULL OR kb.created_by = $3::uuid)
      AND ($4::text IS NULL OR kb.bucket_type = $4::text)
      AND ($5::uuid IS NULL OR kb.campaign_id = $5::uuid)
      AND ($6::uuid IS NULL OR kc.bucket_id = $6::uuid)
      AND ($8::uuid[] IS NULL OR kc.bucket_id = ANY($8::uuid[]))
    ORDER BY score DESC
    LIMIT $7::integer
  $q$, CASE WHEN v_scope IS NULL THEN 'kc.fts' ELSE 'coalesce(kc.fts, '''')' END)
    USING p_query, p_embedding_model, p_user_id, p_bucket_type, p_campaign_id, p_bucket_id, p_limit, v_scope;
END;
$$;

-- Hybrid search: the vector ranking fused with PostgreSQL full-text ranking by reciprocal
-- rank fusion (score = sum of 1 / (p_rrf_k + rank)). Query words are OR-ed so a natural
-- question matches passages that contain some of its words.
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
    SELECT t.chunk_id AS id, row_number() OVER (ORDER BY t.score DESC, t.chunk_id) AS rank
    FROM public.lexical_knowledge_chunks(v_query, v_model.name, p_user_id, p_bucket_type, p_campaign_id,
                                         p_bucket_id, v_candidates) t
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

GRANT EXECUTE ON FUNCTION public.small_search_scope(TEXT, UUID, TEXT, UUID, UUID),
  public.knowledge_nearest_chunks_sql(INTEGER, TEXT, BOOLEAN, BOOLEAN),
  public.lexical_knowledge_chunks(tsquery, TEXT, UUID, TEXT, UUID, UUID, INTEGER)
  TO authenticated, service_role;
