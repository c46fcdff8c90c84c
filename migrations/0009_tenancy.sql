-- User management (spec group 1): companies, profiles, user_roles, and the tenancy model every
-- later table follows (migrations/README.md, ARCHITECTURE.md "Tenancy").
--
-- A row belongs to a company (company_id) and was created by a user (created_by). A user has
-- at most one role per company in user_roles: admin, manager, sales or viewer. Rows without a
-- company (where a table allows them) are personal: only their creator sees them.
-- The policies of each table come from one of the generators at the end of this file, so
-- every table of a kind has the same rules for every command.

CREATE TYPE public.app_role AS ENUM ('admin', 'manager', 'sales', 'viewer');

CREATE TABLE public.companies (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  industry TEXT,
  company_size TEXT,
  website TEXT,
  -- Not in the spec: who created the company (its first admin).
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_companies_name ON public.companies(name);
CREATE INDEX idx_companies_industry ON public.companies(industry);
CREATE INDEX idx_companies_created_by ON public.companies(created_by);

CREATE TABLE public.profiles (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  user_id UUID NOT NULL UNIQUE DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE CASCADE,
  first_name TEXT,
  last_name TEXT,
  avatar_url TEXT,
  phone TEXT,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
-- The spec's idx_profiles_user_id duplicates the UNIQUE constraint's index: not created.

CREATE TABLE public.user_roles (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  user_id UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
  company_id UUID NOT NULL REFERENCES public.companies(id) ON DELETE CASCADE,
  role public.app_role NOT NULL DEFAULT 'viewer',
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  UNIQUE (user_id, company_id)
);
CREATE INDEX idx_user_roles_company_id ON public.user_roles(company_id);

CREATE TRIGGER update_companies_updated_at BEFORE UPDATE ON public.companies
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();
CREATE TRIGGER update_profiles_updated_at BEFORE UPDATE ON public.profiles
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();
CREATE TRIGGER update_user_roles_updated_at BEFORE UPDATE ON public.user_roles
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- The caller's role in a company (NULL: none). SECURITY DEFINER so that policies can ask it
-- without the caller being able to read user_roles rows of others, and without recursion
-- through user_roles' own policies.
CREATE FUNCTION public.company_role(p_company_id UUID)
RETURNS public.app_role
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
  SELECT ur.role FROM public.user_roles ur
  WHERE ur.user_id = auth.uid() AND ur.company_id = p_company_id;
$$;

-- Whether the caller holds one of `p_roles` in the company.
CREATE FUNCTION public.has_company_role(p_company_id UUID, p_roles public.app_role[])
RETURNS BOOLEAN
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
  SELECT p_company_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM public.user_roles ur
    WHERE ur.user_id = auth.uid() AND ur.company_id = p_company_id AND ur.role = ANY (p_roles));
$$;

-- The spec's get_user_role: the caller's role in the company, 'viewer' when none. Its
-- search_path is fixed on the function instead of SET inside the body.
CREATE FUNCTION public.get_user_role(company_uuid UUID)
RETURNS TEXT
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
  SELECT coalesce(public.company_role(company_uuid)::text, 'viewer');
$$;

-- Whoever creates a company becomes its first admin (nobody else can grant that role).
CREATE FUNCTION public.company_creator_is_admin()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
  INSERT INTO public.user_roles (user_id, company_id, role, created_by)
  VALUES (NEW.created_by, NEW.id, 'admin', NEW.created_by)
  ON CONFLICT (user_id, company_id) DO NOTHING;
  RETURN NULL;
END;
$$;
CREATE TRIGGER companies_creator_is_admin AFTER INSERT ON public.companies
  FOR EACH ROW EXECUTE FUNCTION public.company_creator_is_admin();

ALTER TABLE public.companies ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_roles ENABLE ROW LEVEL SECURITY;

-- Its creator sees a company too: the creator's admin role is granted after the insert, and
-- `INSERT .. RETURNING` (PostgREST's return=representation) must see the new row.
CREATE POLICY companies_select ON public.companies FOR SELECT TO authenticated
  USING (created_by = (select auth.uid()) OR public.company_role(id) IS NOT NULL);
CREATE POLICY companies_insert ON public.companies FOR INSERT TO authenticated
  WITH CHECK (created_by = (select auth.uid()));
CREATE POLICY companies_update ON public.companies FOR UPDATE TO authenticated
  USING (public.has_company_role(id, '{admin}')) WITH CHECK (public.has_company_role(id, '{admin}'));
CREATE POLICY companies_delete ON public.companies FOR DELETE TO authenticated
  USING (public.has_company_role(id, '{admin}'));

-- A profile is its user's; members of a company see each other's profiles.
CREATE POLICY profiles_select ON public.profiles FOR SELECT TO authenticated
  USING (user_id = (select auth.uid()) OR EXISTS (
    -- user_roles' own policy shows the caller only the roles of the caller's companies.
    SELECT 1 FROM public.user_roles theirs WHERE theirs.user_id = profiles.user_id));
CREATE POLICY profiles_insert ON public.profiles FOR INSERT TO authenticated
  WITH CHECK (user_id = (select auth.uid()));
CREATE POLICY profiles_update ON public.profiles FOR UPDATE TO authenticated
  USING (user_id = (select auth.uid())) WITH CHECK (user_id = (select auth.uid()));
CREATE POLICY profiles_delete ON public.profiles FOR DELETE TO authenticated
  USING (user_id = (select auth.uid()));

-- Members see the roles of their companies; only a company's admins grant, change or remove
-- roles, never their own (an admin cannot lock the company out by demoting themselves, and
-- nobody can grant themselves anything).
CREATE POLICY user_roles_select ON public.user_roles FOR SELECT TO authenticated
  USING (user_id = (select auth.uid()) OR public.company_role(company_id) IS NOT NULL);
CREATE POLICY user_roles_insert ON public.user_roles FOR INSERT TO authenticated
  WITH CHECK (public.has_company_role(company_id, '{admin}') AND user_id <> (select auth.uid()));
CREATE POLICY user_roles_update ON public.user_roles FOR UPDATE TO authenticated
  USING (public.has_company_role(company_id, '{admin}') AND user_id <> (select auth.uid()))
  WITH CHECK (public.has_company_role(company_id, '{admin}') AND user_id <> (select auth.uid()));
CREATE POLICY user_roles_delete ON public.user_roles FOR DELETE TO authenticated
  USING (public.has_company_role(company_id, '{admin}') AND user_id <> (select auth.uid()));

GRANT SELECT, INSERT, DELETE ON public.companies, public.profiles TO authenticated, service_role;
GRANT UPDATE (name, industry, company_size, website) ON public.companies TO authenticated;
GRANT UPDATE (first_name, last_name, avatar_url, phone) ON public.profiles TO authenticated;
GRANT SELECT, INSERT, DELETE ON public.user_roles TO authenticated, service_role;
GRANT UPDATE (role) ON public.user_roles TO authenticated;
GRANT UPDATE ON public.companies, public.profiles, public.user_roles TO service_role;

REVOKE ALL ON FUNCTION public.company_role(UUID), public.has_company_role(UUID, public.app_role[]),
  public.get_user_role(UUID) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.company_role(UUID), public.has_company_role(UUID, public.app_role[]),
  public.get_user_role(UUID) TO anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.company_creator_is_admin() FROM PUBLIC;

-- Policy generators, used by the later migrations (kb_private is never exposed over HTTP).
CREATE SCHEMA IF NOT EXISTS kb_private;
REVOKE ALL ON SCHEMA kb_private FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA kb_private REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Company data: a row has company_id and its creator (p_creator, `created_by` unless named).
--   read:      the company's members holding one of p_read (or the creator of a personal row)
--   insert:    created_by is the caller, and the caller holds one of p_write_all or
--              p_write_own in the row's company (or the row is personal, if allowed)
--   update, delete: p_write_all on any row of the company; p_write_own on the caller's own
--              rows; the creator on a personal row. WITH CHECK the same, so no row moves to
--              a company where the caller could not have written it.
-- anon gets nothing; service_role bypasses row level security.
CREATE FUNCTION kb_private.company_policies(
  p_table REGCLASS,
  p_read public.app_role[],
  p_write_all public.app_role[],
  p_write_own public.app_role[],
  p_personal BOOLEAN,
  p_creator TEXT DEFAULT 'created_by'
)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
  v_name TEXT := (SELECT c.relname FROM pg_class c WHERE c.oid = p_table);
  v_personal TEXT := CASE WHEN p_personal
    THEN format('(company_id IS NULL AND %I = (select auth.uid()))', p_creator) ELSE 'false' END;
  v_read TEXT;
  v_write TEXT;
  v_insert TEXT;
BEGIN
  v_read := format('%s OR public.has_company_role(company_id, %L)', v_personal, p_read);
  v_write := format(
    '%s OR public.has_company_role(company_id, %L) OR (%I = (select auth.uid()) AND public.has_company_role(company_id, %L))',
    v_personal, p_write_all, p_creator, p_write_own);
  v_insert := format('%I = (select auth.uid()) AND (%s OR public.has_company_role(company_id, %L))',
    p_creator, v_personal, p_write_all || p_write_own);
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_table);
  EXECUTE format('CREATE POLICY %I ON %s FOR SELECT TO authenticated USING (%s)', v_name || '_select', p_table, v_read);
  EXECUTE format('CREATE POLICY %I ON %s FOR INSERT TO authenticated WITH CHECK (%s)', v_name || '_insert', p_table, v_insert);
  EXECUTE format('CREATE POLICY %I ON %s FOR UPDATE TO authenticated USING (%s) WITH CHECK (%s)',
    v_name || '_update', p_table, v_write, v_write);
  EXECUTE format('CREATE POLICY %I ON %s FOR DELETE TO authenticated USING (%s)', v_name || '_delete', p_table, v_write);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO authenticated, service_role', p_table);
  IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'update_' || v_name || '_updated_at') THEN
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column()',
      'update_' || v_name || '_updated_at', p_table);
  END IF;
END;
$$;

-- Rows that belong to a parent row (metrics of a campaign, activities of a lead): visible
-- when the parent is visible to the caller (the subquery runs under the parent's policies),
-- writable when the caller may write the parent.
CREATE FUNCTION kb_private.child_policies(
  p_table REGCLASS,
  p_parent REGCLASS,
  p_fk TEXT,
  p_write_all public.app_role[],
  p_write_own public.app_role[]
)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
  v_name TEXT := (SELECT c.relname FROM pg_class c WHERE c.oid = p_table);
  v_read TEXT;
  v_write TEXT;
BEGIN
  v_read := format('EXISTS (SELECT 1 FROM %s p WHERE p.id = %I)', p_parent, p_fk);
  v_write := format(
    'EXISTS (SELECT 1 FROM %s p WHERE p.id = %I AND ((p.company_id IS NULL AND p.created_by = (select auth.uid())) OR public.has_company_role(p.company_id, %L) OR (p.created_by = (select auth.uid()) AND public.has_company_role(p.company_id, %L))))',
    p_parent, p_fk, p_write_all, p_write_own);
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_table);
  EXECUTE format('CREATE POLICY %I ON %s FOR SELECT TO authenticated USING (%s)', v_name || '_select', p_table, v_read);
  EXECUTE format('CREATE POLICY %I ON %s FOR INSERT TO authenticated WITH CHECK (%s)', v_name || '_insert', p_table, v_write);
  EXECUTE format('CREATE POLICY %I ON %s FOR UPDATE TO authenticated USING (%s) WITH CHECK (%s)',
    v_name || '_update', p_table, v_write, v_write);
  EXECUTE format('CREATE POLICY %I ON %s FOR DELETE TO authenticated USING (%s)', v_name || '_delete', p_table, v_write);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO authenticated, service_role', p_table);
END;
$$;
