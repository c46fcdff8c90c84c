//! Retry policy for remote embedding calls: which failures are worth another attempt, how long
//! to wait (the server's `Retry-After`, else exponential backoff with jitter), and when to stop.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// How a provider retries one request. Retries stop once the next wait would take the total time
/// spent on the request past `max_elapsed`, so a job never hangs on a dead endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry when the server does not say how long to wait.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts when the server does not say.
    pub max_backoff: Duration,
    /// Most time spent on one request, attempts and waits included.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Wait before retry number `retry` (1 for the first): doubling from `initial_backoff` up to
    /// `max_backoff`, then a random point in its upper half, so that many clients throttled at the
    /// same moment do not all come back at the same moment.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        let ceiling = self.initial_backoff.saturating_mul(1 << doublings).min(self.max_backoff);
        ceiling.mul_f64(0.5 + 0.5 * random_fraction())
    }

    /// The wait before retry number `retry`: what the server asked for, else [`Self::backoff`].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.unwrap_or_else(|| self.backoff(retry))
    }
}

/// Whether an HTTP error response is worth retrying. 429 is a rate limit (retry) unless its code
/// says the account's quota is spent, which no wait fixes; 408 and 5xx are the server's trouble;
/// every other 4xx (bad key, forbidden, invalid request) fails the same way every time.
pub(crate) fn is_retryable_status(status: StatusCode, code: Option<&str>) -> bool {
    match status.as_u16() {
        429 => code != Some("insufficient_quota"),
        408 => true,
        500..=599 => true,
        _ => false,
    }
}

/// Whether a failure to get any response (no status) is worth retrying: timeouts and
/// connection errors are; a request kb could not even build is not.
pub(crate) fn is_retryable_transport(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body() || error.is_decode()
}

/// How long the server asked us to wait: OpenAI's `retry-after-ms` if present, else the standard
/// `Retry-After` in seconds. The HTTP-date form of `Retry-After` is not used by OpenAI and falls
/// back to our own backoff.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("retry-after-ms")
        .and_then(|ms| parse_non_negative(ms).map(|ms| ms / 1000.0))
        .or_else(|| header("retry-after").and_then(parse_non_negative))
        .map(Duration::from_secs_f64)
}

fn parse_non_negative(value: &str) -> Option<f64> {
    let n: f64 = value.trim().parse().ok()?;
    // A day is far past any sane Retry-After; refusing it keeps Duration::from_secs_f64 safe.
    (n.is_finite() && (0.0..=86_400.0).contains(&n)).then_some(n)
}

/// A uniformly random number in [0, 1). std's `RandomState` is seeded randomly per process and
/// varies per instance, which is plenty for jitter and spares a dependency on `rand`.
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn rate_limits_and_server_errors_are_retried() {
        for status in [429, 408, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).expect("valid status");
            assert!(is_retryable_status(status, None), "{status}");
        }
        assert!(is_retryable_status(StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_exceeded")));
    }

    #[test]
    fn client_errors_and_an_exhausted_quota_are_not_retried() {
        for status in [400, 401, 403, 404, 422] {
            let status = StatusCode::from_u16(status).expect("valid status");
            assert!(!is_retryable_status(status, None), "{status}");
        }
        assert!(!is_retryable_status(StatusCode::TOO_MANY_REQUESTS, Some("insufficient_quota")));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(retry_after(&headers(&[("retry-after", "1")])), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(&headers(&[("retry-after", " 2.5 ")])), Some(Duration::from_millis(2500)));
        assert_eq!(retry_after(&headers(&[("retry-after", "0")])), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let both = headers(&[("retry-after", "3"), ("retry-after-ms", "250")]);
        assert_eq!(retry_after(&both), Some(Duration::from_millis(250)));
    }

    #[test]
    fn unusable_retry_after_values_are_ignored() {
        assert_eq!(retry_after(&headers(&[])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "NaN")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "1e300")])), None);
        // A bad retry-after-ms falls back to a good retry-after.
        let mixed = headers(&[("retry-after-ms", "soon"), ("retry-after", "2")]);
        assert_eq!(retry_after(&mixed), Some(Duration::from_secs(2)));
    }

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
        };
        for (retry, ceiling_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            let ceiling = Duration::from_millis(ceiling_ms);
            for _ in 0..20 {
                let wait = policy.backoff(retry);
                assert!(wait >= ceiling / 2 && wait <= ceiling, "retry {retry}: {wait:?}");
            }
        }
    }

    #[test]
    fn the_server_s_retry_after_overrides_backoff() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert!(policy.delay(1, None) <= policy.initial_backoff);
    }

    #[test]
    fn jitter_is_not_constant() {
        let draws: std::collections::HashSet<u64> = (0..10).map(|_| random_fraction().to_bits()).collect();
        assert!(draws.len() > 1);
        assert!((0..1000).map(|_| random_fraction()).all(|f| (0.0..1.0).contains(&f)));
    }
}
