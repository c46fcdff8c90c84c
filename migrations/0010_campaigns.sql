-- Campaign system (spec group 2): campaigns join the tenancy model, campaign_metrics,
-- campaign_performance_metrics and campaign_metrics_archive; the spec's status values
-- `archived` and `error` (used from the next migration on: a new enum value cannot be used
-- in the transaction that adds it).

ALTER TYPE public.campaign_status ADD VALUE IF NOT EXISTS 'archived';
ALTER TYPE public.campaign_status ADD VALUE IF NOT EXISTS 'error';

-- Campaigns created before companies existed stay personal (company_id NULL: only their
-- creator sees them).
ALTER TABLE public.campaigns
  ADD COLUMN company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  ADD CONSTRAINT campaigns_budget_nonnegative CHECK (budget_allocated IS NULL OR budget_allocated >= 0),
  ADD CONSTRAINT campaigns_dates_ordered CHECK (end_date IS NULL OR start_date IS NULL OR end_date >= start_date);
-- A campaign outlives its creator's account (it is the company's): the creator becomes NULL.
ALTER TABLE public.campaigns
  ALTER COLUMN created_by SET DEFAULT auth.uid(),
  ALTER COLUMN created_by DROP NOT NULL,
  DROP CONSTRAINT campaigns_created_by_fkey,
  ADD CONSTRAINT campaigns_created_by_fkey FOREIGN KEY (created_by) REFERENCES auth.users(id) ON DELETE SET NULL;

CREATE INDEX idx_campaigns_company_id ON public.campaigns(company_id);
CREATE INDEX idx_campaigns_user_status ON public.campaigns(created_by, status);
CREATE INDEX idx_active_campaigns ON public.campaigns(created_by) WHERE status IN ('active', 'scheduled');
CREATE INDEX idx_campaigns_content ON public.campaigns USING GIN (content);

DROP POLICY campaigns_select ON public.campaigns;
DROP POLICY campaigns_insert ON public.campaigns;
DROP POLICY campaigns_update ON public.campaigns;
DROP POLICY campaigns_delete ON public.campaigns;
-- Every member reads the company's campaigns; admins and managers change any, sales their own.
SELECT kb_private.company_policies('public.campaigns', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);

CREATE TABLE public.campaign_metrics (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  campaign_id UUID NOT NULL REFERENCES public.campaigns(id) ON DELETE CASCADE,
  metric_type TEXT NOT NULL,
  metric_value NUMERIC NOT NULL,
  metric_date DATE NOT NULL,
  additional_data JSONB DEFAULT '{}',
  recorded_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_campaign_metrics_campaign_id ON public.campaign_metrics(campaign_id);
CREATE INDEX idx_campaign_metrics_type_date ON public.campaign_metrics(metric_type, metric_date);
CREATE INDEX idx_campaign_metrics_recorded_at ON public.campaign_metrics(recorded_at DESC);
CREATE INDEX idx_campaign_metrics_campaign_date ON public.campaign_metrics(campaign_id, metric_date DESC);
SELECT kb_private.child_policies('public.campaign_metrics', 'public.campaigns', 'campaign_id', '{admin,manager}', '{sales}');

-- Named by the spec only: a campaign's performance over a period, as reported by its channel.
CREATE TABLE public.campaign_performance_metrics (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  campaign_id UUID NOT NULL REFERENCES public.campaigns(id) ON DELETE CASCADE,
  period_start TIMESTAMP WITH TIME ZONE NOT NULL,
  period_end TIMESTAMP WITH TIME ZONE NOT NULL,
  impressions BIGINT NOT NULL DEFAULT 0 CHECK (impressions >= 0),
  clicks BIGINT NOT NULL DEFAULT 0 CHECK (clicks >= 0),
  conversions BIGINT NOT NULL DEFAULT 0 CHECK (conversions >= 0),
  spend NUMERIC NOT NULL DEFAULT 0 CHECK (spend >= 0),
  revenue NUMERIC NOT NULL DEFAULT 0 CHECK (revenue >= 0),
  additional_data JSONB DEFAULT '{}',
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  CHECK (period_end >= period_start),
  UNIQUE (campaign_id, period_start, period_end)
);
CREATE INDEX idx_campaign_performance_metrics_period ON public.campaign_performance_metrics(period_start DESC);
SELECT kb_private.child_policies('public.campaign_performance_metrics', 'public.campaigns', 'campaign_id', '{admin,manager}', '{sales}');
CREATE TRIGGER update_campaign_performance_metrics_updated_at BEFORE UPDATE ON public.campaign_performance_metrics
  FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- Metrics older than the retention period (`kb db cleanup`): the columns of campaign_metrics,
-- in the same order (the spec's `INSERT .. SELECT *` works), then when they were moved.
CREATE TABLE public.campaign_metrics_archive (
  id UUID NOT NULL PRIMARY KEY,
  campaign_id UUID NOT NULL REFERENCES public.campaigns(id) ON DELETE CASCADE,
  metric_type TEXT NOT NULL,
  metric_value NUMERIC NOT NULL,
  metric_date DATE NOT NULL,
  additional_data JSONB DEFAULT '{}',
  recorded_at TIMESTAMP WITH TIME ZONE NOT NULL,
  archived_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_campaign_metrics_archive_campaign_date ON public.campaign_metrics_archive(campaign_id, metric_date DESC);
-- Readable like the live metrics; written only by the cleanup (service_role).
ALTER TABLE public.campaign_metrics_archive ENABLE ROW LEVEL SECURITY;
CREATE POLICY campaign_metrics_archive_select ON public.campaign_metrics_archive FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.campaigns p WHERE p.id = campaign_id));
GRANT SELECT ON public.campaign_metrics_archive TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.campaign_metrics_archive TO service_role;
