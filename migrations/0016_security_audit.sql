-- Security (spec group 9) and the spec's audit log: audit_log (every change of the tables
-- whose changes matter, recorded by a trigger with the actor from auth.uid(), never their
-- secrets), security_logs (security events) and secret_audit_logs (who set or read which
-- secret, never the secret). All three are append-only for application users and readable
-- by the admins of the company they concern; a user also reads the rows of their own actions
-- on rows that belong to no company.

CREATE TABLE public.audit_log (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  table_name TEXT NOT NULL,
  record_id UUID NOT NULL,
  operation TEXT NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
  old_values JSONB,
  new_values JSONB,
  user_id UUID REFERENCES auth.users(id) ON DELETE SET NULL,
  -- Not in the spec: the company the row belongs to, so its admins can read its history.
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  timestamp TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_audit_log_company_time ON public.audit_log(company_id, timestamp DESC);
CREATE INDEX idx_audit_log_record ON public.audit_log(table_name, record_id);
CREATE INDEX idx_audit_log_timestamp ON public.audit_log(timestamp);
CREATE INDEX idx_audit_log_user_id ON public.audit_log(user_id);

CREATE TABLE public.security_logs (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  user_id UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  event_type TEXT NOT NULL,
  severity TEXT NOT NULL DEFAULT 'info' CHECK (severity IN ('debug', 'info', 'warning', 'error', 'critical')),
  ip_address INET,
  user_agent TEXT,
  details JSONB NOT NULL DEFAULT '{}',
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_security_logs_company_time ON public.security_logs(company_id, created_at DESC);
CREATE INDEX idx_security_logs_user_time ON public.security_logs(user_id, created_at DESC);
CREATE INDEX idx_security_logs_event_type ON public.security_logs(event_type);

CREATE TABLE public.secret_audit_logs (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  user_id UUID REFERENCES auth.users(id) ON DELETE SET NULL,
  table_name TEXT NOT NULL,
  record_id UUID NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('set', 'read', 'clear')),
  -- Which key encrypted the secret (rotation), never the key or the secret.
  key_id TEXT,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_secret_audit_logs_company_time ON public.secret_audit_logs(company_id, created_at DESC);
CREATE INDEX idx_secret_audit_logs_record ON public.secret_audit_logs(table_name, record_id);

ALTER TABLE public.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.security_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.secret_audit_logs ENABLE ROW LEVEL SECURITY;

CREATE POLICY audit_log_select ON public.audit_log FOR SELECT TO authenticated
  USING (public.has_company_role(company_id, '{admin}')
         OR (company_id IS NULL AND user_id = (select auth.uid())));
CREATE POLICY security_logs_select ON public.security_logs FOR SELECT TO authenticated
  USING (public.has_company_role(company_id, '{admin}')
         OR (company_id IS NULL AND user_id = (select auth.uid())));
-- A user records their own events, about a company they belong to (or none).
CREATE POLICY security_logs_insert ON public.security_logs FOR INSERT TO authenticated
  WITH CHECK (user_id = (select auth.uid())
              AND (company_id IS NULL OR public.company_role(company_id) IS NOT NULL));
CREATE POLICY secret_audit_logs_select ON public.secret_audit_logs FOR SELECT TO authenticated
  USING (public.has_company_role(company_id, '{admin}'));

-- Append-only: no UPDATE or DELETE for application users; the audit log and the secret log
-- are written only by kb's triggers and functions (as their owner).
GRANT SELECT ON public.audit_log, public.secret_audit_logs TO authenticated;
GRANT SELECT, INSERT ON public.security_logs TO authenticated;
GRANT SELECT, INSERT ON public.audit_log, public.security_logs, public.secret_audit_logs TO service_role;

-- The spec's audit_trigger_function, with three changes: it runs as its owner (application
-- users cannot write the log themselves), it leaves out the columns named in the trigger's
-- arguments (secrets, large bodies), and it records the row's company.
CREATE FUNCTION kb_private.audit_row()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
  v_omit TEXT[] := coalesce(TG_ARGV, '{}');
  v_old JSONB := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) - v_omit END;
  v_new JSONB := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) - v_omit END;
  v_row JSONB := coalesce(v_new, v_old);
  v_company UUID := CASE WHEN TG_TABLE_NAME = 'companies' THEN (v_row ->> 'id')::uuid
                         ELSE (v_row ->> 'company_id')::uuid END;
BEGIN
  IF TG_OP = 'UPDATE' AND v_old = v_new THEN
    RETURN NULL;
  END IF;
  -- A company being deleted takes its log with it (the foreign key cascades).
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'companies' THEN
    RETURN NULL;
  END IF;
  INSERT INTO public.audit_log (table_name, record_id, operation, old_values, new_values, user_id, company_id)
  -- The actor, if a user: the service role's token names no user.
  VALUES (TG_TABLE_NAME, (v_row ->> 'id')::uuid, TG_OP, v_old, v_new,
          (SELECT u.id FROM auth.users u WHERE u.id = auth.uid()),
          CASE WHEN EXISTS (SELECT 1 FROM public.companies c WHERE c.id = v_company) THEN v_company END);
  RETURN NULL;
END;
$$;

CREATE TRIGGER audit_companies AFTER INSERT OR UPDATE OR DELETE ON public.companies
  FOR EACH ROW EXECUTE FUNCTION kb_private.audit_row();
CREATE TRIGGER audit_user_roles AFTER INSERT OR UPDATE OR DELETE ON public.user_roles
  FOR EACH ROW EXECUTE FUNCTION kb_private.audit_row();
CREATE TRIGGER audit_campaigns AFTER INSERT OR UPDATE OR DELETE ON public.campaigns
  FOR EACH ROW EXECUTE FUNCTION kb_private.audit_row();
CREATE TRIGGER audit_leads AFTER INSERT OR UPDATE OR DELETE ON public.leads
  FOR EACH ROW EXECUTE FUNCTION kb_private.audit_row();
-- A document's text can be megabytes: the log keeps its metadata and hashes.
CREATE TRIGGER audit_knowledge_documents AFTER INSERT OR UPDATE OR DELETE ON public.knowledge_documents
  FOR EACH ROW EXECUTE FUNCTION kb_private.audit_row('content', 'summary');

-- The spec's cleanup, as a function `kb db cleanup` runs: audit rows older than the
-- retention period are deleted.
CREATE FUNCTION public.delete_old_audit_log(p_keep INTERVAL DEFAULT INTERVAL '90 days')
RETURNS BIGINT
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
  v_count BIGINT;
BEGIN
  DELETE FROM public.audit_log WHERE timestamp < now() - p_keep;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END;
$$;
REVOKE ALL ON FUNCTION public.delete_old_audit_log(INTERVAL) FROM PUBLIC;
