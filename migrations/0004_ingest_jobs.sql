-- Ingestion jobs for the HTTP service: uploaded bytes are kept durably with the document, and a
-- job row per processing request is claimed by workers with FOR UPDATE SKIP LOCKED and a lease.

-- The source bytes of uploaded documents, written in the same transaction as the document, so
-- an accepted upload is never lost; kept for re-ingestion.
CREATE TABLE public.knowledge_document_sources (
  document_id UUID NOT NULL PRIMARY KEY REFERENCES public.knowledge_documents(id) ON DELETE CASCADE,
  body BYTEA NOT NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);

ALTER TABLE public.knowledge_document_sources ENABLE ROW LEVEL SECURITY;

CREATE POLICY knowledge_document_sources_select ON public.knowledge_document_sources FOR SELECT
  TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_documents d
                 JOIN public.knowledge_buckets b ON b.id = d.bucket_id
                 WHERE d.id = document_id AND b.created_by = (select auth.uid())));
CREATE POLICY knowledge_document_sources_insert ON public.knowledge_document_sources FOR INSERT
  TO authenticated
  WITH CHECK (EXISTS (SELECT 1 FROM public.knowledge_documents d
                      JOIN public.knowledge_buckets b ON b.id = d.bucket_id
                      WHERE d.id = document_id AND b.created_by = (select auth.uid())));
CREATE POLICY knowledge_document_sources_update ON public.knowledge_document_sources FOR UPDATE
  TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_documents d
                 JOIN public.knowledge_buckets b ON b.id = d.bucket_id
                 WHERE d.id = document_id AND b.created_by = (select auth.uid())))
  WITH CHECK (EXISTS (SELECT 1 FROM public.knowledge_documents d
                      JOIN public.knowledge_buckets b ON b.id = d.bucket_id
                      WHERE d.id = document_id AND b.created_by = (select auth.uid())));
CREATE POLICY knowledge_document_sources_delete ON public.knowledge_document_sources FOR DELETE
  TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_documents d
                 JOIN public.knowledge_buckets b ON b.id = d.bucket_id
                 WHERE d.id = document_id AND b.created_by = (select auth.uid())));

GRANT SELECT, INSERT, UPDATE, DELETE ON public.knowledge_document_sources TO authenticated, service_role;

CREATE TABLE public.ingest_jobs (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  document_id UUID NOT NULL REFERENCES public.knowledge_documents(id) ON DELETE CASCADE,
  -- The user the worker acts as while processing (the document's uploader).
  requested_by UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
  status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
  run_after TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  lease_until TIMESTAMP WITH TIME ZONE,
  worker_id TEXT,
  last_error TEXT,
  -- Set when the document is submitted again while this job runs: it then runs once more.
  rerun BOOLEAN NOT NULL DEFAULT false,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);

-- At most one pending or running processing of a document at a time.
CREATE UNIQUE INDEX ingest_jobs_one_active ON public.ingest_jobs(document_id)
  WHERE status IN ('queued', 'running');
CREATE INDEX ingest_jobs_claimable ON public.ingest_jobs(run_after)
  WHERE status IN ('queued', 'running');

CREATE TRIGGER update_ingest_jobs_updated_at BEFORE UPDATE ON public.ingest_jobs
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- Application users read the state of their own documents' jobs and queue work through
-- enqueue_ingest_job; claiming and finishing jobs is the workers' business (service_role).
ALTER TABLE public.ingest_jobs ENABLE ROW LEVEL SECURITY;

CREATE POLICY ingest_jobs_select ON public.ingest_jobs FOR SELECT TO authenticated
  USING (requested_by = (select auth.uid()));

GRANT SELECT ON public.ingest_jobs TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.ingest_jobs TO service_role;

-- Queues a processing of the document for its bucket's owner, if the caller may see the
-- document (its bucket's owner, or service_role). A document already queued keeps its one job;
-- one already running is marked to run again once it finishes, so the newest upload wins.
CREATE FUNCTION public.enqueue_ingest_job(p_document_id UUID)
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
    AND (b.created_by = auth.uid() OR auth.role() = 'service_role');
  IF v_owner IS NULL THEN
    RAISE EXCEPTION 'document % not found', p_document_id USING ERRCODE = 'P0002';
  END IF;
  INSERT INTO public.ingest_jobs (document_id, requested_by)
  VALUES (p_document_id, v_owner)
  ON CONFLICT (document_id) WHERE status IN ('queued', 'running')
  DO UPDATE SET rerun = (public.ingest_jobs.status = 'running')
  RETURNING id INTO v_job;
  RETURN v_job;
END;
$$;

REVOKE ALL ON FUNCTION public.enqueue_ingest_job(UUID) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.enqueue_ingest_job(UUID) TO authenticated, service_role;

-- Workers register the embedding model they run as service_role.
GRANT INSERT ON public.embedding_models TO service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.campaigns, public.knowledge_buckets,
  public.knowledge_documents, public.knowledge_chunks TO service_role;
