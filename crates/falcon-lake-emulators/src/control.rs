//! Rules every emulator's control side follows: where it may listen, and how
//! large a `count` its control endpoints take.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// Most faults one `POST /_emulator/faults?count=N` queues.
pub const MAX_FAULTS: u64 = 10_000;
/// Most events one `POST /_emulator/events/generate?count=N` generates.
pub const MAX_GENERATE: u64 = 100_000;

/// Refuses a non-loopback `listen` address unless `allow_remote`: the
/// emulators accept test credentials and answer a control API, so they are
/// meant for this machine only.
pub fn check_listen(listen: SocketAddr, allow_remote: bool) -> anyhow::Result<()> {
    if listen.ip().is_loopback() || allow_remote {
        return Ok(());
    }
    anyhow::bail!(
        "--listen {listen} is not a loopback address; the emulators are for this machine only (test credentials, an open control API). Use 127.0.0.1, or add --allow-remote if you really mean it"
    )
}

/// Reads `key` from `query` as a count in `1..=max` (`default` when absent);
/// anything else is a 400 naming the parameter and the limit.
pub fn count(query: &HashMap<String, String>, key: &str, default: u64, max: u64) -> Result<u64, Response> {
    let Some(text) = query.get(key) else { return Ok(default) };
    match text.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err((
            StatusCode::BAD_REQUEST,
            format!("{key} must be a whole number from 1 to {max}, got {text:?}"),
        )
            .into_response()),
    }
}

/// `POST /_emulator/faults?count=N` (N ≤ [`MAX_FAULTS`]): parses the fault in
/// `body` and hands it to `push` with its count.
pub fn queue_faults<F: DeserializeOwned>(
    query: &HashMap<String, String>,
    body: &[u8],
    push: impl FnOnce(F, u64),
) -> Response {
    let count = match count(query, "count", 1, MAX_FAULTS) {
        Ok(count) => count,
        Err(refused) => return refused,
    };
    match serde_json::from_slice::<F>(body) {
        Ok(fault) => {
            push(fault, count);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("not a fault: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        assert!(check_listen("127.0.0.1:0".parse().expect("addr"), false).is_ok());
        assert!(check_listen("[::1]:0".parse().expect("addr"), false).is_ok());
        let err = check_listen("0.0.0.0:8080".parse().expect("addr"), false).expect_err("refused");
        assert!(err.to_string().contains("--allow-remote"));
        assert!(check_listen("0.0.0.0:8080".parse().expect("addr"), true).is_ok());
    }

    #[test]
    fn counts_are_bounded() {
        let q = |v: &str| HashMap::from([("count".to_string(), v.to_string())]);
        assert_eq!(count(&HashMap::new(), "count", 1, 10).ok(), Some(1));
        assert_eq!(count(&q("10"), "count", 1, 10).ok(), Some(10));
        for bad in ["11", "0", "-1", "lots", "99999999999999999999999"] {
            let refused = count(&q(bad), "count", 1, 10).expect_err(bad);
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
