-- The vector search's effort can be set: `kb.ivfflat_probes` and `kb.hnsw_ef_search`
-- override the probes and ef_search that `nearest_knowledge_chunks` derives from the index
-- size and the filter (per session, role or database, e.g. `ALTER DATABASE kb SET
-- kb.hnsw_ef_search = 100`). `kb bench search` sweeps them to measure recall against
-- latency.
-- hnsw's ef_search without a filter goes from 40 to 250: on real embeddings (100k rows of
-- Debian package descriptions and NFCorpus abstracts, all-MiniLM-L6-v2; BENCHMARKS.md)
-- ef_search 40 gave recall@10 0.77 (m 16) / 0.83 (m 32), and 0.95 needs about 250 with the
-- m 32, ef_construction 128 graphs kb now builds (p99 ~17 ms on 2 cores).

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
  -- Overrides of the search effort, for tuning (`SET kb.ivfflat_probes = 20`, per session,
  -- role or database); unset, the effort follows the index size as below.
  v_probes INTEGER := nullif(current_setting('kb.ivfflat_probes', true), '')::integer;
  v_ef_search INTEGER := nullif(current_setting('kb.hnsw_ef_search', true), '')::integer;
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
      coalesce(v_probes,
               least(v_model.index_lists,
                     greatest(10, ceil(sqrt(v_model.index_lists) / 2)::int)
                     * CASE WHEN v_filtered THEN 2 ELSE 1 END))::text, true);
  ELSIF v_model.index_method = 'hnsw' THEN
    PERFORM set_config('hnsw.ef_search',
      coalesce(v_ef_search,
               least(1000, greatest(CASE WHEN v_filtered THEN 400 ELSE 250 END, p_limit * 2)))::text, true);
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

