//! AWS Signature Version 4 verification, as AWS services perform it: the
//! canonical request, the credential scope (the service's signing name), the
//! signing-key chain and a 15-minute clock-skew window.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Largest clock difference accepted.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path, as sent (already percent-encoded).
    pub path: &'a str,
    /// Raw query string (without `?`).
    pub query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Body.
    pub body: &'a [u8],
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Access key ID.
    pub access_key: String,
    /// Region of the credential scope.
    pub region: String,
}

/// Why a signature was refused, with AWS's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureError {
    /// `MissingAuthenticationTokenException`, `IncompleteSignatureException`,
    /// `UnrecognizedClientException` or `InvalidSignatureException`.
    pub code: &'static str,
    /// Message as AWS phrases it.
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> SignatureError {
    SignatureError {
        code,
        message: message.into(),
    }
}

/// Verifies `request` for `service` against the known `keys` (access key → secret).
pub fn verify(
    request: &SignedRequest<'_>,
    service: &str,
    keys: &HashMap<String, String>,
    now: SystemTime,
) -> Result<Caller, SignatureError> {
    let authorization = header(request.headers, "authorization")
        .ok_or_else(|| refuse("MissingAuthenticationTokenException", "Missing Authentication Token"))?;
    let auth = parse_authorization(&authorization)?;
    let scope: Vec<&str> = auth.credential.split('/').collect();
    let [access_key, date, region, scope_service, terminal] = scope.as_slice() else {
        return Err(refuse(
            "IncompleteSignatureException",
            format!("Credential {} is not well formed", auth.credential),
        ));
    };
    if *terminal != "aws4_request" {
        return Err(refuse(
            "IncompleteSignatureException",
            "Credential should be scoped with a valid terminator: 'aws4_request'.",
        ));
    }
    if *scope_service != service {
        return Err(refuse(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{service}'."),
        ));
    }
    let secret = keys.get(*access_key).ok_or_else(|| {
        refuse(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    })?;
    let amz_date = header(request.headers, "x-amz-date").ok_or_else(|| {
        refuse(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    check_date(&amz_date, date, now)?;
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(refuse("InvalidSignatureException", "'Host' must be a signed header."));
    }
    let canonical = canonical_request(request, &auth.signed_headers);
    let credential_scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let expected = signature(secret, date, region, service, &string_to_sign);
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(refuse(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(Caller {
        access_key: access_key.to_string(),
        region: region.to_string(),
    })
}

struct Authorization {
    credential: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(value: &str) -> Result<Authorization, SignatureError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        refuse(
            "IncompleteSignatureException",
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm.",
        )
    })?;
    let mut parts: HashMap<&str, &str> = HashMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            parts.insert(k, v);
        }
    }
    let get = |name: &str| {
        parts.get(name).map(|v| v.to_string()).ok_or_else(|| {
            refuse(
                "IncompleteSignatureException",
                format!("Authorization header requires '{name}' parameter."),
            )
        })
    };
    Ok(Authorization {
        credential: get("Credential")?,
        signed_headers: get("SignedHeaders")?.split(';').map(str::to_string).collect(),
        signature: get("Signature")?,
    })
}

fn check_date(amz_date: &str, scope_date: &str, now: SystemTime) -> Result<(), SignatureError> {
    let signed = parse_amz_date(amz_date).ok_or_else(|| {
        refuse(
            "IncompleteSignatureException",
            format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ"),
        )
    })?;
    if !amz_date.starts_with(scope_date) {
        return Err(refuse(
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.",
        ));
    }
    let now_secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if (now_secs - signed).unsigned_abs() > MAX_SKEW.as_secs() {
        return Err(refuse(
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is now earlier or later than 15 min from now."),
        ));
    }
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` → epoch seconds.
fn parse_amz_date(text: &str) -> Option<i64> {
    if text.len() != 16 || !text.is_ascii() {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    (text.as_bytes()[8] == b'T' && text.ends_with('Z')).then_some(())?;
    crate::time::parse_utc(&iso)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The canonical request of SigV4.
pub fn canonical_request(request: &SignedRequest<'_>, signed_headers: &[String]) -> String {
    let mut headers_block = String::new();
    for name in signed_headers {
        headers_block.push_str(name);
        headers_block.push(':');
        headers_block.push_str(&header(request.headers, name).unwrap_or_default());
        headers_block.push('\n');
    }
    let payload =
        header(request.headers, "x-amz-content-sha256").unwrap_or_else(|| hex::encode(Sha256::digest(request.body)));
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
        headers_block,
        signed_headers.join(";"),
        payload
    )
}

/// Services other than S3 encode the (already encoded) path once more.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (encode(&k), encode(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// URI-encodes everything but the unreserved characters, as SigV4 requires.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The SigV4 signature of `string_to_sign`.
pub fn signature(secret: &str, date: &str, region: &str, service: &str, string_to_sign: &str) -> String {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; new_from_slice only fails for fixed-size MACs.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn vanilla_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().expect("header"));
        h.insert("x-amz-date", "20150830T123600Z".parse().expect("header"));
        h
    }

    /// `GET /` with `headers`, as the `get-vanilla` case sends it.
    fn vanilla_get(headers: &HeaderMap) -> SignedRequest<'_> {
        SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers,
            body: b"",
        }
    }

    /// The signature of `get-vanilla` over `headers`, computed step by step.
    fn vanilla_signature(headers: &HeaderMap) -> String {
        let canonical = canonical_request(&vanilla_get(headers), &["host".to_string(), "x-amz-date".to_string()]);
        let sts = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        signature(SECRET, "20150830", "us-east-1", "service", &sts)
    }

    /// AWS's SigV4 test suite, case `get-vanilla`.
    #[test]
    fn matches_the_aws_test_suite() {
        assert_eq!(
            vanilla_signature(&vanilla_headers()),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn verifies_and_refuses() {
        let mut headers = vanilla_headers();
        let keys = HashMap::from([("AKIDEXAMPLE".to_string(), SECRET.to_string())]);
        let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let sig = vanilla_signature(&headers);
        let auth = format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}");
        headers.insert("authorization", auth.parse().expect("header"));
        let request = vanilla_get(&headers);
        assert_eq!(
            verify(&request, "service", &keys, now).map(|c| c.region),
            Ok("us-east-1".to_string())
        );
        assert_eq!(
            verify(&request, "other", &keys, now).map_err(|e| e.code),
            Err("InvalidSignatureException")
        );
        let tampered = SignedRequest { body: b"x", ..request };
        assert_eq!(
            verify(&tampered, "service", &keys, now).map_err(|e| e.code),
            Err("InvalidSignatureException")
        );
        let late = now + Duration::from_secs(3600);
        assert!(verify(&request, "service", &keys, late)
            .map_err(|e| e.message)
            .err()
            .is_some_and(|m| m.contains("expired")));
        let strangers = HashMap::new();
        assert_eq!(
            verify(&request, "service", &strangers, now).map_err(|e| e.code),
            Err("UnrecognizedClientException")
        );
        let empty = HeaderMap::new();
        let unsigned = SignedRequest {
            headers: &empty,
            ..request
        };
        assert_eq!(
            verify(&unsigned, "service", &keys, now).map_err(|e| e.code),
            Err("MissingAuthenticationTokenException")
        );
    }

    #[test]
    fn canonical_query_sorts_and_encodes() {
        assert_eq!(canonical_query("b=2&a=x%3Ay%2Fz&a=1"), "a=1&a=x%3Ay%2Fz&b=2");
        assert_eq!(canonical_uri("/PutAuditEvents"), "/PutAuditEvents");
    }
}
