//! The identity in a member's MLS basic credential (docs/e2ee-design.md §6):
//! the UTF-8 of `{"p": participant id, "n": display name}`, and for someone
//! signed in also `"l": "member" | "partner"` and `"o": organisation`, as
//! web/e2ee/mls.js builds and parses it and the server checks it
//! (convene-meeting's e2ee/credential.rs). The fields go in that order, as
//! JSON.stringify writes them in the browser.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Participant id.
    pub p: String,
    /// Display name.
    #[serde(default)]
    pub n: String,
    /// How the server verified them (`member` or `partner`); none for a guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l: Option<String>,
    /// The organisation that verified them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o: Option<String>,
}

impl Claims {
    /// A guest's claims: only who they are and the name they typed.
    pub fn guest(participant_id: &str, name: &str) -> Self {
        Claims {
            p: participant_id.into(),
            n: name.into(),
            l: None,
            o: None,
        }
    }

    pub fn to_identity(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings always serialise")
    }

    /// The claims of a credential's identity, or `None` unless it is ours
    /// (JSON with a non-empty `"p"`), as mls.js's parseCredential.
    pub fn parse(identity: &[u8]) -> Option<Self> {
        let c: Claims = serde_json::from_slice(identity).ok()?;
        (!c.p.is_empty()).then_some(c)
    }

    /// The verification level the claims state (`guest` when none).
    pub fn level(&self) -> &str {
        self.l.as_deref().unwrap_or("guest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_credential_is_the_browsers_json() {
        assert_eq!(
            Claims::guest("p1", "Ann").to_identity(),
            br#"{"p":"p1","n":"Ann"}"#
        );
        let signed_in = Claims {
            l: Some("member".into()),
            o: Some("Home Office".into()),
            ..Claims::guest("p2", "Bo \"B\"")
        };
        assert_eq!(
            String::from_utf8(signed_in.to_identity()).unwrap(),
            r#"{"p":"p2","n":"Bo \"B\"","l":"member","o":"Home Office"}"#
        );
        assert_eq!(Claims::parse(&signed_in.to_identity()), Some(signed_in));
    }

    #[test]
    fn anything_else_is_not_a_credential_of_ours() {
        for bad in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"p\":\"\"}",
            b"{\"p\":1}",
            b"\xff",
            b"{\"n\":\"x\"}",
        ] {
            assert_eq!(Claims::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Claims::parse(br#"{"p":"p3"}"#).unwrap().level(), "guest");
    }
}
