-- The vector search's default effort follows the table's size, from `kb bench search` at
-- 100k and 1M rows of real embeddings (BENCHMARKS.md; hnsw m 32, ef_construction 128):
--
-- * hnsw's ef_search grows with the square root of the rows the graph holds (recorded in
--   `embedding_models.indexed_rows` by every index maintenance): 250 up to 100k rows (recall@10
--   0.963 there), ~790 at 1M. At 1M, 250 gave 0.814 (p99 19.6 ms), 640 0.882 (26.4 ms), 1000
--   0.914 (35.2 ms): the graph needs a wider search as it grows.
-- * A search whose visible rows (under its filters) number up to 10,000, not 5,000, is exact:
--   at 1M rows, a bucket of 10,000 rows searched exactly took p50 23 / p99 28 ms at recall
--   1.0, where the filtered hnsw scan took p50 22 / p99 41-46 ms at recall 0.90.
--   `kb.exact_search_max_rows` still overrides it.

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
  v_max_rows INTEGER := coalesce(nullif(current_setting('kb.exact_search_max_rows', true), '')::integer, 10000);
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

-- hnsw's ef_search for a graph of p_rows rows: 250 (400 under a filter) up to 100k rows,
-- then growing with the square root of the rows (~790 at 1M), at least twice the limit, at
-- most pgvector's 1000.
CREATE FUNCTION public.hnsw_ef_search(p_rows BIGINT, p_filtered BOOLEAN, p_limit INTEGER)
RETURNS INTEGER
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT least(1000, greatest(
    ceil(CASE WHEN p_filtered THEN 400 ELSE 250 END
         * greatest(1.0, sqrt(greatest(coalesce(p_rows, 0), 0) / 100000.0)))::int,
    coalesce(p_limit, 0) * 2))
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
      coalesce(v_ef_search, public.hnsw_ef_search(v_model.indexed_rows, v_filtered, p_limit))::text, true);
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

