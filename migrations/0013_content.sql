-- Content management (spec group 4): folders (named by the spec for digital_assets),
-- content_calendar, content_templates and digital_assets. Company data: every member
-- reads, admins and managers change any row, sales their own; rows without a company are
-- their creator's.

CREATE TYPE public.content_status AS ENUM ('draft', 'scheduled', 'published', 'archived');
CREATE TYPE public.asset_type_enum AS ENUM ('image', 'video', 'audio', 'document', 'other');

CREATE TABLE public.folders (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  parent_id UUID REFERENCES public.folders(id) ON DELETE CASCADE,
  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX idx_folders_company_id ON public.folders(company_id);
CREATE INDEX idx_folders_parent_id ON public.folders(parent_id);
CREATE UNIQUE INDEX idx_folders_unique_name
  ON public.folders(coalesce(company_id, '00000000-0000-0000-0000-000000000000'::uuid),
                    coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), name);
SELECT kb_private.company_policies('public.folders', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);

CREATE TABLE public.content_calendar (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  campaign_id UUID REFERENCES public.campaigns(id) ON DELETE SET NULL,
  title TEXT NOT NULL,
  description TEXT,
  content_type TEXT NOT NULL,
  content_data JSONB DEFAULT '{}',
  status public.content_status NOT NULL DEFAULT 'draft',
  scheduled_date TIMESTAMP WITH TIME ZONE,
  platform TEXT[],
  assets TEXT[],
  assigned_to UUID REFERENCES auth.users(id) ON DELETE SET NULL,
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_content_calendar_company_id ON public.content_calendar(company_id);
CREATE INDEX idx_content_calendar_created_by ON public.content_calendar(created_by);
CREATE INDEX idx_content_calendar_status ON public.content_calendar(status);
CREATE INDEX idx_content_calendar_scheduled_date ON public.content_calendar(scheduled_date);
CREATE INDEX idx_content_calendar_content_type ON public.content_calendar(content_type);
CREATE INDEX idx_content_calendar_campaign_id ON public.content_calendar(campaign_id);
SELECT kb_private.company_policies('public.content_calendar', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);

-- Named by the spec only: reusable content with placeholders, per channel.
CREATE TABLE public.content_templates (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  description TEXT,
  content_type TEXT NOT NULL,
  platform TEXT,
  body TEXT NOT NULL DEFAULT '',
  variables JSONB NOT NULL DEFAULT '[]',
  is_active BOOLEAN NOT NULL DEFAULT true,
  created_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_content_templates_company_id ON public.content_templates(company_id);
CREATE INDEX idx_content_templates_content_type ON public.content_templates(content_type);
SELECT kb_private.company_policies('public.content_templates', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true);

CREATE TABLE public.digital_assets (
  id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  company_id UUID REFERENCES public.companies(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT,
  file_path TEXT NOT NULL,
  mime_type TEXT,
  file_size BIGINT CHECK (file_size IS NULL OR file_size >= 0),
  asset_type public.asset_type_enum NOT NULL,
  tags TEXT[],
  thumbnail_path TEXT,
  folder_id UUID REFERENCES public.folders(id) ON DELETE SET NULL,
  metadata JSONB DEFAULT '{}',
  uploaded_by UUID DEFAULT auth.uid() REFERENCES auth.users(id) ON DELETE SET NULL,
  created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX idx_digital_assets_company_id ON public.digital_assets(company_id);
CREATE INDEX idx_digital_assets_uploaded_by ON public.digital_assets(uploaded_by);
CREATE INDEX idx_digital_assets_asset_type ON public.digital_assets(asset_type);
CREATE INDEX idx_digital_assets_folder_id ON public.digital_assets(folder_id);
CREATE INDEX idx_digital_assets_tags ON public.digital_assets USING GIN (tags);
SELECT kb_private.company_policies('public.digital_assets', '{admin,manager,sales,viewer}', '{admin,manager}', '{sales}', true, 'uploaded_by');
