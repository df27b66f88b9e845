//! A shared, adaptive request-rate limit: a token bucket at the configured rate
//! (the destination's request quota) that slows down when the destination
//! throttles and recovers gradually, to sit close to the quota without tripping
//! it for long.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Share of the rate cut on each throttling answer.
const DECREASE: f64 = 0.7;
/// Share of the configured rate regained per second without throttling.
const INCREASE_PER_SECOND: f64 = 0.05;
/// Lowest rate the limiter slows down to.
const MIN_RATE: f64 = 1.0;

/// Token bucket shared by all requests of a publisher.
#[derive(Debug)]
pub struct RateLimiter {
    max_rate: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rate: f64,
    tokens: f64,
    burst: f64,
    refilled: Instant,
    raised: Instant,
}

impl RateLimiter {
    /// A limiter of `max_rate` requests per second, allowing a burst of a tenth of a second.
    pub fn new(max_rate: f64) -> Self {
        let max_rate = max_rate.max(MIN_RATE);
        let burst = (max_rate / 10.0).max(1.0);
        let now = Instant::now();
        Self {
            max_rate,
            state: Mutex::new(State {
                rate: max_rate,
                tokens: burst,
                burst,
                refilled: now,
                raised: now,
            }),
        }
    }

    /// Waits for permission to send one request.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.lock();
                let now = Instant::now();
                state.refill(now);
                state.raise(now, self.max_rate);
                if state.tokens >= 1.0 {
                    state.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - state.tokens) / state.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The destination answered with throttling: slow down.
    pub fn throttled(&self) {
        let mut state = self.lock();
        state.rate = (state.rate * DECREASE).max(MIN_RATE);
        state.tokens = state.tokens.min(0.0);
        state.raised = Instant::now();
    }

    /// The current rate, requests per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
    }

    fn raise(&mut self, now: Instant, max_rate: f64) {
        let elapsed = now.duration_since(self.raised).as_secs_f64();
        if elapsed >= 1.0 && self.rate < max_rate {
            self.rate = (self.rate + max_rate * INCREASE_PER_SECOND * elapsed).min(max_rate);
            self.raised = now;
        } else if self.rate >= max_rate {
            self.raised = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate() {
        let limiter = RateLimiter::new(100.0);
        let began = Instant::now();
        for _ in 0..510 {
            limiter.acquire().await;
        }
        let elapsed = began.elapsed().as_secs_f64();
        assert!((4.9..5.2).contains(&elapsed), "510 requests at 100/s took {elapsed}s");
    }

    #[tokio::test(start_paused = true)]
    async fn slows_down_on_throttling_and_recovers() {
        let limiter = RateLimiter::new(100.0);
        limiter.throttled();
        limiter.throttled();
        assert!((limiter.rate() - 49.0).abs() < 0.01);
        tokio::time::sleep(Duration::from_secs(5)).await;
        limiter.acquire().await;
        assert!(limiter.rate() > 70.0, "{}", limiter.rate());
        tokio::time::sleep(Duration::from_secs(30)).await;
        limiter.acquire().await;
        assert_eq!(limiter.rate(), 100.0);
    }
}
