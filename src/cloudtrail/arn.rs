//! CloudTrail channel ARNs: `arn:<partition>:cloudtrail:<region>:<account>:channel/<id>`.

use std::fmt;
use std::str::FromStr;

/// A parsed channel ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelArn {
    /// The full ARN as given.
    pub arn: String,
    /// AWS partition (`aws`, `aws-us-gov`, `aws-cn`).
    pub partition: String,
    /// Region of the channel (and of the `PutAuditEvents` endpoint).
    pub region: String,
    /// 12-digit account that owns the channel (the events' `recipientAccountId`).
    pub account: String,
    /// Channel ID (the ARN's suffix).
    pub channel_id: String,
}

impl FromStr for ChannelArn {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts.as_slice() else {
            return Err(format!(
                "{text:?} is not an ARN (arn:aws:cloudtrail:<region>:<account>:channel/<id>)"
            ));
        };
        if *arn != "arn" || partition.is_empty() {
            return Err(format!("{text:?} is not an ARN (it must start with arn:aws:)"));
        }
        if *service != "cloudtrail" {
            return Err(format!(
                "{text:?} is an ARN of service {service:?}, not of a CloudTrail channel"
            ));
        }
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("{text:?} has no valid region"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{text:?}: the account {account:?} is not a 12-digit AWS account ID"
            ));
        }
        let channel_id = resource
            .strip_prefix("channel/")
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .ok_or_else(|| format!("{text:?} is not a channel ARN: the resource must be channel/<id>"))?;
        Ok(Self {
            arn: text.to_string(),
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            channel_id: channel_id.to_string(),
        })
    }
}

impl fmt::Display for ChannelArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_channel_arns() {
        let arn: ChannelArn = "arn:aws:cloudtrail:us-east-1:111122223333:channel/01234567-89ab-cdef-0123-456789abcdef"
            .parse()
            .expect("valid");
        assert_eq!(arn.region, "us-east-1");
        assert_eq!(arn.account, "111122223333");
        assert_eq!(arn.channel_id, "01234567-89ab-cdef-0123-456789abcdef");
    }

    #[test]
    fn explains_what_is_wrong() {
        for (text, says) in [
            ("channel/abc", "not an ARN"),
            (
                "arn:aws:s3:us-east-1:111122223333:channel/x",
                "not of a CloudTrail channel",
            ),
            ("arn:aws:cloudtrail:us-east-1:1111:channel/x", "12-digit"),
            (
                "arn:aws:cloudtrail:us-east-1:111122223333:eventdatastore/x",
                "not a channel ARN",
            ),
            ("arn:aws:cloudtrail::111122223333:channel/x", "region"),
        ] {
            let err = text.parse::<ChannelArn>().expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
