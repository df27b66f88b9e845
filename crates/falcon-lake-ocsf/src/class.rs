//! The OCSF classes, activities and enumerations the mapping writes, with their
//! captions, as OCSF 1.5.0 and 1.8.0 define them (`events/iam/*.json`,
//! `events/application/api_activity.json`, `events/base_event.json`,
//! `categories.json`, `dictionary.json`).

/// An OCSF event class the mapping emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Base Event (0): a selected event type with no class of its own.
    Base,
    /// Account Change (3001).
    AccountChange,
    /// Authentication (3002).
    Authentication,
    /// User Access Management (3005).
    UserAccess,
    /// API Activity (6003).
    ApiActivity,
}

/// Every class the mapping emits.
pub const CLASSES: [Class; 5] = [
    Class::Base,
    Class::AccountChange,
    Class::Authentication,
    Class::UserAccess,
    Class::ApiActivity,
];

/// `activity_id` 0 (every class).
pub const ACTIVITY_UNKNOWN: u32 = 0;
/// `activity_id` 99 (every class): an operation the mapping has no activity for.
pub const ACTIVITY_OTHER: u32 = 99;

impl Class {
    /// `class_uid`.
    pub fn uid(self) -> u32 {
        match self {
            Class::Base => 0,
            Class::AccountChange => 3001,
            Class::Authentication => 3002,
            Class::UserAccess => 3005,
            Class::ApiActivity => 6003,
        }
    }

    /// The class with `class_uid` `uid`.
    pub fn from_uid(uid: u64) -> Option<Self> {
        CLASSES.into_iter().find(|c| u64::from(c.uid()) == uid)
    }

    /// `class_name`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Base => "Base Event",
            Class::AccountChange => "Account Change",
            Class::Authentication => "Authentication",
            Class::UserAccess => "User Access Management",
            Class::ApiActivity => "API Activity",
        }
    }

    /// `category_uid`.
    pub fn category_uid(self) -> u32 {
        match self {
            Class::Base => 0,
            Class::AccountChange | Class::Authentication | Class::UserAccess => 3,
            Class::ApiActivity => 6,
        }
    }

    /// `category_name`; the Base Event belongs to no category.
    pub fn category_name(self) -> Option<&'static str> {
        match self.category_uid() {
            3 => Some("Identity & Access Management"),
            6 => Some("Application Activity"),
            _ => None,
        }
    }

    /// The caption of `activity_id` `id`, `None` when the class has no such activity.
    pub fn activity_name(self, id: u32) -> Option<&'static str> {
        let specific: &[&str] = match self {
            Class::Base => &[],
            Class::AccountChange => &[
                "Create",
                "Enable",
                "Password Change",
                "Password Reset",
                "Disable",
                "Delete",
                "Attach Policy",
                "Detach Policy",
                "Lock",
                "MFA Factor Enable",
                "MFA Factor Disable",
                "Unlock",
            ],
            // 1.8.0 adds 7 "Account Switch"; 1.5.0 stops at 6, so 7 is never written.
            Class::Authentication => &[
                "Logon",
                "Logoff",
                "Authentication Ticket",
                "Service Ticket Request",
                "Service Ticket Renew",
                "Preauth",
            ],
            Class::UserAccess => &["Assign Privileges", "Revoke Privileges"],
            Class::ApiActivity => &["Create", "Read", "Update", "Delete"],
        };
        match id {
            ACTIVITY_UNKNOWN => Some("Unknown"),
            ACTIVITY_OTHER => Some("Other"),
            n => specific.get(usize::try_from(n).ok()?.checked_sub(1)?).copied(),
        }
    }
}

/// `status_id` values.
pub mod status {
    /// Unknown.
    pub const UNKNOWN: u32 = 0;
    /// Success.
    pub const SUCCESS: u32 = 1;
    /// Failure.
    pub const FAILURE: u32 = 2;

    /// The caption of a `status_id`.
    pub fn name(id: u32) -> Option<&'static str> {
        match id {
            0 => Some("Unknown"),
            1 => Some("Success"),
            2 => Some("Failure"),
            99 => Some("Other"),
            _ => None,
        }
    }
}

/// `severity_id` values.
pub mod severity {
    /// Informational: every Falcon audit event is a record of what happened.
    pub const INFORMATIONAL: u32 = 1;

    /// The caption of a `severity_id`.
    pub fn name(id: u32) -> Option<&'static str> {
        match id {
            0 => Some("Unknown"),
            1 => Some("Informational"),
            2 => Some("Low"),
            3 => Some("Medium"),
            4 => Some("High"),
            5 => Some("Critical"),
            6 => Some("Fatal"),
            99 => Some("Other"),
            _ => None,
        }
    }
}

/// `user.type_id` values present in both 1.5.0 and 1.8.0 (1.8.0 adds 4 Service).
pub mod user_type {
    /// Unknown.
    pub const UNKNOWN: u32 = 0;
    /// User.
    pub const USER: u32 = 1;
    /// System.
    pub const SYSTEM: u32 = 3;
    /// Other (with `type` naming it: an API client).
    pub const OTHER: u32 = 99;

    /// True for a `type_id` both versions define.
    pub fn is_known(id: u64) -> bool {
        matches!(id, 0..=3 | 99)
    }
}

/// `logon_type_id` 10.
pub const LOGON_REMOTE_INTERACTIVE: u32 = 10;
/// `auth_protocol_id` 5.
pub const AUTH_PROTOCOL_SAML: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_follow_the_schema() {
        assert_eq!(Class::Authentication.activity_name(1), Some("Logon"));
        assert_eq!(Class::Authentication.activity_name(7), None, "1.8.0 only");
        assert_eq!(Class::AccountChange.activity_name(12), Some("Unlock"));
        assert_eq!(Class::UserAccess.activity_name(3), None);
        assert_eq!(Class::ApiActivity.activity_name(99), Some("Other"));
        assert_eq!(Class::Base.activity_name(1), None);
        for class in CLASSES {
            assert_eq!(Class::from_uid(u64::from(class.uid())), Some(class));
        }
    }
}
