-- search_knowledge_chunks is now served by /rest/v1/rpc/ like every other function (so
-- `select`, filters, `order` and `limit` apply to its rows). The checks its dedicated route
-- made now live in the function: a limit between 1 and 1000, and no hit without a
-- similarity (a zero query vector has none: its cosine distance is NaN).
CREATE OR REPLACE FUNCTION public.search_knowledge_chunks(
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
LANGUAGE plpgsql
STABLE
SET search_path = public, extensions, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
    RAISE EXCEPTION 'p_limit must be between 1 and 1000' USING ERRCODE = '22023';
  END IF;
  RETURN QUERY
  SELECT kc.id, kc.bucket_id, kc.document_id, kb.name, kd.title, kd.summary,
         kc.content, kc.chunk_index, 1 - n.distance, kc.metadata
  FROM public.nearest_knowledge_chunks(p_user_id, p_query_embedding, p_bucket_type, p_campaign_id,
                                       p_limit, p_bucket_id, p_embedding_model) n
  JOIN public.knowledge_chunks kc ON kc.id = n.chunk_id
  JOIN public.knowledge_buckets kb ON kb.id = kc.bucket_id
  JOIN public.knowledge_documents kd ON kd.id = kc.document_id
  WHERE 1 - n.distance >= coalesce(p_similarity_threshold, -1)
    AND n.distance <> 'NaN'::float
  ORDER BY n.distance;
END;
$$;

-- Tell running servers to reload their schema cache (as PostgREST listens for it).
NOTIFY pgrst, 'reload schema';
