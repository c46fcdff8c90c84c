-- Lexical search that uses its full-text index under row level security.
--
-- `fts @@ tsquery` is not a leakproof operator, so under the caller's row level security
-- PostgreSQL may not evaluate it before the policies: it cannot come from the GIN index, and
-- the candidate query scanned every chunk of the bucket (100k chunks: ~420 ms per query
-- instead of ~20-60 ms; `cargo bench --bench hybrid`). The BM25 scoring now runs in
-- `knowledge_bm25`, a SECURITY DEFINER function that scores only chunks of buckets the
-- caller may read (the rule of knowledge_buckets' policy, checked inside, so that calling it
-- directly reveals nothing), and returns chunk ids and scores; the callers read the chunks
-- themselves under their own policies as before.
-- Per candidate, BM25 read the whole token list twice in SQL (its length, then its query
-- terms): ~50 us a chunk. A chunk's length is now stored with it (the same count as the
-- statistics take), and its query terms are picked out by PostgreSQL's own C functions
-- (`setweight` marks them, `ts_filter` keeps them) before the few are unnested, and each
-- query term's weight (IDF, average length) is looked up once per bucket, not per chunk
-- (lexical p99 at 100k chunks ~28 -> ~18 ms).
ALTER TABLE public.knowledge_chunks
  ADD COLUMN fts_length BIGINT
    GENERATED ALWAYS AS (public.tsvector_token_count(public.knowledge_tsvector(text_search_config, content))) STORED;

CREATE OR REPLACE FUNCTION public.knowledge_bm25_sql(p_source TEXT)
RETURNS TEXT
LANGUAGE sql IMMUTABLE
AS $$
  SELECT format($q$
    -- Each query term's weight in each bucket in scope, once (not once per matching chunk).
    WITH w AS MATERIALIZED (
      SELECT t.bucket_id, q.config, t.term,
             ln(1 + (bs.chunk_count - t.doc_freq + 0.5) / (t.doc_freq + 0.5))::float AS idf,
             greatest(bs.total_length::float / greatest(bs.chunk_count, 1), 1e-9) AS avg_len
      FROM public.knowledge_lexical_terms t
      JOIN public.knowledge_lexical_buckets bs ON bs.bucket_id = t.bucket_id
      JOIN unnest($3::text[], $4::text[]) AS q(config, lexeme) ON q.lexeme = t.term
      WHERE t.bucket_id = ANY($1::uuid[]) AND t.term = ANY($4::text[])
    ),
    c AS MATERIALIZED (
      SELECT kc.id, kc.bucket_id, kc.text_search_config, kc.fts_length AS len,
             ts_filter(setweight(kc.fts, 'A', $4::text[]), '{a}') AS hits
      FROM public.knowledge_chunks kc
      JOIN public.knowledge_documents kd ON kd.id = kc.document_id
      WHERE %s
        AND kc.embedding_model = $2
        AND kd.status = 'ready'
        AND kc.bucket_id = ANY($1::uuid[])
      LIMIT greatest($5::integer, coalesce(cardinality($10::uuid[]), 0))
    ),
    s AS (
      SELECT c.id,
             sum(w.idf * tf.n * ($6::float + 1)
                 / (tf.n + $6::float * (1 - $7::float + $7::float * c.len / w.avg_len)))::float AS score
      FROM c
      CROSS JOIN LATERAL (SELECT u.lexeme, coalesce(array_length(u.positions, 1), 1) AS n FROM unnest(c.hits) u) tf
      JOIN w ON w.bucket_id = c.bucket_id AND w.config = c.text_search_config AND w.term = tf.lexeme
      GROUP BY c.id
    )
    SELECT r.id, r.score
    FROM (SELECT s.id, s.score, row_number() OVER (ORDER BY s.score DESC, s.id) AS rank FROM s) r
    WHERE r.rank <= $8::integer
    ORDER BY r.score DESC, r.id
  $q$, CASE p_source
         WHEN 'index' THEN 'kc.fts @@ $9::tsquery'
         WHEN 'scope' THEN 'coalesce(kc.fts, '''') @@ $9::tsquery'
         ELSE 'kc.id = ANY($10::uuid[])'
       END)
$$;

CREATE FUNCTION public.knowledge_bm25(
  p_source TEXT,
  p_buckets UUID[],
  p_embedding_model TEXT,
  p_configs TEXT[],
  p_lexemes TEXT[],
  p_max INTEGER,
  p_k1 FLOAT,
  p_b FLOAT,
  p_limit INTEGER,
  p_match tsquery,
  p_chunk_ids UUID[]
)
RETURNS TABLE(chunk_id UUID, score FLOAT)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  -- Who called: the role set for the request (SET ROLE), else the session's login.
  v_invoker TEXT := CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END;
  v_buckets UUID[];
BEGIN
  SELECT array_agg(kb.id ORDER BY kb.id) INTO v_buckets
  FROM public.knowledge_buckets kb
  WHERE kb.id = ANY(p_buckets)
    AND (kb.created_by = auth.uid()
         OR coalesce(auth.role() = 'service_role', false)
         OR coalesce((SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = v_invoker), false));
  IF v_buckets IS NULL OR p_source NOT IN ('index', 'scope', 'ids') THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE public.knowledge_bm25_sql(p_source)
    USING v_buckets, p_embedding_model, p_configs, p_lexemes, p_max, p_k1, p_b, p_limit, p_match, p_chunk_ids;
END;
$$;
REVOKE ALL ON FUNCTION public.knowledge_bm25(TEXT, UUID[], TEXT, TEXT[], TEXT[], INTEGER, FLOAT, FLOAT, INTEGER, tsquery, UUID[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.knowledge_bm25(TEXT, UUID[], TEXT, TEXT[], TEXT[], INTEGER, FLOAT, FLOAT, INTEGER, tsquery, UUID[])
  TO authenticated, service_role;

-- The work bound kb.bm25_max_candidates defaults to 500 chunks (was 1,000): on NFCorpus
-- lexical nDCG@10 -0.0011, hybrid -0.0003; at 100k chunks BM25's p99 halves (BENCHMARKS.md).
CREATE OR REPLACE FUNCTION public.lexical_knowledge_chunks(
  p_query_text TEXT,
  p_embedding_model TEXT,
  p_user_id UUID,
  p_bucket_type TEXT,
  p_campaign_id UUID,
  p_bucket_id UUID,
  p_limit INTEGER,
  p_chunk_ids UUID[] DEFAULT NULL
)
RETURNS TABLE(chunk_id UUID, score FLOAT)
LANGUAGE plpgsql STABLE
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_k1 FLOAT := coalesce(nullif(current_setting('kb.bm25_k1', true), '')::float, 1.2);
  v_b FLOAT := coalesce(nullif(current_setting('kb.bm25_b', true), '')::float, 0.75);
  v_max INTEGER := coalesce(nullif(current_setting('kb.bm25_max_candidates', true), '')::integer, 500);
  v_buckets UUID[];
  v_configs TEXT[];
  v_lexemes TEXT[];
  v_match tsquery;
  v_source TEXT := 'ids';
BEGIN
  IF p_query_text IS NULL OR p_limit IS NULL OR p_limit < 1 THEN
    RETURN;
  END IF;
  IF p_user_id IS NOT NULL AND p_user_id IS DISTINCT FROM auth.uid()
     AND NOT public.caller_is_privileged() THEN
    RETURN;
  END IF;
  -- The buckets in scope, under the caller's RLS.
  SELECT array_agg(kb.id ORDER BY kb.id) INTO v_buckets
  FROM public.knowledge_buckets kb
  WHERE kb.embedding_model = p_embedding_model
    AND (p_user_id IS NULL OR kb.created_by = p_user_id)
    AND (p_bucket_type IS NULL OR kb.bucket_type = p_bucket_type)
    AND (p_campaign_id IS NULL OR kb.campaign_id = p_campaign_id)
    AND (p_bucket_id IS NULL OR kb.id = p_bucket_id);
  IF v_buckets IS NULL THEN
    RETURN;
  END IF;
  -- The query's lexemes under each configuration in scope.
  SELECT array_agg(c.config), array_agg(l.lexeme) INTO v_configs, v_lexemes
  FROM (SELECT DISTINCT kb.text_search_config AS config
        FROM public.knowledge_buckets kb WHERE kb.id = ANY(v_buckets)) c
  CROSS JOIN LATERAL unnest(tsvector_to_array(public.knowledge_tsvector(c.config, p_query_text))) l(lexeme);
  IF v_lexemes IS NULL THEN
    RETURN;
  END IF;

  IF p_chunk_ids IS NULL THEN
    -- The rarest terms first, while their chunks add up to at most v_max.
    SELECT string_agg(public.tsquery_lexeme(t.term), ' | ')::tsquery INTO v_match
    FROM (
      SELECT d.term, row_number() OVER w AS n, sum(d.df) OVER w AS running
      FROM (SELECT s.term, sum(s.doc_freq) AS df
            FROM public.knowledge_lexical_terms s
            WHERE s.bucket_id = ANY(v_buckets) AND s.term = ANY(v_lexemes)
            GROUP BY s.term) d
      WINDOW w AS (ORDER BY d.df, d.term)
    ) t
    WHERE t.n = 1 OR t.running <= v_max;
    IF v_match IS NULL THEN
      RETURN;
    END IF;
    v_source := CASE WHEN public.small_search_scope(p_embedding_model, p_user_id, p_bucket_type,
                                                    p_campaign_id, p_bucket_id) IS NULL THEN 'index'
                     ELSE 'scope' END;
  END IF;

  RETURN QUERY SELECT s.chunk_id, s.score
    FROM public.knowledge_bm25(v_source, v_buckets, p_embedding_model, v_configs, v_lexemes, v_max, v_k1, v_b,
                               p_limit, v_match, p_chunk_ids) s;
END;
$$;
