//! What a member's MLS credential says about them (docs/e2ee-design.md §6),
//! checked against what the server verified, before their key package goes
//! to anyone.
//!
//! A basic credential's identity is the UTF-8 of a JSON object:
//! `{"p": participant id, "n": display name}` for a guest, and for someone
//! signed in also `"l": "member" | "partner"` and `"o": the organisation that
//! verified them`, as the roster shows them (`identity.level` and
//! `identity.organisation`). The credential is in the group's ratchet tree,
//! which the epoch authenticator (so the verification code) covers: people
//! who compare codes also agree on who in the group was verified, and by whom.
//! Members check the same rule against the roster (web/e2ee/mls.js's
//! `rosterHas`), so a server that lies to one member is caught by the others.

use serde::Deserialize;

use crate::identity::{Identity, Level};
use crate::room::ParticipantId;

#[derive(Deserialize)]
struct Claims {
    p: Option<String>,
    l: Option<String>,
    o: Option<String>,
}

/// Why a credential does not fit its sender.
pub type Mismatch = &'static str;

/// Whether `credential` (a basic credential's identity bytes) names `who`, with
/// the verification the server holds for them and no other.
pub fn check(credential: &[u8], who: &ParticipantId, identity: &Identity) -> Result<(), Mismatch> {
    let Ok(claims) = serde_json::from_slice::<Claims>(credential) else {
        return Err("its credential is not the JSON Convene uses");
    };
    if claims.p.as_deref() != Some(who.0.as_str()) {
        return Err("its credential must name you (\"p\": your participant id)");
    }
    let level = match identity.level {
        Level::Member => Some("member"),
        Level::Partner => Some("partner"),
        Level::Guest => None,
    };
    // A guest's credential claims no verification ("l": "guest" is the same).
    let claimed = claims.l.as_deref().filter(|l| *l != "guest");
    if claimed != level {
        return Err(if level.is_some() {
            "its credential must say how you signed in (\"l\": your identity's level)"
        } else {
            "its credential claims a sign-in you did not make (\"l\")"
        });
    }
    let organisation = identity.organisation.as_deref().filter(|_| level.is_some());
    if claims.o.as_deref() != organisation {
        return Err(
            "its credential must name the organisation that verified you, and only that (\"o\")",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> ParticipantId {
        ParticipantId("p1".into())
    }

    fn member(org: &str) -> Identity {
        Identity {
            level: Level::Member,
            organisation: Some(org.into()),
            name: Some("Ana".into()),
            mfa: true,
            subject: Some("ana@example.org".into()),
        }
    }

    #[test]
    fn a_guest_names_only_themselves() {
        let guest = Identity::guest();
        assert_eq!(check(br#"{"p":"p1","n":"Gus"}"#, &who(), &guest), Ok(()));
        assert_eq!(
            check(br#"{"p":"p1","n":"Gus","l":"guest"}"#, &who(), &guest),
            Ok(())
        );
        assert!(check(br#"{"p":"p2","n":"Gus"}"#, &who(), &guest).is_err());
        assert!(check(br#"{"n":"Gus"}"#, &who(), &guest).is_err());
        // A guest claiming a sign-in, or an organisation, is refused.
        assert!(check(
            br#"{"p":"p1","n":"Gus","l":"member","o":"Home"}"#,
            &who(),
            &guest
        )
        .is_err());
        assert!(check(br#"{"p":"p1","n":"Gus","o":"Home"}"#, &who(), &guest).is_err());
    }

    #[test]
    fn someone_signed_in_says_so_truly() {
        let ana = member("Home Office");
        assert_eq!(
            check(
                br#"{"p":"p1","n":"Ana","l":"member","o":"Home Office"}"#,
                &who(),
                &ana
            ),
            Ok(())
        );
        // Leaving it out would make them look like a guest to the others.
        assert!(check(br#"{"p":"p1","n":"Ana"}"#, &who(), &ana).is_err());
        assert!(check(
            br#"{"p":"p1","n":"Ana","l":"partner","o":"Home Office"}"#,
            &who(),
            &ana
        )
        .is_err());
        assert!(check(
            br#"{"p":"p1","n":"Ana","l":"member","o":"Other"}"#,
            &who(),
            &ana
        )
        .is_err());
        assert!(check(br#"{"p":"p1","n":"Ana","l":"member"}"#, &who(), &ana).is_err());
        let mut partner = member("Partner Dept");
        partner.level = Level::Partner;
        assert_eq!(
            check(
                br#"{"p":"p1","n":"Ana","l":"partner","o":"Partner Dept"}"#,
                &who(),
                &partner
            ),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_refused_without_a_panic() {
        let guest = Identity::guest();
        for bad in [
            &b""[..],
            b"null",
            b"[]",
            b"\"p1\"",
            b"{\"p\":1}",
            b"\xff\xfe",
            b"{\"p\":\"p1\",\"l\":7}",
        ] {
            assert!(check(bad, &who(), &guest).is_err(), "{bad:?}");
        }
    }
}
