//! What the AWS emulators share: a request-rate token bucket, request ids,
//! and failure-rate flags (`kind=probability,…`).

use std::time::Instant;

use axum::http::HeaderValue;

/// A token bucket of requests: `rate` per second, up to `capacity` at once.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, capacity: f64) -> Self {
        let capacity = capacity.max(1.0);
        Self {
            tokens: capacity,
            capacity,
            rate: rate.max(0.001),
            refilled: Instant::now(),
        }
    }

    /// Takes a token; false means throttle.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.rate).min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A fresh `x-amzn-RequestId` value.
pub fn request_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap_or(HeaderValue::from_static("0"))
}

/// Random whole-request failure probabilities; each emulator names the kinds it
/// offers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestFailureRates {
    /// HTTP 500 `InternalFailure`.
    pub http500: f64,
    /// HTTP 503 (`ServiceUnavailable`, `ServiceUnavailableException`).
    pub http503: f64,
    /// HTTP 400 `ThrottlingException`, besides the token bucket.
    pub throttle: f64,
    /// A 200 whose body is not JSON (after storing the events).
    pub malformed: f64,
    /// A slow answer (after storing the events).
    pub slow: f64,
}

/// Parses `kind=p,…` for the `known` kinds (`500`, `503`, `throttle`, `malformed`, `slow`).
pub fn parse_request_rates(text: &str, known: &[&str]) -> Result<RequestFailureRates, String> {
    let mut rates = RequestFailureRates::default();
    for (kind, p) in parse_rates(text, known)? {
        let slot = match kind.as_str() {
            "500" => &mut rates.http500,
            "503" => &mut rates.http503,
            "throttle" => &mut rates.throttle,
            "malformed" => &mut rates.malformed,
            _ => &mut rates.slow,
        };
        *slot = p;
    }
    Ok(rates)
}

/// Parses `kind=probability,…`, each kind one of `known`.
pub fn parse_rates(text: &str, known: &[&str]) -> Result<Vec<(String, f64)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not kind=probability"))?;
            let kind = k.trim();
            if !known.contains(&kind) {
                return Err(format!("unknown failure {kind:?}; known: {}", known.join(", ")));
            }
            let p: f64 = v.trim().parse().map_err(|_| format!("{pair:?}: not a number"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{pair:?}: probability must be between 0 and 1"));
            }
            Ok((kind.to_string(), p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_their_capacity_then_throttle() {
        let mut bucket = TokenBucket::new(0.001, 3.0);
        assert_eq!((0..5).filter(|_| bucket.take()).count(), 3);
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rates("a=0.5, b=0", &["a", "b"]),
            Ok(vec![("a".to_string(), 0.5), ("b".to_string(), 0.0)])
        );
        assert!(parse_rates("c=0.1", &["a"]).is_err());
        assert!(parse_rates("a=2", &["a"]).is_err());
        assert!(parse_rates("a", &["a"]).is_err());
    }
}
