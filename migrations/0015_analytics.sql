-- Analytics (spec group 7), named by the spec only: performance_analytics (a metric per
-- period, per company or campaign), real_time_metrics (recent values, short-lived) and
-- analytics_reports (saved report definitions and results). Company data; rows without a
-- company are their creator's.

CREATE TABLE public.performance_analytics (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  campaign_id UUID REFERENCES public.campaigns(id) ON DELETE CASCADE,
  channel TEXT,
  metric_name TEXT NOT NULL,
  metric_value NUMERIC NOT NULL,
  period_start TIMESTAMP WITH TIME ZONE NOT NULL,
  period_end TIMESTAMP WITH TIME ZONE NOT NULL,
  dimensions JSONB NOT NULL DEFAULT '{}',
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  CHECK (period_end >= period_start)
);
CREATE INDEX idx_performance_analytics_company_metric ON public.performance_analytics(company_id, metric_name, period_start DESC);
CREATE INDEX idx_performance_analytics_campaign_id ON public.performance_analytics(campaign_id);
CREATE INDEX idx_performance_analytics_dimensions ON public.performance_analytics USING GIN (dimensions);
SELECT kb_private.company_policies('public.performance_analytics', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);

CREATE TABLE public.real_time_metrics (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  campaign_id UUID REFERENCES public.campaigns(id) ON DELETE CASCADE,
  metric_name TEXT NOT NULL,
  metric_value NUMERIC NOT NULL,
  recorded_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  metadata JSONB NOT NULL DEFAULT '{}',
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_real_time_metrics_company_metric ON public.real_time_metrics(company_id, metric_name, recorded_at DESC);
CREATE INDEX idx_real_time_metrics_recorded_at ON public.real_time_metrics(recorded_at DESC);
SELECT kb_private.company_policies('public.real_time_metrics', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);

CREATE TABLE public.analytics_reports (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  report_type TEXT NOT NULL,
  parameters JSONB NOT NULL DEFAULT '{}',
  results JSONB,
  schedule TEXT,
  last_run_at TIMESTAMP WITH TIME ZONE,
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_analytics_reports_company_id ON public.analytics_reports(company_id);
CREATE INDEX idx_analytics_reports_created_by ON public.analytics_reports(created_by);
SELECT kb_private.company_policies('public.analytics_reports', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);
