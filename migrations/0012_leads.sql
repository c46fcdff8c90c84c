-- Lead management (spec group 3): leads, lead_activities, customer_journeys and
-- lead_scoring_rules, with the spec's scoring columns kept current by triggers.
--
-- Leads hold personal data: they always belong to a company, and only its admins, managers
-- and sales read and write them (the spec's lead_team_access, correlated with the lead's
-- company: the spec's version let an admin of any company read every lead). Viewers do not
-- see leads. An email is unique per company, not across all companies.

CREATE TYPE public.lead_status AS ENUM ('new', 'qualified', 'contacted', 'opportunity', 'converted', 'lost');
CREATE TYPE public.company_size_enum AS ENUM ('startup', 'small', 'medium', 'large', 'enterprise');

CREATE TABLE public.leads (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID NOT NULL REFERENCES public.companies(id) ON DELETE CASCADE,
  email TEXT,
  first_name TEXT,
  last_name TEXT,
  company TEXT,
  job_title TEXT,
  industry TEXT,
  country TEXT,
  source TEXT NOT NULL,
  source_details JSONB,
  tags TEXT[] DEFAULT '{}',
  lead_score INTEGER NOT NULL DEFAULT 0,
  status public.lead_status NOT NULL DEFAULT 'new',
  company_size public.company_size_enum,
  annual_revenue BIGINT CHECK (annual_revenue IS NULL OR annual_revenue >= 0),
  enriched_data JSONB DEFAULT '{}',
  last_activity_at TIMESTAMP WITH TIME ZONE,
  -- The spec's lead scoring migration.
  demographic_score INTEGER NOT NULL DEFAULT 0,
  behavioral_score INTEGER NOT NULL DEFAULT 0,
  engagement_score INTEGER NOT NULL DEFAULT 0,
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_leads_company_id ON public.leads(company_id);
CREATE INDEX idx_leads_email ON public.leads(email);
CREATE INDEX idx_leads_status ON public.leads(status);
CREATE INDEX idx_leads_score ON public.leads(lead_score DESC);
CREATE INDEX idx_leads_source ON public.leads(source);
CREATE INDEX idx_leads_created_at ON public.leads(created_at DESC);
CREATE INDEX idx_leads_company ON public.leads(company);
CREATE UNIQUE INDEX idx_leads_email_unique ON public.leads(company_id, email) WHERE email IS NOT NULL;
CREATE INDEX idx_leads_status_score ON public.leads(status, lead_score DESC);
CREATE INDEX idx_qualified_leads ON public.leads(lead_score DESC) WHERE status = 'qualified';
CREATE INDEX idx_leads_tags ON public.leads USING GIN (tags);
SELECT kb_private.company_policies('public.leads', '{admin,manager,sales}', '{admin,manager,sales}', '{}', false);

CREATE TABLE public.lead_activities (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  lead_id UUID NOT NULL REFERENCES public.leads(id) ON DELETE CASCADE,
  activity_type TEXT NOT NULL,
  activity_data JSONB DEFAULT '{}',
  source TEXT,
  occurred_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_lead_activities_lead_id ON public.lead_activities(lead_id);
CREATE INDEX idx_lead_activities_type ON public.lead_activities(activity_type);
CREATE INDEX idx_lead_activities_occurred_at ON public.lead_activities(occurred_at DESC);
CREATE INDEX idx_lead_activities_data ON public.lead_activities USING GIN (activity_data);
SELECT kb_private.child_policies('public.lead_activities', 'public.leads', 'lead_id', '{admin,manager,sales}', '{}');

-- Named by the spec only: the stages a lead went through, with the touchpoints of each.
CREATE TABLE public.customer_journeys (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  lead_id UUID NOT NULL REFERENCES public.leads(id) ON DELETE CASCADE,
  campaign_id UUID REFERENCES public.campaigns(id) ON DELETE SET NULL,
  stage TEXT NOT NULL CHECK (stage IN ('awareness', 'interest', 'consideration', 'intent', 'evaluation', 'purchase', 'retention', 'advocacy')),
  touchpoints JSONB NOT NULL DEFAULT '[]',
  entered_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  exited_at TIMESTAMP WITH TIME ZONE,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  CHECK (exited_at IS NULL OR exited_at >= entered_at)
);
CREATE INDEX idx_customer_journeys_lead_id ON public.customer_journeys(lead_id, entered_at DESC);
CREATE INDEX idx_customer_journeys_campaign_id ON public.customer_journeys(campaign_id);
SELECT kb_private.child_policies('public.customer_journeys', 'public.leads', 'lead_id', '{admin,manager,sales}', '{}');
CREATE TRIGGER update_customer_journeys_updated_at BEFORE UPDATE ON public.customer_journeys
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- Named by the spec only: points a company gives a lead per activity of a type; the sum over
-- a lead's activities is its engagement_score.
CREATE TABLE public.lead_scoring_rules (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID NOT NULL REFERENCES public.companies(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  activity_type TEXT NOT NULL,
  points INTEGER NOT NULL CHECK (points BETWEEN -1000 AND 1000),
  is_active BOOLEAN NOT NULL DEFAULT true,
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  UNIQUE (company_id, name)
);
CREATE INDEX idx_lead_scoring_rules_company_type ON public.lead_scoring_rules(company_id, activity_type) WHERE is_active;
SELECT kb_private.company_policies('public.lead_scoring_rules', '{admin,manager,sales,viewer}', '{admin,manager}', '{}', false);

-- Scores, as the spec computes them: demographic from the company size; behavioral 5 points
-- per `email_opened` or `link_clicked`; engagement from the company's active scoring rules;
-- lead_score their sum. Kept current by triggers: on a lead's insert or update, and on every
-- change of its activities (and of the company's rules). Users cannot write scores directly.
CREATE FUNCTION kb_private.demographic_score(p_size public.company_size_enum)
RETURNS INTEGER
LANGUAGE sql
IMMUTABLE
AS $$
  SELECT CASE p_size WHEN 'enterprise' THEN 25 WHEN 'large' THEN 20 WHEN 'medium' THEN 15 ELSE 10 END;
$$;

CREATE FUNCTION kb_private.score_lead()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
  NEW.demographic_score := kb_private.demographic_score(NEW.company_size);
  NEW.lead_score := NEW.demographic_score + NEW.behavioral_score + NEW.engagement_score;
  RETURN NEW;
END;
$$;
CREATE TRIGGER leads_score BEFORE INSERT OR UPDATE ON public.leads
  FOR EACH ROW EXECUTE FUNCTION kb_private.score_lead();

-- Recomputes the activity-based scores of the given leads (as the table owner: the caller
-- may add an activity without the right to write scores).
CREATE FUNCTION kb_private.rescore_leads(p_leads UUID[])
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
  UPDATE public.leads l
  SET behavioral_score = s.behavioral, engagement_score = s.engagement, last_activity_at = s.last_at
  FROM (
    SELECT l2.id,
           5 * count(a.id) FILTER (WHERE a.activity_type IN ('email_opened', 'link_clicked')) AS behavioral,
           coalesce(sum(r.points), 0) AS engagement,
           max(a.occurred_at) AS last_at
    FROM public.leads l2
    LEFT JOIN public.lead_activities a ON a.lead_id = l2.id
    LEFT JOIN public.lead_scoring_rules r
      ON r.company_id = l2.company_id AND r.activity_type = a.activity_type AND r.is_active
    WHERE l2.id = ANY (p_leads)
    GROUP BY l2.id
  ) s
  WHERE l.id = s.id
    AND (l.behavioral_score, l.engagement_score, l.last_activity_at)
        IS DISTINCT FROM (s.behavioral, s.engagement, s.last_at);
$$;

CREATE FUNCTION kb_private.activities_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM kb_private.rescore_leads(ARRAY(SELECT DISTINCT lead_id FROM new_rows));
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM kb_private.rescore_leads(ARRAY(SELECT DISTINCT lead_id FROM old_rows));
  ELSE
    PERFORM kb_private.rescore_leads(ARRAY(SELECT lead_id FROM new_rows UNION SELECT lead_id FROM old_rows));
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER lead_activities_rescore_insert AFTER INSERT ON public.lead_activities
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_private.activities_changed();
CREATE TRIGGER lead_activities_rescore_update AFTER UPDATE ON public.lead_activities
  REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_private.activities_changed();
CREATE TRIGGER lead_activities_rescore_delete AFTER DELETE ON public.lead_activities
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_private.activities_changed();

CREATE FUNCTION kb_private.scoring_rules_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
  PERFORM kb_private.rescore_leads(ARRAY(
    SELECT l.id FROM public.leads l
    WHERE l.company_id IN (SELECT company_id FROM changed_rules)));
  RETURN NULL;
END;
$$;
CREATE TRIGGER lead_scoring_rules_rescore_insert AFTER INSERT ON public.lead_scoring_rules
  REFERENCING NEW TABLE AS changed_rules FOR EACH STATEMENT EXECUTE FUNCTION kb_private.scoring_rules_changed();
CREATE TRIGGER lead_scoring_rules_rescore_update AFTER UPDATE ON public.lead_scoring_rules
  REFERENCING NEW TABLE AS changed_rules FOR EACH STATEMENT EXECUTE FUNCTION kb_private.scoring_rules_changed();
CREATE TRIGGER lead_scoring_rules_rescore_delete AFTER DELETE ON public.lead_scoring_rules
  REFERENCING OLD TABLE AS changed_rules FOR EACH STATEMENT EXECUTE FUNCTION kb_private.scoring_rules_changed();

-- Scores and activity times are the triggers' to write.
REVOKE UPDATE ON public.leads FROM authenticated;
GRANT UPDATE (email, first_name, last_name, company, job_title, industry, country, source, source_details,
              tags, status, company_size, annual_revenue, enriched_data, company_id)
  ON public.leads TO authenticated;
REVOKE INSERT ON public.leads FROM authenticated;
GRANT INSERT (id, company_id, email, first_name, last_name, company, job_title, industry, country, source,
              source_details, tags, status, company_size, annual_revenue, enriched_data, created_by)
  ON public.leads TO authenticated;
-- The trigger functions run as their owner (SECURITY DEFINER): kb_private stays closed to
-- application roles.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA kb_private FROM PUBLIC;
