-- Lexical ranking of BM25 quality, a hybrid that fuses normalised scores, per-bucket text
-- search configurations.
--
-- * `ts_rank_cd` (0003/0006) has no inverse document frequency and favours long chunks: on
--   NFCorpus it made hybrid search worse than vector search alone. Chunks are now ranked by
--   Okapi BM25: idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)),
--   score = sum over query terms of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avglen)).
--   k1 and b are the settings `kb.bm25_k1` (default 1.2) and `kb.bm25_b` (default 0.75).
-- * Term statistics (N = chunks, df = chunks containing a term, the sum of chunk lengths) are
--   kept per bucket, exactly, by statement-level triggers on knowledge_chunks. A bucket has one
--   owner, so a user's scores are computed from that user's own rows only: another user's
--   documents never change them, and the statistics reveal nothing across owners. Whoever may
--   read a bucket's chunks may read its statistics (same policy), and nobody else.
-- * A chunk's tokens are `knowledge_tsvector(config, content)`, the one definition used by
--   the stored `fts` column, the statistics and the query; `config` is its bucket's
--   `text_search_config`: `english` (stemming, stop words; the default) or `simple` (lower
--   case words, for other languages), fixed when the bucket is created.

-- The tokens of a text under a bucket's configuration. The configurations are literals, so
-- this is immutable and may define a stored column.
CREATE FUNCTION public.knowledge_tsvector(p_config TEXT, p_text TEXT)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE p_config
           WHEN 'simple' THEN to_tsvector('simple'::regconfig, p_text)
           ELSE to_tsvector('english'::regconfig, p_text)
         END
$$;

-- A chunk's length for BM25: its tokens that are not stop words (every position of every
-- lexeme; a lexeme stored without positions counts once).
CREATE FUNCTION public.tsvector_token_count(p_fts tsvector)
RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT coalesce(sum(coalesce(array_length(u.positions, 1), 1)), 0)::bigint FROM unnest(p_fts) u
$$;

-- Text (not regconfig): pg_upgrade refuses tables with reg* columns other than regclass/regtype.
-- Not in the UPDATE grant of 0002: the chunks' tokens depend on it, like the bucket's model.
ALTER TABLE public.knowledge_buckets
  ADD COLUMN text_search_config TEXT NOT NULL DEFAULT 'english'
    CHECK (text_search_config IN ('english', 'simple'));

-- The generated column is redefined over the chunk's configuration (this rewrites the table
-- once and drops the old full-text index with the old column).
ALTER TABLE public.knowledge_chunks DROP COLUMN fts;
ALTER TABLE public.knowledge_chunks
  ADD COLUMN text_search_config TEXT NOT NULL DEFAULT 'english'
    CHECK (text_search_config IN ('english', 'simple'));
ALTER TABLE public.knowledge_chunks
  ADD COLUMN fts tsvector GENERATED ALWAYS AS (public.knowledge_tsvector(text_search_config, content)) STORED;
CREATE INDEX idx_knowledge_chunks_fts ON public.knowledge_chunks USING gin(fts);

-- A chunk takes its bucket's configuration, whatever the writer sends. Stored generated
-- columns are computed after BEFORE triggers, so `fts` follows it.
CREATE FUNCTION public.set_chunk_text_search_config()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
  NEW.text_search_config := coalesce(
    (SELECT b.text_search_config FROM public.knowledge_buckets b WHERE b.id = NEW.bucket_id),
    NEW.text_search_config);
  RETURN NEW;
END;
$$;

CREATE TRIGGER knowledge_chunks_text_search_config
  BEFORE INSERT OR UPDATE OF bucket_id, text_search_config ON public.knowledge_chunks
  FOR EACH ROW EXECUTE FUNCTION public.set_chunk_text_search_config();

UPDATE public.knowledge_chunks kc SET text_search_config = b.text_search_config
FROM public.knowledge_buckets b
WHERE b.id = kc.bucket_id AND kc.text_search_config <> b.text_search_config;

-- Per bucket: chunks and the sum of their lengths.
CREATE TABLE public.knowledge_lexical_buckets (
  bucket_id UUID NOT NULL PRIMARY KEY REFERENCES public.knowledge_buckets(id) ON DELETE CASCADE,
  chunk_count BIGINT NOT NULL DEFAULT 0,
  total_length BIGINT NOT NULL DEFAULT 0
);

-- Per bucket and lexeme: the chunks that contain it. Rows at zero are deleted.
CREATE TABLE public.knowledge_lexical_terms (
  bucket_id UUID NOT NULL REFERENCES public.knowledge_buckets(id) ON DELETE CASCADE,
  term TEXT NOT NULL,
  doc_freq BIGINT NOT NULL CHECK (doc_freq > 0),
  PRIMARY KEY (bucket_id, term)
);

-- Adds (p_sign = 1) or removes (-1) chunks' tokens from the statistics. Writers of one bucket
-- queue on its bucket row, taken first and in bucket order, so they never deadlock on term
-- rows. Removal only updates: a bucket being deleted may have lost its rows already.
CREATE FUNCTION public.knowledge_lexical_apply(p_buckets UUID[], p_fts tsvector[], p_sign INTEGER)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
  IF coalesce(cardinality(p_buckets), 0) = 0 THEN
    RETURN;
  END IF;
  IF p_sign > 0 THEN
    INSERT INTO public.knowledge_lexical_buckets (bucket_id)
    SELECT DISTINCT u.b FROM unnest(p_buckets) u(b) ORDER BY u.b
    ON CONFLICT (bucket_id) DO NOTHING;
  END IF;
  PERFORM 1 FROM public.knowledge_lexical_buckets s
  WHERE s.bucket_id = ANY(p_buckets) ORDER BY s.bucket_id FOR UPDATE;

  UPDATE public.knowledge_lexical_buckets s
  SET chunk_count = s.chunk_count + p_sign * d.chunks,
      total_length = s.total_length + p_sign * d.length
  FROM (SELECT u.b, count(*) AS chunks,
               sum((SELECT sum(coalesce(array_length(t.positions, 1), 1)) FROM unnest(u.f) t)) AS length
        FROM unnest(p_buckets, p_fts) u(b, f) GROUP BY u.b) d
  WHERE s.bucket_id = d.b;

  IF p_sign > 0 THEN
    INSERT INTO public.knowledge_lexical_terms AS t (bucket_id, term, doc_freq)
    SELECT u.b, l.term, count(*)
    FROM unnest(p_buckets, p_fts) u(b, f)
    CROSS JOIN LATERAL unnest(tsvector_to_array(u.f)) l(term)
    GROUP BY u.b, l.term
    ORDER BY u.b, l.term
    ON CONFLICT (bucket_id, term) DO UPDATE SET doc_freq = t.doc_freq + excluded.doc_freq;
  ELSE
    WITH d AS (
      SELECT u.b, l.term, count(*) AS n
      FROM unnest(p_buckets, p_fts) u(b, f)
      CROSS JOIN LATERAL unnest(tsvector_to_array(u.f)) l(term)
      GROUP BY u.b, l.term
    ),
    gone AS (
      DELETE FROM public.knowledge_lexical_terms t USING d
      WHERE t.bucket_id = d.b AND t.term = d.term AND t.doc_freq <= d.n
    )
    UPDATE public.knowledge_lexical_terms t SET doc_freq = t.doc_freq - d.n
    FROM d
    WHERE t.bucket_id = d.b AND t.term = d.term AND t.doc_freq > d.n;
  END IF;
END;
$$;

-- One statement's chunks into the statistics. SECURITY DEFINER: chunks are also deleted by
-- cascades from a document or bucket that an application user deletes, and users have no
-- privileges on the statistics tables.
CREATE FUNCTION public.knowledge_lexical_stats_trigger()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
  v_buckets UUID[];
  v_fts tsvector[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(n.bucket_id), array_agg(n.fts) INTO v_buckets, v_fts FROM new_chunks n;
    PERFORM public.knowledge_lexical_apply(v_buckets, v_fts, 1);
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(o.bucket_id), array_agg(o.fts) INTO v_buckets, v_fts FROM old_chunks o;
    PERFORM public.knowledge_lexical_apply(v_buckets, v_fts, -1);
  ELSIF TG_OP = 'UPDATE' THEN
    -- Only rows whose tokens or bucket changed (metadata updates cost nothing here).
    SELECT array_agg(o.bucket_id), array_agg(o.fts) INTO v_buckets, v_fts
    FROM old_chunks o JOIN new_chunks n ON n.id = o.id
    WHERE o.fts IS DISTINCT FROM n.fts OR o.bucket_id <> n.bucket_id;
    PERFORM public.knowledge_lexical_apply(v_buckets, v_fts, -1);
    SELECT array_agg(n.bucket_id), array_agg(n.fts) INTO v_buckets, v_fts
    FROM old_chunks o JOIN new_chunks n ON n.id = o.id
    WHERE o.fts IS DISTINCT FROM n.fts OR o.bucket_id <> n.bucket_id;
    PERFORM public.knowledge_lexical_apply(v_buckets, v_fts, 1);
  ELSIF TG_OP = 'TRUNCATE' THEN
    DELETE FROM public.knowledge_lexical_terms;
    DELETE FROM public.knowledge_lexical_buckets;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER knowledge_chunks_lexical_insert AFTER INSERT ON public.knowledge_chunks
  REFERENCING NEW TABLE AS new_chunks
  FOR EACH STATEMENT EXECUTE FUNCTION public.knowledge_lexical_stats_trigger();
CREATE TRIGGER knowledge_chunks_lexical_delete AFTER DELETE ON public.knowledge_chunks
  REFERENCING OLD TABLE AS old_chunks
  FOR EACH STATEMENT EXECUTE FUNCTION public.knowledge_lexical_stats_trigger();
CREATE TRIGGER knowledge_chunks_lexical_update AFTER UPDATE ON public.knowledge_chunks
  REFERENCING OLD TABLE AS old_chunks NEW TABLE AS new_chunks
  FOR EACH STATEMENT EXECUTE FUNCTION public.knowledge_lexical_stats_trigger();
CREATE TRIGGER knowledge_chunks_lexical_truncate AFTER TRUNCATE ON public.knowledge_chunks
  FOR EACH STATEMENT EXECUTE FUNCTION public.knowledge_lexical_stats_trigger();

-- The chunks already there.
INSERT INTO public.knowledge_lexical_buckets (bucket_id, chunk_count, total_length)
SELECT kc.bucket_id, count(*), sum(public.tsvector_token_count(kc.fts))
FROM public.knowledge_chunks kc GROUP BY kc.bucket_id;
INSERT INTO public.knowledge_lexical_terms (bucket_id, term, doc_freq)
SELECT kc.bucket_id, l.term, count(*)
FROM public.knowledge_chunks kc CROSS JOIN LATERAL unnest(tsvector_to_array(kc.fts)) l(term)
GROUP BY kc.bucket_id, l.term;

-- Read by searches under the caller's RLS: a bucket's statistics are visible exactly where its
-- chunks are. Nobody but the trigger (as the owner) writes them: no write privilege is granted,
-- so no write policy is needed.
ALTER TABLE public.knowledge_lexical_buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.knowledge_lexical_terms ENABLE ROW LEVEL SECURITY;
CREATE POLICY knowledge_lexical_buckets_select ON public.knowledge_lexical_buckets FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                 WHERE b.id = bucket_id AND b.created_by = (select auth.uid())));
CREATE POLICY knowledge_lexical_terms_select ON public.knowledge_lexical_terms FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                 WHERE b.id = bucket_id AND b.created_by = (select auth.uid())));
GRANT SELECT ON public.knowledge_lexical_buckets, public.knowledge_lexical_terms TO authenticated, service_role;
REVOKE ALL ON FUNCTION public.knowledge_lexical_apply(UUID[], tsvector[], INTEGER) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.knowledge_lexical_stats_trigger() FROM PUBLIC;

-- A lexeme as a tsquery operand: quoted, with quotes and backslashes escaped.
CREATE FUNCTION public.tsquery_lexeme(p_lexeme TEXT)
RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT '''' || replace(replace(p_lexeme, '\', '\\'), '''', '''''') || ''''
$$;

-- BM25 over a set of candidate chunks. Parameters: $1 scope buckets, $2 model, $3/$4 the
-- query's (configuration, lexeme) pairs, $5 most candidates, $6 k1, $7 b, $8 limit, $9 the
-- tsquery that finds candidates, $10 explicit chunk ids. `p_source` says where candidates come
-- from: 'index' (the full-text index), 'scope' (the bucket index; coalesce() hides `fts` from
-- the full-text index), 'ids' ($10).
CREATE FUNCTION public.knowledge_bm25_sql(p_source TEXT)
RETURNS TEXT
LANGUAGE sql IMMUTABLE
AS $$
  SELECT format($q$
    WITH q AS (SELECT * FROM unnest($3::text[], $4::text[]) AS q(config, lexeme)),
    -- MATERIALIZED: each candidate's tokens are read once for its length and once for its
    -- query terms, whatever join order the planner would pick below.
    c AS MATERIALIZED (
      SELECT kc.id, kc.bucket_id, kc.text_search_config, kc.fts,
             (SELECT sum(coalesce(array_length(u.positions, 1), 1)) FROM unnest(kc.fts) u) AS len
      FROM public.knowledge_chunks kc
      JOIN public.knowledge_documents kd ON kd.id = kc.document_id
      WHERE %s
        AND kc.embedding_model = $2
        AND kd.status = 'ready'
        AND kc.bucket_id = ANY($1::uuid[])
      LIMIT $5::integer
    ),
    m AS MATERIALIZED (
      SELECT c.id, c.bucket_id, c.text_search_config, c.len, u.lexeme,
             coalesce(array_length(u.positions, 1), 1) AS tf
      FROM c CROSS JOIN LATERAL unnest(c.fts) u
      WHERE u.lexeme = ANY($4::text[])
    )
    SELECT m.id,
           sum(ln(1 + (bs.chunk_count - t.doc_freq + 0.5) / (t.doc_freq + 0.5))::float
               * m.tf * ($6::float + 1)
               / (m.tf + $6::float * (1 - $7::float + $7::float * m.len
                                      / greatest(bs.total_length::float / greatest(bs.chunk_count, 1), 1e-9))))::float
             AS score
    FROM m
    JOIN q ON q.config = m.text_search_config AND q.lexeme = m.lexeme
    JOIN public.knowledge_lexical_buckets bs ON bs.bucket_id = m.bucket_id
    JOIN public.knowledge_lexical_terms t ON t.bucket_id = m.bucket_id AND t.term = m.lexeme
    GROUP BY m.id
    ORDER BY score DESC, m.id
    LIMIT $8::integer
  $q$, CASE p_source
         WHEN 'index' THEN 'kc.fts @@ $9::tsquery'
         WHEN 'scope' THEN 'coalesce(kc.fts, '''') @@ $9::tsquery'
         ELSE 'kc.id = ANY($10::uuid[])'
       END)
$$;

-- The chunks whose text matches a query, best first by BM25 (replaces 0006's ts_rank_cd).
-- Candidates come from the full-text index, or for a small scope (see small_search_scope)
-- from the bucket index, reading only those rows; with p_chunk_ids, exactly those chunks are
-- scored (the hybrid search scores its vector candidates this way).
--
-- Bound on work: candidates are found with the query's rarest terms only, as long as their
-- document frequencies in scope add up to at most `kb.bm25_max_candidates` (default 1000;
-- the rarest term is always used), and at most that many chunks are scored. A common term
-- still counts in the score of every candidate that contains it; a chunk that has only very
-- common terms (idf near 0) can be missed, which moves scores by little.
DROP FUNCTION public.lexical_knowledge_chunks(tsquery, TEXT, UUID, TEXT, UUID, UUID, INTEGER);
CREATE FUNCTION public.lexical_knowledge_chunks(
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
  v_max INTEGER := coalesce(nullif(current_setting('kb.bm25_max_candidates', true), '')::integer, 1000);
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
                                                    p_campaign_id, p_bucket_id) IS NULL
                     THEN 'index' ELSE 'scope' END;
  END IF;

  RETURN QUERY EXECUTE public.knowledge_bm25_sql(v_source)
    USING v_buckets, p_embedding_model, v_configs, v_lexemes, v_max, v_k1, v_b, p_limit, v_match, p_chunk_ids;
END;
$$;

-- Lexical search alone: the best chunks by BM25, with their provenance. `similarity_score`
-- is the cosine similarity to p_query_embedding when one is given (else NULL); `score` is BM25.
CREATE FUNCTION public.lexical_search_knowledge_chunks(
  p_user_id UUID,
  p_query_text TEXT,
  p_embedding_model TEXT,
  p_bucket_type TEXT DEFAULT NULL,
  p_campaign_id UUID DEFAULT NULL,
  p_limit INTEGER DEFAULT 10,
  p_bucket_id UUID DEFAULT NULL,
  p_query_embedding vector DEFAULT NULL
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
  score FLOAT
)
LANGUAGE sql STABLE
SET search_path = public, extensions, pg_temp
AS $$
  SELECT kc.id, kc.bucket_id, kc.document_id, kb.name, kd.title, kd.summary, kc.content,
         kc.chunk_index,
         (1 - (kc.embedding::vector <=> p_query_embedding))::float,
         kc.metadata, l.score
  FROM public.lexical_knowledge_chunks(p_query_text, p_embedding_model, p_user_id, p_bucket_type,
                                       p_campaign_id, p_bucket_id, p_limit) l
  JOIN public.knowledge_chunks kc ON kc.id = l.chunk_id
  JOIN public.knowledge_buckets kb ON kb.id = kc.bucket_id
  JOIN public.knowledge_documents kd ON kd.id = kc.document_id
  ORDER BY l.score DESC, kc.id
$$;

-- Hybrid search: the union of the vector and BM25 candidates (p_candidates of each, default
-- `kb.hybrid_candidates` or 100), each candidate scored by both (exact cosine similarity, and
-- BM25 for the vector candidates too), each score min-max normalised over the union, fused as
-- p_alpha * vector + (1 - p_alpha) * lexical (default `kb.hybrid_alpha` or 0.5). Defaults
-- measured on NFCorpus with `kb eval` (BENCHMARKS.md). Replaces 0006's rank fusion over 4 x
-- limit candidates.
DROP FUNCTION public.hybrid_search_knowledge_chunks(UUID, TEXT, vector, TEXT, UUID, INTEGER, FLOAT, UUID, TEXT, INTEGER);
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
  v_alpha FLOAT := least(1, greatest(0, coalesce(p_alpha,
                     nullif(current_setting('kb.hybrid_alpha', true), '')::float, 0.5)));
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
  v_depth := least(1000, greatest(p_limit, coalesce(p_candidates,
               nullif(current_setting('kb.hybrid_candidates', true), '')::integer, 100)));

  SELECT array_agg(n.chunk_id) INTO v_dense
  FROM public.nearest_knowledge_chunks(p_user_id, p_query_embedding, p_bucket_type, p_campaign_id,
                                       v_depth, p_bucket_id, v_model.name) n;
  SELECT array_agg(l.chunk_id), array_agg(l.score) INTO v_lexical_ids, v_lexical_scores
  FROM public.lexical_knowledge_chunks(p_query_text, v_model.name, p_user_id, p_bucket_type, p_campaign_id,
                                       p_bucket_id, v_depth) l;
  -- The vector candidates' BM25 scores that the lexical list lacks (0 if no term matches).
  SELECT v_lexical_ids || coalesce(array_agg(l.chunk_id), '{}'),
         v_lexical_scores || coalesce(array_agg(l.score), '{}')
  INTO v_lexical_ids, v_lexical_scores
  FROM public.lexical_knowledge_chunks(p_query_text, v_model.name, p_user_id, p_bucket_type, p_campaign_id,
                                       p_bucket_id, v_depth,
                                       ARRAY(SELECT unnest(v_dense) EXCEPT SELECT unnest(v_lexical_ids))) l;

  RETURN QUERY
  WITH candidates AS (
    SELECT kc.id, kc.bucket_id, kc.document_id, kc.content, kc.chunk_index, kc.metadata,
           (1 - (kc.embedding::vector <=> p_query_embedding))::float AS cosine,
           coalesce(l.score, 0) AS bm25
    FROM (SELECT unnest(v_dense) UNION SELECT unnest(v_lexical_ids)) u(id)
    JOIN public.knowledge_chunks kc ON kc.id = u.id
    LEFT JOIN unnest(v_lexical_ids, v_lexical_scores) l(id, score) ON l.id = u.id
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

GRANT EXECUTE ON FUNCTION public.knowledge_tsvector(TEXT, TEXT),
  public.tsvector_token_count(tsvector),
  public.tsquery_lexeme(TEXT),
  public.knowledge_bm25_sql(TEXT),
  public.lexical_knowledge_chunks(TEXT, TEXT, UUID, TEXT, UUID, UUID, INTEGER, UUID[]),
  public.lexical_search_knowledge_chunks(UUID, TEXT, TEXT, TEXT, UUID, INTEGER, UUID, vector),
  public.hybrid_search_knowledge_chunks(UUID, TEXT, vector, TEXT, UUID, INTEGER, FLOAT, UUID, TEXT, FLOAT, INTEGER)
  TO authenticated, service_role;
