-- Document versions that never destroy the good one, fenced ingestion jobs, and a database
-- that refuses what the API refuses.
--
-- A document is identified in its bucket by a key (`upload_path`: the client's path or key, or
-- the absolute path of a file ingested from the command line). Each submission of new bytes is
-- a pending version (`pending_hash`, bytes in knowledge_document_sources); the version that is
-- searchable (`content_hash`) keeps its chunks and its bytes until the pending one is ready,
-- and the swap happens in one transaction. A failed pending version leaves a ready document
-- ready, with the failure in `processing_error` / `processing_error_at`.
--
-- Application users (`authenticated`) submit documents through submit_document() and read
-- the results; only the ingestion workers (service_role) write chunks and processing state.

ALTER TABLE public.knowledge_documents
  ADD COLUMN pending_hash TEXT,
  ADD COLUMN processing_error_at TIMESTAMP WITH TIME ZONE;

-- Documents that were mid-processing when this migration ran: their bytes are the pending
-- version (the old model had no separate current version).
UPDATE public.knowledge_documents SET pending_hash = content_hash, content_hash = NULL
WHERE status = 'processing';

-- The bytes of each version: the current one (for re-ingestion) and at most one pending.
ALTER TABLE public.knowledge_document_sources
  ADD COLUMN content_hash TEXT,
  ADD COLUMN file_name TEXT,
  ADD COLUMN file_type TEXT,
  -- A title the submitter gave; NULL: the one extraction finds, else the file name.
  ADD COLUMN title TEXT;
UPDATE public.knowledge_document_sources s
SET content_hash = coalesce(d.pending_hash, d.content_hash, encode(sha256(s.body), 'hex')),
    file_name = d.file_name, file_type = d.file_type
FROM public.knowledge_documents d WHERE d.id = s.document_id;
UPDATE public.knowledge_document_sources SET content_hash = encode(sha256(body), 'hex')
WHERE content_hash IS NULL;
ALTER TABLE public.knowledge_document_sources
  ALTER COLUMN content_hash SET NOT NULL,
  DROP CONSTRAINT knowledge_document_sources_pkey,
  ADD PRIMARY KEY (document_id, content_hash);

-- Every claim of a job gets a new token; a worker's writes commit only while its token is
-- the job's (hold_ingest_claim locks the job row for the rest of the transaction).
ALTER TABLE public.ingest_jobs
  ADD COLUMN claim_token UUID,
  ADD COLUMN finished_at TIMESTAMP WITH TIME ZONE;
CREATE INDEX ingest_jobs_finished ON public.ingest_jobs(finished_at) WHERE status IN ('done', 'failed');
CREATE INDEX ingest_jobs_requested_by_active ON public.ingest_jobs(requested_by)
  WHERE status IN ('queued', 'running');

-- Privileges: what the API refuses, the database refuses too.
REVOKE INSERT, UPDATE, DELETE ON public.knowledge_chunks FROM authenticated;
REVOKE INSERT, UPDATE ON public.knowledge_documents FROM authenticated;
GRANT UPDATE (title, metadata) ON public.knowledge_documents TO authenticated;
REVOKE INSERT, UPDATE, DELETE ON public.knowledge_document_sources FROM authenticated;
DROP POLICY knowledge_chunks_insert ON public.knowledge_chunks;
DROP POLICY knowledge_chunks_update ON public.knowledge_chunks;
DROP POLICY knowledge_chunks_delete ON public.knowledge_chunks;
DROP POLICY knowledge_documents_insert ON public.knowledge_documents;
DROP POLICY knowledge_document_sources_insert ON public.knowledge_document_sources;
DROP POLICY knowledge_document_sources_update ON public.knowledge_document_sources;
DROP POLICY knowledge_document_sources_delete ON public.knowledge_document_sources;

-- A chunk's vector has its model's dimensions and its bucket's model, whoever writes it
-- (service_role bypasses row level security): one bad vector would otherwise make the
-- model's index build fail for everyone. Checked once per statement over the new rows.
CREATE FUNCTION public.check_chunk_embeddings()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_bad RECORD;
BEGIN
  SELECT n.embedding_model, m.dimensions AS expected, vector_dims(n.embedding) AS got,
         b.embedding_model AS bucket_model
  INTO v_bad
  FROM new_chunks n
  JOIN public.embedding_models m ON m.name = n.embedding_model
  JOIN public.knowledge_buckets b ON b.id = n.bucket_id
  WHERE (n.embedding IS NOT NULL AND vector_dims(n.embedding) <> m.dimensions)
     OR b.embedding_model <> n.embedding_model
  LIMIT 1;
  IF FOUND THEN
    IF v_bad.bucket_model <> v_bad.embedding_model THEN
      RAISE EXCEPTION 'chunk of model % in a bucket of model %', v_bad.embedding_model, v_bad.bucket_model
        USING ERRCODE = '22000';
    END IF;
    RAISE EXCEPTION 'embedding of % dimensions for model % of % dimensions',
      v_bad.got, v_bad.embedding_model, v_bad.expected
      USING ERRCODE = '22000';
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER knowledge_chunks_check_insert AFTER INSERT ON public.knowledge_chunks
  REFERENCING NEW TABLE AS new_chunks
  FOR EACH STATEMENT EXECUTE FUNCTION public.check_chunk_embeddings();
CREATE TRIGGER knowledge_chunks_check_update AFTER UPDATE ON public.knowledge_chunks
  REFERENCING NEW TABLE AS new_chunks
  FOR EACH STATEMENT EXECUTE FUNCTION public.check_chunk_embeddings();

-- Vectors written before this check that would break their model's index.
DELETE FROM public.knowledge_chunks c USING public.embedding_models m
WHERE m.name = c.embedding_model AND c.embedding IS NOT NULL AND vector_dims(c.embedding) <> m.dimensions;

-- Submits a version of a document, as the bucket's owner (or service_role on the owner's
-- behalf): the one decision, for uploads and the command line alike, of what new bytes mean.
--   'unchanged': the bytes are the document's ready version (a pending other version is
--                dropped: the newest submission wins). A given title replaces the old one.
--   'duplicate': another ready document of the bucket has these bytes (p_document_id is it); a
--                document under this key that held other bytes is removed, so no stale chunks
--                of its old version stay searchable.
--   'queued':    the bytes are stored as the pending version and a job is queued (a running
--                job for an older pending version runs again for this one); the ready version
--                stays searchable until this one is ready.
CREATE FUNCTION public.submit_document(
  p_bucket_id UUID,
  p_key TEXT,
  p_file_name TEXT,
  p_file_type TEXT,
  p_body BYTEA,
  p_title TEXT DEFAULT NULL
)
RETURNS TABLE (document_id UUID, outcome TEXT, job_id UUID)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, extensions, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_owner UUID;
  v_hash TEXT := encode(sha256(p_body), 'hex');
  v_doc public.knowledge_documents;
  v_dup UUID;
  v_job UUID;
BEGIN
  IF p_key IS NULL OR p_key = '' THEN
    RAISE EXCEPTION 'a document needs a key (its path)' USING ERRCODE = '22023';
  END IF;
  SELECT b.created_by INTO v_owner FROM public.knowledge_buckets b
  WHERE b.id = p_bucket_id AND (b.created_by = auth.uid() OR auth.role() = 'service_role');
  IF v_owner IS NULL THEN
    RAISE EXCEPTION 'bucket % not found', p_bucket_id USING ERRCODE = 'P0002';
  END IF;

  -- One submission per key at a time: the row lock orders concurrent ones (newest wins).
  INSERT INTO public.knowledge_documents AS d
    (bucket_id, upload_path, title, content, file_name, file_type, file_size, status, created_by)
  VALUES (p_bucket_id, p_key, coalesce(p_title, p_file_name), '', p_file_name, p_file_type,
          octet_length(p_body), 'processing', v_owner)
  ON CONFLICT (bucket_id, upload_path) WHERE upload_path IS NOT NULL
  DO UPDATE SET upload_path = d.upload_path
  RETURNING * INTO v_doc;

  IF v_doc.status = 'ready' AND v_doc.content_hash = v_hash THEN
    IF v_doc.pending_hash IS NOT NULL THEN
      DELETE FROM public.knowledge_document_sources s
      WHERE s.document_id = v_doc.id AND s.content_hash = v_doc.pending_hash;
    END IF;
    UPDATE public.knowledge_documents d
    SET pending_hash = NULL, title = coalesce(p_title, d.title)
    WHERE d.id = v_doc.id;
    RETURN QUERY SELECT v_doc.id, 'unchanged'::text, NULL::uuid;
    RETURN;
  END IF;

  SELECT o.id INTO v_dup FROM public.knowledge_documents o
  WHERE o.bucket_id = p_bucket_id AND o.content_hash = v_hash AND o.status = 'ready' AND o.id <> v_doc.id
  ORDER BY o.created_at, o.id LIMIT 1;
  IF v_dup IS NOT NULL THEN
    DELETE FROM public.knowledge_documents d WHERE d.id = v_doc.id;
    RETURN QUERY SELECT v_dup, 'duplicate'::text, NULL::uuid;
    RETURN;
  END IF;

  -- The previous pending version (if any) is superseded: its bytes go, the current stay.
  DELETE FROM public.knowledge_document_sources s
  WHERE s.document_id = v_doc.id AND s.content_hash IS DISTINCT FROM v_doc.content_hash
    AND s.content_hash <> v_hash;
  INSERT INTO public.knowledge_document_sources AS s (document_id, content_hash, body, file_name, file_type, title)
  VALUES (v_doc.id, v_hash, p_body, p_file_name, p_file_type, p_title)
  ON CONFLICT ON CONSTRAINT knowledge_document_sources_pkey
  DO UPDATE SET file_name = EXCLUDED.file_name, file_type = EXCLUDED.file_type, title = EXCLUDED.title,
                created_at = now();
  UPDATE public.knowledge_documents d
  SET pending_hash = v_hash,
      -- A document that was never ready shows what is being processed now.
      status = CASE WHEN d.status = 'ready' THEN 'ready' ELSE 'processing' END,
      title = CASE WHEN d.status = 'ready' THEN d.title ELSE coalesce(p_title, p_file_name) END,
      file_name = CASE WHEN d.status = 'ready' THEN d.file_name ELSE p_file_name END,
      file_type = CASE WHEN d.status = 'ready' THEN d.file_type ELSE p_file_type END,
      file_size = CASE WHEN d.status = 'ready' THEN d.file_size ELSE octet_length(p_body) END
  WHERE d.id = v_doc.id;

  v_job := public.enqueue_ingest_job(v_doc.id);
  RETURN QUERY SELECT v_doc.id, 'queued'::text, v_job;
END;
$$;

REVOKE ALL ON FUNCTION public.submit_document(UUID, TEXT, TEXT, TEXT, BYTEA, TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.submit_document(UUID, TEXT, TEXT, TEXT, BYTEA, TEXT)
  TO authenticated, service_role;

-- Re-ingestion of a document's current (or failed pending) version, as its bucket's owner.
CREATE OR REPLACE FUNCTION public.enqueue_ingest_job(p_document_id UUID)
RETURNS UUID
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
  v_owner UUID;
  v_job UUID;
BEGIN
  SELECT b.created_by INTO v_owner
  FROM public.knowledge_documents d
  JOIN public.knowledge_buckets b ON b.id = d.bucket_id
  WHERE d.id = p_document_id
    AND (b.created_by = auth.uid() OR auth.role() = 'service_role')
  FOR UPDATE OF d;
  IF v_owner IS NULL THEN
    RAISE EXCEPTION 'document % not found', p_document_id USING ERRCODE = 'P0002';
  END IF;
  UPDATE public.knowledge_documents d
  SET pending_hash = coalesce(d.pending_hash, d.content_hash),
      status = CASE WHEN d.status = 'ready' THEN 'ready' ELSE 'processing' END
  WHERE d.id = p_document_id
    AND EXISTS (SELECT 1 FROM public.knowledge_document_sources s
                WHERE s.document_id = d.id AND s.content_hash = coalesce(d.pending_hash, d.content_hash));
  IF NOT FOUND THEN
    RAISE EXCEPTION 'document % has no stored bytes to process again', p_document_id USING ERRCODE = '55000';
  END IF;
  INSERT INTO public.ingest_jobs AS j (document_id, requested_by)
  VALUES (p_document_id, v_owner)
  ON CONFLICT (document_id) WHERE status IN ('queued', 'running')
  DO UPDATE SET rerun = (j.status = 'running')
  RETURNING j.id INTO v_job;
  RETURN v_job;
END;
$$;

-- Locks the job for the rest of the caller's transaction if `p_token` is still its claim:
-- true, and no other worker can claim it or change it until this transaction ends; false if
-- the claim was lost (the lease expired and another worker took the job).
-- The job's document is locked first: submissions lock the document, then its job
-- (submit_document -> enqueue_ingest_job), and a worker taking them the other way round
-- would deadlock with an upload of the same file.
CREATE FUNCTION public.hold_ingest_claim(p_job_id UUID, p_token UUID)
RETURNS BOOLEAN
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
  PERFORM 1 FROM public.knowledge_documents d
  WHERE d.id = (SELECT j.document_id FROM public.ingest_jobs j WHERE j.id = p_job_id)
  FOR UPDATE;
  RETURN EXISTS (
    SELECT 1 FROM public.ingest_jobs j
    WHERE j.id = p_job_id AND j.claim_token = p_token AND j.status = 'running'
    FOR UPDATE);
END;
$$;

REVOKE ALL ON FUNCTION public.hold_ingest_claim(UUID, UUID) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.hold_ingest_claim(UUID, UUID) TO service_role;
