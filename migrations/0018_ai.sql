-- AI & automation (spec group 10), named by the spec only: agents, chat_sessions,
-- chat_messages, automation_rules, and the spec's content_embeddings (vectors of the
-- platform's content, per model like knowledge_chunks).

CREATE TABLE public.agents (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  description TEXT,
  model TEXT NOT NULL,
  system_prompt TEXT NOT NULL DEFAULT '',
  tools JSONB NOT NULL DEFAULT '[]',
  -- The knowledge buckets the agent retrieves from (each still under its owner's policies).
  knowledge_bucket_ids UUID[] NOT NULL DEFAULT '{}',
  settings JSONB NOT NULL DEFAULT '{}',
  is_active BOOLEAN NOT NULL DEFAULT true,
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_agents_company_id ON public.agents(company_id);
SELECT kb_private.company_policies('public.agents', '{admin,manager,sales,viewer}', '{admin,manager}', '{}', true);

-- A chat is its user's alone (company admins do not read their colleagues' chats).
CREATE TABLE public.chat_sessions (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  agent_id UUID REFERENCES public.agents(id) ON DELETE SET NULL,
  title TEXT,
  metadata JSONB NOT NULL DEFAULT '{}',
  created_by UUID NOT NULL DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE CASCADE,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_chat_sessions_created_by ON public.chat_sessions(created_by, updated_at DESC);
CREATE INDEX idx_chat_sessions_company_id ON public.chat_sessions(company_id);
ALTER TABLE public.chat_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY chat_sessions_select ON public.chat_sessions FOR SELECT TO authenticated
  USING (created_by = (select auth.uid()));
-- A chat in a company's name needs membership of that company.
CREATE POLICY chat_sessions_insert ON public.chat_sessions FOR INSERT TO authenticated
  WITH CHECK (created_by = (select auth.uid())
              AND (company_id IS NULL OR public.company_role(company_id) IS NOT NULL));
CREATE POLICY chat_sessions_update ON public.chat_sessions FOR UPDATE TO authenticated
  USING (created_by = (select auth.uid()))
  WITH CHECK (created_by = (select auth.uid())
              AND (company_id IS NULL OR public.company_role(company_id) IS NOT NULL));
CREATE POLICY chat_sessions_delete ON public.chat_sessions FOR DELETE TO authenticated
  USING (created_by = (select auth.uid()));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.chat_sessions TO authenticated, service_role;
CREATE TRIGGER update_chat_sessions_updated_at BEFORE UPDATE ON public.chat_sessions
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

CREATE TABLE public.chat_messages (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  session_id UUID NOT NULL REFERENCES public.chat_sessions(id) ON DELETE CASCADE,
  role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
  content TEXT NOT NULL,
  -- Retrieved passages and their citations, tool calls, token counts.
  metadata JSONB NOT NULL DEFAULT '{}',
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_chat_messages_session_time ON public.chat_messages(session_id, created_at);
-- Readable and writable with its session (the session's own policy decides).
ALTER TABLE public.chat_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY chat_messages_select ON public.chat_messages FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.chat_sessions s WHERE s.id = session_id));
CREATE POLICY chat_messages_insert ON public.chat_messages FOR INSERT TO authenticated
  WITH CHECK (EXISTS (SELECT 1 FROM public.chat_sessions s WHERE s.id = session_id));
CREATE POLICY chat_messages_update ON public.chat_messages FOR UPDATE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.chat_sessions s WHERE s.id = session_id))
  WITH CHECK (EXISTS (SELECT 1 FROM public.chat_sessions s WHERE s.id = session_id));
CREATE POLICY chat_messages_delete ON public.chat_messages FOR DELETE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.chat_sessions s WHERE s.id = session_id));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.chat_messages TO authenticated, service_role;

CREATE TABLE public.automation_rules (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  description TEXT,
  trigger_type TEXT NOT NULL,
  trigger_config JSONB NOT NULL DEFAULT '{}',
  conditions JSONB NOT NULL DEFAULT '{}',
  actions JSONB NOT NULL DEFAULT '[]',
  agent_id UUID REFERENCES public.agents(id) ON DELETE SET NULL,
  is_active BOOLEAN NOT NULL DEFAULT true,
  last_run_at TIMESTAMP WITH TIME ZONE,
  run_count INTEGER NOT NULL DEFAULT 0 CHECK (run_count >= 0),
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_automation_rules_company_trigger ON public.automation_rules(company_id, trigger_type) WHERE is_active;
SELECT kb_private.company_policies('public.automation_rules', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);

-- Vectors of the platform's content (calendar items, templates, assets, campaigns), one row
-- per chunk, of any registered model: like knowledge_chunks, no fixed dimension, the
-- dimension checked against the model by the database, and one partial vector index per
-- model (the spec's single ivfflat index on an empty table would be useless).
CREATE TABLE public.content_embeddings (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  content_type TEXT NOT NULL CHECK (content_type IN ('campaign', 'content_calendar', 'content_template', 'digital_asset', 'email_template', 'other')),
  content_id UUID NOT NULL,
  chunk_index INTEGER NOT NULL DEFAULT 0 CHECK (chunk_index >= 0),
  content TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  embedding_model TEXT NOT NULL REFERENCES public.embedding_models(name),
  embedding vector NOT NULL,
  metadata JSONB NOT NULL DEFAULT '{}',
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  UNIQUE (content_type, content_id, embedding_model, chunk_index)
);
CREATE INDEX idx_content_embeddings_company_id ON public.content_embeddings(company_id);
CREATE INDEX idx_content_embeddings_content ON public.content_embeddings(content_type, content_id);
SELECT kb_private.company_policies('public.content_embeddings', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);

CREATE FUNCTION kb_private.check_content_embeddings()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_bad RECORD;
BEGIN
  SELECT n.embedding_model, m.dimensions AS expected, vector_dims(n.embedding) AS got
  INTO v_bad
  FROM new_rows n JOIN public.embedding_models m ON m.name = n.embedding_model
  WHERE vector_dims(n.embedding) <> m.dimensions
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'embedding of % dimensions for model % of % dimensions', v_bad.got, v_bad.embedding_model, v_bad.expected
      USING ERRCODE = '22000';
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER content_embeddings_check_insert AFTER INSERT ON public.content_embeddings
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_private.check_content_embeddings();
CREATE TRIGGER content_embeddings_check_update AFTER UPDATE ON public.content_embeddings
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_private.check_content_embeddings();

-- Removing a user (`kb user remove`): their personal rows (no company) go with them; rows of
-- a company stay the company's, their creator set to NULL by the foreign keys.
CREATE FUNCTION kb_private.delete_personal_rows(p_user UUID)
RETURNS BIGINT
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
  v_table RECORD;
  v_count BIGINT;
  v_total BIGINT := 0;
BEGIN
  FOR v_table IN
    SELECT c.table_name, creator.column_name AS creator
    FROM information_schema.columns c
    JOIN information_schema.columns creator
      ON creator.table_schema = c.table_schema AND creator.table_name = c.table_name
     AND creator.column_name IN ('created_by', 'uploaded_by')
    JOIN information_schema.tables t
      ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
    WHERE c.table_schema = 'public' AND c.column_name = 'company_id'
    ORDER BY c.table_name
  LOOP
    EXECUTE format('DELETE FROM public.%I WHERE company_id IS NULL AND %I = $1', v_table.table_name, v_table.creator)
      USING p_user;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_total := v_total + v_count;
  END LOOP;
  RETURN v_total;
END;
$$;
