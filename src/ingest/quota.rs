//! Per-user quotas on what uploads may hold: documents, stored bytes, and jobs waiting or
//! running. Checked before a submission, in its transaction. Pure.

use crate::store::jobs::Usage;

/// The most one user may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub max_documents: i64,
    pub max_stored_bytes: i64,
    pub max_active_jobs: i64,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas { max_documents: 100_000, max_stored_bytes: 10 * 1024 * 1024 * 1024, max_active_jobs: 1_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("document quota reached: {max} documents per user")]
    Documents { max: i64 },
    #[error("storage quota exceeded: {used} bytes stored plus {adding} new would pass {max} bytes per user")]
    StoredBytes { used: i64, adding: i64, max: i64 },
    #[error("queue quota reached: {max} documents waiting or processing per user; retry when some are done")]
    ActiveJobs { max: i64 },
}

impl Quotas {
    /// Whether a user holding `usage` may submit `adding` more bytes (a new document when
    /// `new_document`).
    pub fn check(&self, usage: &Usage, adding: i64, new_document: bool) -> Result<(), QuotaError> {
        if new_document && usage.documents >= self.max_documents {
            return Err(QuotaError::Documents { max: self.max_documents });
        }
        if usage.active_jobs >= self.max_active_jobs {
            return Err(QuotaError::ActiveJobs { max: self.max_active_jobs });
        }
        if usage.stored_bytes.saturating_add(adding) > self.max_stored_bytes {
            return Err(QuotaError::StoredBytes { used: usage.stored_bytes, adding, max: self.max_stored_bytes });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTAS: Quotas = Quotas { max_documents: 2, max_stored_bytes: 100, max_active_jobs: 1 };

    fn usage(documents: i64, stored_bytes: i64, active_jobs: i64) -> Usage {
        Usage { documents, stored_bytes, active_jobs }
    }

    #[test]
    fn a_user_under_every_quota_may_submit() {
        assert_eq!(QUOTAS.check(&usage(1, 50, 0), 50, true), Ok(()));
    }

    #[test]
    fn each_quota_refuses_on_its_own() {
        assert_eq!(QUOTAS.check(&usage(2, 0, 0), 1, true), Err(QuotaError::Documents { max: 2 }));
        assert_eq!(QUOTAS.check(&usage(2, 0, 0), 1, false), Ok(()), "a new version is no new document");
        assert_eq!(QUOTAS.check(&usage(0, 0, 1), 1, true), Err(QuotaError::ActiveJobs { max: 1 }));
        assert_eq!(
            QUOTAS.check(&usage(0, 60, 0), 41, true),
            Err(QuotaError::StoredBytes { used: 60, adding: 41, max: 100 })
        );
    }
}
