//! Who someone is, as far as the server could verify: a member of the home
//! organisation, a member of a trusted partner organisation, or an unverified
//! guest whose name is self-declared. The edge establishes it (OpenID Connect
//! sign-in); the meeting shows it wherever a name appears and applies the
//! meeting's rules to it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Verified by the home organisation's provider.
    Member,
    /// Verified by a trusted partner organisation's provider.
    Partner,
    /// Not verified: the name is what they typed.
    Guest,
}

/// A verified (or not) person, as the edge established it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub level: Level,
    /// The organisation that verified them (members and partners).
    pub organisation: Option<String>,
    /// The name their organisation gives them (members and partners).
    pub name: Option<String>,
    /// Their organisation's sign-in used more than one factor.
    pub mfa: bool,
    /// What the audit log calls them: the email address or the provider's
    /// subject identifier (members and partners).
    pub subject: Option<String>,
}

impl Identity {
    pub fn guest() -> Self {
        Identity {
            level: Level::Guest,
            organisation: None,
            name: None,
            mfa: false,
            subject: None,
        }
    }

    pub fn is_verified(&self) -> bool {
        self.level != Level::Guest
    }

    /// As the audit log records it.
    pub fn describe(&self) -> String {
        match (self.level, &self.organisation, &self.subject) {
            (Level::Guest, _, _) => "guest (unverified)".into(),
            (level, org, subject) => format!(
                "{} of {}: {}, {}",
                if level == Level::Member {
                    "member"
                } else {
                    "partner"
                },
                org.as_deref().unwrap_or("?"),
                subject.as_deref().unwrap_or("?"),
                if self.mfa {
                    "multi-factor"
                } else {
                    "single-factor"
                }
            ),
        }
    }
}

/// Who skips the lobby without waiting for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LobbyBypass {
    #[default]
    Nobody,
    Members,
    MembersAndPartners,
}

impl LobbyBypass {
    pub fn lets_in(self, level: Level) -> bool {
        match self {
            LobbyBypass::Nobody => false,
            LobbyBypass::Members => level == Level::Member,
            LobbyBypass::MembersAndPartners => level != Level::Guest,
        }
    }
}

/// What everyone sees of someone's identity (the MFA flag only reaches hosts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub level: Level,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa: Option<bool>,
}

impl Verification {
    pub fn of(identity: &Identity) -> Self {
        Verification {
            level: identity.level,
            organisation: identity.organisation.clone(),
            mfa: identity.is_verified().then_some(identity.mfa),
        }
    }

    /// Without what only hosts may see.
    pub fn public(mut self) -> Self {
        self.mfa = None;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lobby_bypass_by_level() {
        use Level::*;
        let allowed = |b: LobbyBypass| {
            [Member, Partner, Guest]
                .into_iter()
                .filter(|l| b.lets_in(*l))
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(LobbyBypass::Nobody), vec![]);
        assert_eq!(allowed(LobbyBypass::Members), vec![Member]);
        assert_eq!(
            allowed(LobbyBypass::MembersAndPartners),
            vec![Member, Partner]
        );
    }

    #[test]
    fn guests_carry_no_mfa_flag_and_public_views_drop_it() {
        assert_eq!(Verification::of(&Identity::guest()).mfa, None);
        let member = Identity {
            level: Level::Member,
            organisation: Some("Home".into()),
            name: Some("Alice".into()),
            mfa: true,
            subject: Some("alice@home.example".into()),
        };
        assert_eq!(Verification::of(&member).mfa, Some(true));
        assert_eq!(Verification::of(&member).public().mfa, None);
        assert_eq!(
            member.describe(),
            "member of Home: alice@home.example, multi-factor"
        );
    }
}
