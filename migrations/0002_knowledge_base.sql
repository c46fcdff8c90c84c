-- Campaigns (referenced by knowledge buckets) and the knowledge base: buckets, documents,
-- chunks, and the registry of embedding models whose vectors the chunks hold.
-- Types come before the tables that use them (the spec has them after).

CREATE TYPE public.campaign_type AS ENUM ('email', 'social', 'content', 'ads', 'seo');
CREATE TYPE public.campaign_status AS ENUM ('draft', 'scheduled', 'active', 'paused', 'completed', 'cancelled');

CREATE TABLE public.campaigns (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT,
  type public.campaign_type NOT NULL,
  channel TEXT NOT NULL,
  status public.campaign_status DEFAULT 'draft',
  content JSONB DEFAULT '{}',
  target_audience TEXT DEFAULT '{}',
  settings JSONB DEFAULT '{}',
  metrics JSONB DEFAULT '{}',
  budget_allocated NUMERIC,
  budget_spent NUMERIC DEFAULT 0,
  start_date TIMESTAMP WITH TIME ZONE,
  end_date TIMESTAMP WITH TIME ZONE,
  created_by UUID NOT NULL REFERENCES auth.users(id),
  created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);

CREATE INDEX idx_campaigns_created_by ON public.campaigns(created_by);
CREATE INDEX idx_campaigns_status ON public.campaigns(status);
CREATE INDEX idx_campaigns_type ON public.campaigns(type);
CREATE INDEX idx_campaigns_created_at ON public.campaigns(created_at DESC);

-- Every embedding model whose vectors live in knowledge_chunks, with the state of its vector
-- index. Rows are written by kb's own database login (never by application roles).
CREATE TABLE public.embedding_models (
  name TEXT NOT NULL PRIMARY KEY,
  dimensions INTEGER NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
  index_method TEXT CHECK (index_method IN ('ivfflat', 'hnsw')),
  index_lists INTEGER,
  indexed_rows BIGINT,
  indexed_at TIMESTAMP WITH TIME ZONE,
  created_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);

CREATE TABLE public.knowledge_buckets (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT,
  bucket_type TEXT NOT NULL,
  campaign_id UUID REFERENCES public.campaigns(id),
  -- The model every chunk of this bucket is embedded with; a search never mixes models.
  embedding_model TEXT NOT NULL REFERENCES public.embedding_models(name),
  metadata JSONB DEFAULT '{}',
  created_by UUID NOT NULL REFERENCES auth.users(id),
  created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
  UNIQUE (created_by, name)
);

CREATE INDEX idx_knowledge_buckets_created_by ON public.knowledge_buckets(created_by);
CREATE INDEX idx_knowledge_buckets_type ON public.knowledge_buckets(bucket_type);
CREATE INDEX idx_knowledge_buckets_campaign_id ON public.knowledge_buckets(campaign_id);

CREATE TABLE public.knowledge_documents (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  bucket_id UUID NOT NULL REFERENCES public.knowledge_buckets(id) ON DELETE CASCADE,
  title TEXT NOT NULL,
  content TEXT NOT NULL,
  summary TEXT,
  file_name TEXT,
  file_type TEXT,
  file_size BIGINT,
  upload_path TEXT,
  status TEXT NOT NULL DEFAULT 'processing' CHECK (status IN ('processing', 'ready', 'failed')),
  processing_error TEXT,
  -- sha256 of the source bytes: an unchanged file is recognised without extracting it again.
  content_hash TEXT,
  metadata JSONB DEFAULT '{}',
  created_by UUID NOT NULL REFERENCES auth.users(id),
  created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
  UNIQUE (id, bucket_id)
);

CREATE INDEX idx_knowledge_documents_bucket_id ON public.knowledge_documents(bucket_id);
CREATE INDEX idx_knowledge_documents_status ON public.knowledge_documents(status);
CREATE INDEX idx_knowledge_documents_created_by ON public.knowledge_documents(created_by);
CREATE INDEX idx_knowledge_documents_content_hash ON public.knowledge_documents(bucket_id, content_hash);
CREATE UNIQUE INDEX idx_knowledge_documents_upload_path
  ON public.knowledge_documents(bucket_id, upload_path) WHERE upload_path IS NOT NULL;

-- The spec's full-text index over whole documents is not created: a tsvector is limited
-- to 1 MB, so a large document would fail to index (and never become ready), and full-text
-- search runs over chunks (knowledge_chunks.fts below), which hits point into.

-- bucket_id and document_id are tied to their rows by the composite key below (a chunk's
-- bucket is its document's bucket), which also cascades deletes: one foreign-key check per
-- written row instead of three, which bulk writes feel.
CREATE TABLE public.knowledge_chunks (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  bucket_id UUID NOT NULL,
  document_id UUID NOT NULL,
  content TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  chunk_index INTEGER NOT NULL,
  token_count INTEGER,
  -- No fixed dimension: each model's vectors are indexed by a partial expression index on
  -- (embedding::vector(N)) WHERE embedding_model = '<model>', built once data exists.
  embedding vector,
  embedding_model TEXT NOT NULL REFERENCES public.embedding_models(name),
  fts tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
  metadata JSONB DEFAULT '{}',
  created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
  -- A chunk's bucket is its document's bucket.
  FOREIGN KEY (document_id, bucket_id)
    REFERENCES public.knowledge_documents(id, bucket_id) ON DELETE CASCADE,
  UNIQUE (document_id, chunk_index)
);

CREATE INDEX idx_knowledge_chunks_bucket_id ON public.knowledge_chunks(bucket_id);
-- Dedup look-up: chunks already embedded in this bucket with this hash and model.
CREATE INDEX idx_knowledge_chunks_content_hash
  ON public.knowledge_chunks(bucket_id, embedding_model, content_hash);
CREATE INDEX idx_knowledge_chunks_fts ON public.knowledge_chunks USING gin(fts);

CREATE TRIGGER update_campaigns_updated_at BEFORE UPDATE ON public.campaigns
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();
CREATE TRIGGER update_knowledge_buckets_updated_at BEFORE UPDATE ON public.knowledge_buckets
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();
CREATE TRIGGER update_knowledge_documents_updated_at BEFORE UPDATE ON public.knowledge_documents
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- Row level security: every command has a policy; writes carry WITH CHECK; auth.uid() is
-- evaluated once per statement through (select auth.uid()).
ALTER TABLE public.campaigns ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.embedding_models ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.knowledge_buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.knowledge_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.knowledge_chunks ENABLE ROW LEVEL SECURITY;

CREATE POLICY campaigns_select ON public.campaigns FOR SELECT TO authenticated
  USING (created_by = (select auth.uid()));
CREATE POLICY campaigns_insert ON public.campaigns FOR INSERT TO authenticated
  WITH CHECK (created_by = (select auth.uid()));
CREATE POLICY campaigns_update ON public.campaigns FOR UPDATE TO authenticated
  USING (created_by = (select auth.uid())) WITH CHECK (created_by = (select auth.uid()));
CREATE POLICY campaigns_delete ON public.campaigns FOR DELETE TO authenticated
  USING (created_by = (select auth.uid()));

CREATE POLICY embedding_models_select ON public.embedding_models FOR SELECT
  TO authenticated USING (true);

CREATE POLICY knowledge_buckets_select ON public.knowledge_buckets FOR SELECT TO authenticated
  USING (created_by = (select auth.uid()));
CREATE POLICY knowledge_buckets_insert ON public.knowledge_buckets FOR INSERT TO authenticated
  WITH CHECK (
    created_by = (select auth.uid())
    AND (campaign_id IS NULL OR EXISTS (SELECT 1 FROM public.campaigns c WHERE c.id = campaign_id))
  );
CREATE POLICY knowledge_buckets_update ON public.knowledge_buckets FOR UPDATE TO authenticated
  USING (created_by = (select auth.uid()))
  WITH CHECK (
    created_by = (select auth.uid())
    AND (campaign_id IS NULL OR EXISTS (SELECT 1 FROM public.campaigns c WHERE c.id = campaign_id))
  );
CREATE POLICY knowledge_buckets_delete ON public.knowledge_buckets FOR DELETE TO authenticated
  USING (created_by = (select auth.uid()));

CREATE POLICY knowledge_documents_select ON public.knowledge_documents FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                 WHERE b.id = bucket_id AND b.created_by = (select auth.uid())));
CREATE POLICY knowledge_documents_insert ON public.knowledge_documents FOR INSERT TO authenticated
  WITH CHECK (created_by = (select auth.uid())
              AND EXISTS (SELECT 1 FROM public.knowledge_buckets b
                          WHERE b.id = bucket_id AND b.created_by = (select auth.uid())));
CREATE POLICY knowledge_documents_update ON public.knowledge_documents FOR UPDATE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                 WHERE b.id = bucket_id AND b.created_by = (select auth.uid())))
  WITH CHECK (created_by = (select auth.uid())
              AND EXISTS (SELECT 1 FROM public.knowledge_buckets b
                          WHERE b.id = bucket_id AND b.created_by = (select auth.uid())));
CREATE POLICY knowledge_documents_delete ON public.knowledge_documents FOR DELETE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                 WHERE b.id = bucket_id AND b.created_by = (select auth.uid())));

CREATE POLICY knowledge_chunks_select ON public.knowledge_chunks FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                 WHERE b.id = bucket_id AND b.created_by = (select auth.uid())));
-- A chunk's vector is of its bucket's model: a search never mixes models.
CREATE POLICY knowledge_chunks_insert ON public.knowledge_chunks FOR INSERT TO authenticated
  WITH CHECK (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                      WHERE b.id = bucket_id AND b.created_by = (select auth.uid())
                        AND b.embedding_model = knowledge_chunks.embedding_model));
CREATE POLICY knowledge_chunks_update ON public.knowledge_chunks FOR UPDATE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                 WHERE b.id = bucket_id AND b.created_by = (select auth.uid())))
  WITH CHECK (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                      WHERE b.id = bucket_id AND b.created_by = (select auth.uid())
                        AND b.embedding_model = knowledge_chunks.embedding_model));
CREATE POLICY knowledge_chunks_delete ON public.knowledge_chunks FOR DELETE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.knowledge_buckets b
                 WHERE b.id = bucket_id AND b.created_by = (select auth.uid())));

GRANT SELECT, INSERT, UPDATE, DELETE ON public.campaigns, public.knowledge_documents,
  public.knowledge_chunks TO authenticated, service_role;
-- A bucket's embedding model and owner are fixed at creation: its vectors depend on them.
GRANT SELECT, INSERT, DELETE ON public.knowledge_buckets TO authenticated, service_role;
GRANT UPDATE (name, description, bucket_type, campaign_id, metadata) ON public.knowledge_buckets
  TO authenticated, service_role;
GRANT SELECT ON public.embedding_models TO authenticated, service_role;
