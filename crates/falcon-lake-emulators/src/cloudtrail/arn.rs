//! Channel ARNs as the service reads them:
//! `arn:<partition>:cloudtrail:<region>:<account>:channel/<id>`.

use std::str::FromStr;

/// A channel ARN, split into the parts the emulator checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelArn {
    /// The ARN as configured.
    pub arn: String,
    /// Region of the channel.
    pub region: String,
    /// The 12-digit account that owns the channel.
    pub account: String,
}

impl FromStr for ChannelArn {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = text.splitn(6, ':').collect();
        let ["arn", partition, "cloudtrail", region, account, resource] = fields.as_slice() else {
            return Err(format!("{text:?} is not a CloudTrail ARN"));
        };
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let id_ok = resource
            .strip_prefix("channel/")
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if partition.is_empty() || !region_ok || !account_ok || !id_ok {
            return Err(format!("{text:?} is not a channel ARN"));
        }
        Ok(Self {
            arn: text.to_string(),
            region: region.to_string(),
            account: account.to_string(),
        })
    }
}
