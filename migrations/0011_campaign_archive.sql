-- The spec's campaign status migration: completed campaigns that ended over 30 days ago are
-- archived. The rule also runs as `public.archive_finished_campaigns()` (from `kb db
-- cleanup`), so campaigns that finish later are archived too.

CREATE FUNCTION public.archive_finished_campaigns(p_after INTERVAL DEFAULT INTERVAL '30 days')
RETURNS BIGINT
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
  v_count BIGINT;
BEGIN
  UPDATE public.campaigns
  SET status = 'archived'
  WHERE status = 'completed' AND end_date < now() - p_after;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END;
$$;
REVOKE ALL ON FUNCTION public.archive_finished_campaigns(INTERVAL) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.archive_finished_campaigns(INTERVAL) TO service_role;

SELECT public.archive_finished_campaigns();
