-- A chunk's full-text columns computed once per written row, not three times.
--
-- `fts` and `fts_length` were generated columns, each parsing the content again
-- (`to_tsvector` twice), and the statistics trigger counted every chunk's tokens a third time
-- for the bucket's total length. Counting tokens (unnesting the tsvector's positions in SQL)
-- costs more than parsing: writing 10,000 chunks of ~900 characters took ~4.3 s, of which
-- ~1 s per token count and ~0.6 s per parse (psql, 2-core machine). Now the BEFORE trigger
-- that already set the chunk's text search configuration also sets `fts` and `fts_length`,
-- once; the statistics take `fts_length` as stored. The columns stay consistent with the
-- content: on UPDATE they are recomputed when the content, bucket or configuration changes
-- and kept otherwise, whatever the statement set them to.

ALTER TABLE public.knowledge_chunks
  ALTER COLUMN fts DROP EXPRESSION,
  ALTER COLUMN fts_length DROP EXPRESSION;

CREATE OR REPLACE FUNCTION public.set_chunk_text_search_config()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.content IS DISTINCT FROM OLD.content OR NEW.bucket_id IS DISTINCT FROM OLD.bucket_id
     OR NEW.text_search_config IS DISTINCT FROM OLD.text_search_config THEN
    NEW.text_search_config := coalesce(
      (SELECT b.text_search_config FROM public.knowledge_buckets b WHERE b.id = NEW.bucket_id),
      NEW.text_search_config);
    NEW.fts := public.knowledge_tsvector(NEW.text_search_config, NEW.content);
    NEW.fts_length := public.tsvector_token_count(NEW.fts);
  ELSE
    NEW.fts := OLD.fts;
    NEW.fts_length := OLD.fts_length;
  END IF;
  RETURN NEW;
END;
$$;

-- Fires on every INSERT and UPDATE now (an UPDATE of any column may not change the
-- full-text columns by hand).
DROP TRIGGER knowledge_chunks_text_search_config ON public.knowledge_chunks;
CREATE TRIGGER knowledge_chunks_text_search_config
  BEFORE INSERT OR UPDATE ON public.knowledge_chunks
  FOR EACH ROW EXECUTE FUNCTION public.set_chunk_text_search_config();

-- The statistics with the stored lengths.
CREATE FUNCTION public.knowledge_lexical_apply(
  p_buckets UUID[], p_fts tsvector[], p_lengths BIGINT[], p_sign INTEGER)
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
  FROM (SELECT u.b, count(*) AS chunks, coalesce(sum(u.len), 0) AS length
        FROM unnest(p_buckets, p_lengths) u(b, len) GROUP BY u.b) d
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
REVOKE ALL ON FUNCTION public.knowledge_lexical_apply(UUID[], tsvector[], BIGINT[], INTEGER) FROM PUBLIC;

CREATE OR REPLACE FUNCTION public.knowledge_lexical_stats_trigger()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
  v_buckets UUID[];
  v_fts tsvector[];
  v_lengths BIGINT[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(n.bucket_id), array_agg(n.fts), array_agg(n.fts_length) INTO v_buckets, v_fts, v_lengths
    FROM new_chunks n;
    PERFORM public.knowledge_lexical_apply(v_buckets, v_fts, v_lengths, 1);
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(o.bucket_id), array_agg(o.fts), array_agg(o.fts_length) INTO v_buckets, v_fts, v_lengths
    FROM old_chunks o;
    PERFORM public.knowledge_lexical_apply(v_buckets, v_fts, v_lengths, -1);
  ELSIF TG_OP = 'UPDATE' THEN
    -- Only rows whose tokens or bucket changed (metadata updates cost nothing here).
    SELECT array_agg(o.bucket_id), array_agg(o.fts), array_agg(o.fts_length) INTO v_buckets, v_fts, v_lengths
    FROM old_chunks o JOIN new_chunks n ON n.id = o.id
    WHERE o.fts IS DISTINCT FROM n.fts OR o.bucket_id <> n.bucket_id;
    PERFORM public.knowledge_lexical_apply(v_buckets, v_fts, v_lengths, -1);
    SELECT array_agg(n.bucket_id), array_agg(n.fts), array_agg(n.fts_length) INTO v_buckets, v_fts, v_lengths
    FROM old_chunks o JOIN new_chunks n ON n.id = o.id
    WHERE o.fts IS DISTINCT FROM n.fts OR o.bucket_id <> n.bucket_id;
    PERFORM public.knowledge_lexical_apply(v_buckets, v_fts, v_lengths, 1);
  ELSIF TG_OP = 'TRUNCATE' THEN
    DELETE FROM public.knowledge_lexical_terms;
    DELETE FROM public.knowledge_lexical_buckets;
  END IF;
  RETURN NULL;
END;
$$;

DROP FUNCTION public.knowledge_lexical_apply(UUID[], tsvector[], INTEGER);
