//! supabase-js (the npm package) against /rest/v1: see tests/supabase/.
