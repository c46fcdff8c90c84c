-- Integrations (spec group 8), named by the spec only: oauth_connections,
-- integration_connections and social_platform_connections. They belong to a company and
-- only its admins read or change them.
--
-- Secrets (OAuth tokens, API credentials) are stored encrypted (pgcrypto's pgp_sym_encrypt)
-- with a key from kb's configuration, never from SQL text or a migration: the process that
-- writes or reads a secret passes the key for its transaction with
-- `set_config('kb.secrets_key', $1, true)` (a bound parameter) and names it with
-- `kb.secrets_key_id`, which is stored beside the ciphertext so keys can rotate. Clients can
-- never select the ciphertext columns, set secrets only through set_connection_secret(), and
-- no function gives a secret back to anyone but the service role. Each set and read is
-- recorded in secret_audit_logs, without the secret.

CREATE TABLE public.oauth_connections (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID NOT NULL REFERENCES public.companies(id) ON DELETE CASCADE,
  provider TEXT NOT NULL,
  account_id TEXT,
  account_name TEXT,
  scopes TEXT[] NOT NULL DEFAULT '{}',
  access_token_encrypted BYTEA,
  refresh_token_encrypted BYTEA,
  secret_key_id TEXT,
  expires_at TIMESTAMP WITH TIME ZONE,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'expired', 'revoked', 'error')),
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  UNIQUE (company_id, provider, account_id)
);
CREATE INDEX idx_oauth_connections_company_provider ON public.oauth_connections(company_id, provider);
SELECT kb_private.company_policies('public.oauth_connections', '{admin}', '{admin}', '{}', false);

CREATE TABLE public.integration_connections (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID NOT NULL REFERENCES public.companies(id) ON DELETE CASCADE,
  integration_type TEXT NOT NULL,
  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  -- Settings that are not secret (endpoints, options).
  config JSONB NOT NULL DEFAULT '{}',
  credentials_encrypted BYTEA,
  secret_key_id TEXT,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'error', 'disconnected')),
  last_sync_at TIMESTAMP WITH TIME ZONE,
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  UNIQUE (company_id, name)
);
CREATE INDEX idx_integration_connections_company_type ON public.integration_connections(company_id, integration_type);
SELECT kb_private.company_policies('public.integration_connections', '{admin}', '{admin}', '{}', false);

CREATE TABLE public.social_platform_connections (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID NOT NULL REFERENCES public.companies(id) ON DELETE CASCADE,
  oauth_connection_id UUID REFERENCES public.oauth_connections(id) ON DELETE SET NULL,
  platform TEXT NOT NULL CHECK (platform IN ('facebook', 'instagram', 'linkedin', 'twitter', 'tiktok', 'youtube', 'pinterest', 'other')),
  account_handle TEXT NOT NULL,
  account_id TEXT,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'error', 'disconnected')),
  metadata JSONB NOT NULL DEFAULT '{}',
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  UNIQUE (company_id, platform, account_handle)
);
CREATE INDEX idx_social_platform_connections_oauth ON public.social_platform_connections(oauth_connection_id);
SELECT kb_private.company_policies('public.social_platform_connections', '{admin}', '{admin}', '{}', false);

-- Clients never read nor write ciphertext columns directly.
REVOKE SELECT, INSERT, UPDATE ON public.oauth_connections, public.integration_connections FROM authenticated;
GRANT SELECT (id, company_id, provider, account_id, account_name, scopes, secret_key_id, expires_at, status,
              created_by, created_at, updated_at),
      INSERT (id, company_id, provider, account_id, account_name, scopes, expires_at, status, created_by),
      UPDATE (provider, account_id, account_name, scopes, expires_at, status)
  ON public.oauth_connections TO authenticated;
GRANT SELECT (id, company_id, integration_type, name, config, secret_key_id, status, last_sync_at,
              created_by, created_at, updated_at),
      INSERT (id, company_id, integration_type, name, config, status, created_by),
      UPDATE (integration_type, name, config, status, last_sync_at)
  ON public.integration_connections TO authenticated;

CREATE TRIGGER audit_oauth_connections AFTER INSERT OR UPDATE OR DELETE ON public.oauth_connections
  FOR EACH ROW EXECUTE FUNCTION kb_private.audit_row('access_token_encrypted', 'refresh_token_encrypted');
CREATE TRIGGER audit_integration_connections AFTER INSERT OR UPDATE OR DELETE ON public.integration_connections
  FOR EACH ROW EXECUTE FUNCTION kb_private.audit_row('credentials_encrypted');

-- The key of this transaction and its id; an error if the process passed none.
CREATE FUNCTION kb_private.secrets_key()
RETURNS TABLE (key TEXT, key_id TEXT)
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
  key := nullif(current_setting('kb.secrets_key', true), '');
  key_id := coalesce(nullif(current_setting('kb.secrets_key_id', true), ''), 'default');
  IF key IS NULL THEN
    RAISE EXCEPTION 'no secrets key is configured for this session (KB_SECRETS_KEY)' USING ERRCODE = '55000';
  END IF;
  RETURN NEXT;
END;
$$;

-- Sets (or, with NULL, clears) the secret of a connection the caller administers:
-- p_kind 'access_token' or 'refresh_token' of an oauth_connections row, or 'credentials' of
-- an integration_connections row.
CREATE FUNCTION public.set_connection_secret(p_connection_id UUID, p_kind TEXT, p_secret TEXT)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_table TEXT;
  v_company UUID;
  v_key RECORD;
  v_cipher BYTEA;
BEGIN
  IF p_kind IN ('access_token', 'refresh_token') THEN
    v_table := 'oauth_connections';
    SELECT c.company_id INTO v_company FROM public.oauth_connections c WHERE c.id = p_connection_id;
  ELSIF p_kind = 'credentials' THEN
    v_table := 'integration_connections';
    SELECT c.company_id INTO v_company FROM public.integration_connections c WHERE c.id = p_connection_id;
  ELSE
    RAISE EXCEPTION 'unknown secret kind %', p_kind USING ERRCODE = '22023';
  END IF;
  IF v_company IS NULL OR NOT (auth.role() = 'service_role' OR public.has_company_role(v_company, '{admin}')) THEN
    RAISE EXCEPTION 'connection % not found', p_connection_id USING ERRCODE = 'P0002';
  END IF;
  SELECT * INTO v_key FROM kb_private.secrets_key();
  v_cipher := CASE WHEN p_secret IS NOT NULL THEN pgp_sym_encrypt(p_secret, v_key.key, 'cipher-algo=aes256') END;
  IF p_kind = 'access_token' THEN
    UPDATE public.oauth_connections SET access_token_encrypted = v_cipher, secret_key_id = v_key.key_id WHERE id = p_connection_id;
  ELSIF p_kind = 'refresh_token' THEN
    UPDATE public.oauth_connections SET refresh_token_encrypted = v_cipher, secret_key_id = v_key.key_id WHERE id = p_connection_id;
  ELSE
    UPDATE public.integration_connections SET credentials_encrypted = v_cipher, secret_key_id = v_key.key_id WHERE id = p_connection_id;
  END IF;
  INSERT INTO public.secret_audit_logs (company_id, user_id, table_name, record_id, action, key_id)
  VALUES (v_company, (SELECT u.id FROM auth.users u WHERE u.id = auth.uid()), v_table, p_connection_id,
          CASE WHEN p_secret IS NULL THEN 'clear' ELSE 'set' END, v_key.key_id);
END;
$$;

-- A connection's secret in plain text, for kb's own processes (service_role) only.
CREATE FUNCTION public.read_connection_secret(p_connection_id UUID, p_kind TEXT)
RETURNS TEXT
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, extensions, pg_temp
AS $$
DECLARE
  v_company UUID;
  v_cipher BYTEA;
  v_key RECORD;
  v_table TEXT := CASE WHEN p_kind = 'credentials' THEN 'integration_connections' ELSE 'oauth_connections' END;
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' THEN
    RAISE EXCEPTION 'only the service role reads secrets' USING ERRCODE = '42501';
  END IF;
  IF p_kind = 'access_token' THEN
    SELECT company_id, access_token_encrypted INTO v_company, v_cipher FROM public.oauth_connections WHERE id = p_connection_id;
  ELSIF p_kind = 'refresh_token' THEN
    SELECT company_id, refresh_token_encrypted INTO v_company, v_cipher FROM public.oauth_connections WHERE id = p_connection_id;
  ELSIF p_kind = 'credentials' THEN
    SELECT company_id, credentials_encrypted INTO v_company, v_cipher FROM public.integration_connections WHERE id = p_connection_id;
  ELSE
    RAISE EXCEPTION 'unknown secret kind %', p_kind USING ERRCODE = '22023';
  END IF;
  IF v_cipher IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO v_key FROM kb_private.secrets_key();
  INSERT INTO public.secret_audit_logs (company_id, user_id, table_name, record_id, action, key_id)
  VALUES (v_company, NULL, v_table, p_connection_id, 'read', v_key.key_id);
  RETURN pgp_sym_decrypt(v_cipher, v_key.key);
END;
$$;

REVOKE ALL ON FUNCTION public.set_connection_secret(UUID, TEXT, TEXT), public.read_connection_secret(UUID, TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.set_connection_secret(UUID, TEXT, TEXT) TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.read_connection_secret(UUID, TEXT) TO service_role;
