-- Row level security that costs one lookup per statement instead of one per row.
--
-- The company policies asked `has_company_role(company_id, roles)` of every row: a function
-- call and an index probe of user_roles per row (a 100-row page of 5,000 leads took 33 ms,
-- all of it in the policy). They now ask whether the row's company is among the caller's
-- companies holding one of the roles: `company_id = ANY ((SELECT company_ids_with_role(..))::uuid[])`,
-- an InitPlan evaluated once per statement, which an index on company_id can also use. The
-- rules are the same (tests/it/rls_matrix.rs checks every role, table and command).

-- The companies where the caller holds one of p_roles. SECURITY DEFINER for the same reason
-- as has_company_role: policies ask it without the caller reading others' user_roles rows.
CREATE FUNCTION public.company_ids_with_role(p_roles public.app_role[])
RETURNS UUID[]
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
  SELECT coalesce(array_agg(ur.company_id), '{}')
  FROM public.user_roles ur
  WHERE ur.user_id = auth.uid() AND ur.role = ANY (p_roles);
$$;
REVOKE ALL ON FUNCTION public.company_ids_with_role(public.app_role[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.company_ids_with_role(public.app_role[]) TO anon, authenticated, service_role;

-- Rewrites an expression's has_company_role(x, roles) calls into the set form.
CREATE FUNCTION kb_private.company_set_expr(p_expr TEXT)
RETURNS TEXT
LANGUAGE sql
IMMUTABLE
AS $$
  SELECT regexp_replace(p_expr,
    '(?:public\.)?has_company_role\(([a-z_.]+), (''\{[a-z_,]*\}''::(?:public\.)?app_role\[\])\)',
    '(\1 = ANY ((SELECT public.company_ids_with_role(\2))::uuid[]))', 'g');
$$;

DO $$
DECLARE
  p RECORD;
  v_using TEXT;
  v_check TEXT;
BEGIN
  FOR p IN
    SELECT pol.polname, c.oid::regclass AS tbl,
           pg_get_expr(pol.polqual, pol.polrelid) AS qual,
           pg_get_expr(pol.polwithcheck, pol.polrelid) AS with_check
    FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public'
      AND (pg_get_expr(pol.polqual, pol.polrelid) LIKE '%has_company_role(%'
           OR pg_get_expr(pol.polwithcheck, pol.polrelid) LIKE '%has_company_role(%')
  LOOP
    v_using := kb_private.company_set_expr(p.qual);
    v_check := kb_private.company_set_expr(p.with_check);
    IF coalesce(v_using, '') LIKE '%has_company_role(%' OR coalesce(v_check, '') LIKE '%has_company_role(%' THEN
      RAISE EXCEPTION 'policy % on % keeps a has_company_role call the rewrite did not match: % / %',
        p.polname, p.tbl, v_using, v_check;
    END IF;
    IF v_using IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON %s USING (%s)', p.polname, p.tbl, v_using);
    END IF;
    IF v_check IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON %s WITH CHECK (%s)', p.polname, p.tbl, v_check);
    END IF;
  END LOOP;
END;
$$;

-- The set form of "the row's company is one where the caller holds one of p_roles", as
-- policy text over column p_column (the generators below write it directly).
CREATE FUNCTION kb_private.company_in(p_column TEXT, p_roles public.app_role[])
RETURNS TEXT
LANGUAGE sql
IMMUTABLE
AS $$
  SELECT format('(%s = ANY ((SELECT public.company_ids_with_role(%L::public.app_role[]))::uuid[]))', p_column, p_roles);
$$;

-- Later migrations' policies take the same form.
CREATE OR REPLACE FUNCTION kb_private.company_policies(
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
  v_read := format('%s OR %s', v_personal, kb_private.company_in('company_id', p_read));
  v_write := format('%s OR %s OR (%I = (select auth.uid()) AND %s)',
    v_personal, kb_private.company_in('company_id', p_write_all), p_creator, kb_private.company_in('company_id', p_write_own));
  v_insert := format('%I = (select auth.uid()) AND (%s OR %s)',
    p_creator, v_personal, kb_private.company_in('company_id', p_write_all || p_write_own));
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

CREATE OR REPLACE FUNCTION kb_private.child_policies(
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
    'EXISTS (SELECT 1 FROM %s p WHERE p.id = %I AND ((p.company_id IS NULL AND p.created_by = (select auth.uid())) OR %s OR (p.created_by = (select auth.uid()) AND %s)))',
    p_parent, p_fk, kb_private.company_in('p.company_id', p_write_all), kb_private.company_in('p.company_id', p_write_own));
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_table);
  EXECUTE format('CREATE POLICY %I ON %s FOR SELECT TO authenticated USING (%s)', v_name || '_select', p_table, v_read);
  EXECUTE format('CREATE POLICY %I ON %s FOR INSERT TO authenticated WITH CHECK (%s)', v_name || '_insert', p_table, v_write);
  EXECUTE format('CREATE POLICY %I ON %s FOR UPDATE TO authenticated USING (%s) WITH CHECK (%s)',
    v_name || '_update', p_table, v_write, v_write);
  EXECUTE format('CREATE POLICY %I ON %s FOR DELETE TO authenticated USING (%s)', v_name || '_delete', p_table, v_write);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO authenticated, service_role', p_table);
END;
$$;
