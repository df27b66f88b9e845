//! Shape validation of requests, answered as AWS does:
//! `InvalidParameterException` "1 validation error detected: Value '…' at
//! '<path>' failed to satisfy constraint: …" (several joined with `; `).

use serde_json::{Map, Value};

use crate::cloudwatch::api::ApiError;

/// Log group names: `[\.\-_/#A-Za-z0-9]+`.
pub const GROUP_PATTERN: &str = "[\\.\\-_/#A-Za-z0-9]+";
/// Log stream names: `[^:*]*`.
pub const STREAM_PATTERN: &str = "[^:*]*";

/// A pattern constraint: its text as AWS prints it, and the characters it allows.
pub type Pattern<'a> = Option<(&'a str, fn(char) -> bool)>;

/// The violations found in one request.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "null".to_string(),
        Some(Value::String(s)) => format!("'{s}'"),
        Some(other) => format!("'{other}'"),
    }
}

impl Violations {
    /// Records that `value` at `path` breaks `constraint`.
    pub fn push(&mut self, value: Option<&Value>, path: &str, constraint: &str) {
        self.0.push(format!(
            "Value {} at '{path}' failed to satisfy constraint: {constraint}",
            shown(value)
        ));
    }

    /// `Ok` when there were none, else AWS's answer listing them all.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(ApiError::invalid(format!("1 validation error detected: {}", self.0[0]))),
            n => Err(ApiError::invalid(format!(
                "{n} validation errors detected: {}",
                self.0.join("; ")
            ))),
        }
    }

    /// A required string of `min..=max` characters matching `pattern`.
    pub fn string<'a>(
        &mut self,
        body: &'a Map<String, Value>,
        path: &str,
        bounds: (usize, usize),
        pattern: Pattern<'_>,
    ) -> Option<&'a str> {
        let text = self.optional_string(body, path, bounds, pattern);
        if body.get(path).is_none_or(Value::is_null) {
            self.push(body.get(path), path, "Member must not be null");
        }
        text
    }

    /// An optional string, checked like [`Self::string`] when present.
    pub fn optional_string<'a>(
        &mut self,
        body: &'a Map<String, Value>,
        path: &str,
        (min, max): (usize, usize),
        pattern: Pattern<'_>,
    ) -> Option<&'a str> {
        let value = body.get(path).filter(|v| !v.is_null())?;
        let Some(text) = value.as_str() else {
            self.push(Some(value), path, "Member must be a string");
            return None;
        };
        self.check_string(Some(value), text, path, (min, max), pattern);
        Some(text)
    }

    fn check_string(
        &mut self,
        value: Option<&Value>,
        text: &str,
        path: &str,
        (min, max): (usize, usize),
        pattern: Pattern<'_>,
    ) {
        let length = text.chars().count();
        if length < min {
            self.push(
                value,
                path,
                &format!("Member must have length greater than or equal to {min}"),
            );
        }
        if length > max {
            self.push(
                value,
                path,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
        if let Some((pattern, allowed)) = pattern {
            if !text.chars().all(allowed) {
                self.push(
                    value,
                    path,
                    &format!("Member must satisfy regular expression pattern: {pattern}"),
                );
            }
        }
    }

    /// An optional integer within `min..=max`.
    pub fn optional_int(&mut self, body: &Map<String, Value>, path: &str, min: i64, max: i64) -> Option<i64> {
        let value = body.get(path).filter(|v| !v.is_null())?;
        let Some(n) = value.as_i64() else {
            self.push(Some(value), path, "Member must be a number");
            return None;
        };
        if n < min {
            self.push(
                Some(value),
                path,
                &format!("Member must have value greater than or equal to {min}"),
            );
        }
        if n > max {
            self.push(
                Some(value),
                path,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
        Some(n)
    }

    /// An optional boolean.
    pub fn optional_bool(&mut self, body: &Map<String, Value>, path: &str) -> Option<bool> {
        let value = body.get(path).filter(|v| !v.is_null())?;
        let b = value.as_bool();
        if b.is_none() {
            self.push(Some(value), path, "Member must be a boolean");
        }
        b
    }
}

/// A character of a log group name.
pub fn group_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ".-_/#".contains(c)
}

/// A character of a log stream name.
pub fn stream_char(c: char) -> bool {
    c != ':' && c != '*'
}

/// The group name in a `logGroupIdentifier` (a name or an ARN, with or without `:*`).
pub fn group_from_identifier(identifier: &str) -> &str {
    match identifier.split_once(":log-group:") {
        Some((_, rest)) => rest.strip_suffix(":*").unwrap_or(rest),
        None => identifier,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_use_aws_wording() {
        let body = json!({"logGroupName": "a b", "limit": 0})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut v = Violations::default();
        v.string(&body, "logGroupName", (1, 512), Some((GROUP_PATTERN, group_char)));
        v.string(&body, "logStreamName", (1, 512), Some((STREAM_PATTERN, stream_char)));
        v.optional_int(&body, "limit", 1, 50);
        let err = v.finish().expect_err("invalid");
        assert_eq!(err.code, "InvalidParameterException");
        assert!(err.message.starts_with("3 validation errors detected: Value 'a b' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+; Value null at 'logStreamName' failed to satisfy constraint: Member must not be null"), "{}", err.message);
        assert!(Violations::default().finish().is_ok());
    }

    #[test]
    fn identifiers_are_names_or_arns() {
        assert_eq!(group_from_identifier("/falcon/audit"), "/falcon/audit");
        assert_eq!(
            group_from_identifier("arn:aws:logs:us-east-1:1:log-group:/falcon/audit:*"),
            "/falcon/audit"
        );
        assert_eq!(group_from_identifier("arn:aws:logs:us-east-1:1:log-group:g"), "g");
    }
}
