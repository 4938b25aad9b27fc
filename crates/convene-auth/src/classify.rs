//! From verified ID-token claims to a meeting identity: member, partner, or
//! guest. Pure: the claims have already passed signature, issuer, audience,
//! expiry and nonce checks (see `verify`).

use convene_meeting::identity::{Identity, Level};

use crate::config::{Kind, Organisation};

/// What Convene reads from an ID token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
}

/// RFC 8176 methods that prove possession or inherence: with any other
/// method (a password, a PIN) they make a second factor. Knowledge-only pairs
/// (`pwd` + `kba`) and mere presence (`user`) do not count.
const SECOND_FACTORS: &[&str] = &[
    "hwk", "swk", "otp", "sms", "tel", "fpt", "face", "iris", "retina", "vbm", "sc", "pop",
];

/// Whether the sign-in used more than one factor, by `amr` (RFC 8176) or by an
/// `acr` value the organisation declared multi-factor.
pub fn is_multi_factor(claims: &Claims, org: &Organisation) -> bool {
    let amr = |m: &str| claims.amr.iter().any(|a| a == m);
    let possession = claims
        .amr
        .iter()
        .find(|a| SECOND_FACTORS.contains(&a.as_str()));
    let another = |p: &String| claims.amr.iter().any(|a| a != p && a != "user");
    amr("mfa")
        || possession.is_some_and(another)
        || claims
            .acr
            .as_ref()
            .is_some_and(|acr| org.provider.mfa_acr_values.contains(acr))
}

/// The identity these claims give, signed by `org`'s provider. The email
/// domain must be one of `org`'s: a provider vouches only for its own people,
/// so anyone else it signs in is a guest. So must the address be verified: by
/// `email_verified: true`, or, for a provider configured to be trusted without
/// the claim, by its absence.
pub fn classify(org: &Organisation, claims: &Claims) -> Identity {
    let verified = match claims.email_verified {
        Some(v) => v,
        None => org.provider.assume_email_verified,
    };
    let domain = claims
        .email
        .as_deref()
        .filter(|_| verified)
        .and_then(|e| e.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase());
    let belongs = domain.is_some_and(|d| org.domains.contains(&d));
    if !belongs {
        return Identity::guest();
    }
    Identity {
        level: match org.kind {
            Kind::Home => Level::Member,
            Kind::Partner => Level::Partner,
        },
        organisation: Some(org.name.clone()),
        // Without a name claim, the address's local part: the whole address
        // would be shown to everyone in the meeting.
        name: claims.name.clone().or_else(|| {
            claims
                .email
                .as_deref()
                .and_then(|e| e.split_once('@'))
                .map(|(local, _)| local.to_string())
        }),
        mfa: is_multi_factor(claims, org),
        subject: claims
            .email
            .clone()
            .or_else(|| Some(claims.subject.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;

    fn org(kind: Kind) -> Organisation {
        Organisation {
            id: "x".into(),
            name: "Other Dept".into(),
            kind,
            domains: vec!["other.gov.uk".into()],
            provider: ProviderConfig {
                issuer: "https://id.other.gov.uk".into(),
                client_id: "c".into(),
                client_secret: "s".into(),
                scopes: vec!["openid".into()],
                mfa_acr_values: vec!["urn:mfa".into()],
                assume_email_verified: false,
                step_up_acr_values: vec![],
                step_up_prompt_login: false,
            },
        }
    }

    fn claims(email: &str, amr: &[&str]) -> Claims {
        Claims {
            issuer: "https://id.other.gov.uk".into(),
            subject: "123".into(),
            email: Some(email.into()),
            email_verified: Some(true),
            name: Some("Pam Partner".into()),
            amr: amr.iter().map(|s| s.to_string()).collect(),
            acr: None,
        }
    }

    #[test]
    fn a_partners_own_people_are_partners_anyone_else_a_guest() {
        let p = classify(&org(Kind::Partner), &claims("pam@Other.gov.uk", &["pwd"]));
        assert_eq!(p.level, Level::Partner);
        assert_eq!(p.organisation.as_deref(), Some("Other Dept"));
        assert_eq!(p.name.as_deref(), Some("Pam Partner"));
        assert!(!p.mfa);
        let m = classify(&org(Kind::Home), &claims("pam@other.gov.uk", &["pwd"]));
        assert_eq!(m.level, Level::Member);
        for email in [
            "eve@home.gov.uk",
            "eve@other.gov.uk.evil.example",
            "no-at-sign",
        ] {
            assert_eq!(
                classify(&org(Kind::Partner), &claims(email, &["pwd"])).level,
                Level::Guest,
                "{email}"
            );
        }
        let mut unverified = claims("pam@other.gov.uk", &["pwd"]);
        unverified.email_verified = Some(false);
        assert_eq!(
            classify(&org(Kind::Partner), &unverified).level,
            Level::Guest
        );
        let mut none = claims("pam@other.gov.uk", &[]);
        none.email = None;
        assert_eq!(classify(&org(Kind::Partner), &none).level, Level::Guest);
    }

    #[test]
    fn an_address_without_email_verified_counts_only_where_the_provider_is_trusted_so() {
        let mut silent = claims("pam@other.gov.uk", &["pwd"]);
        silent.email_verified = None;
        assert_eq!(
            classify(&org(Kind::Partner), &silent).level,
            Level::Guest,
            "strict by default"
        );
        let mut trusting = org(Kind::Partner);
        trusting.provider.assume_email_verified = true;
        assert_eq!(classify(&trusting, &silent).level, Level::Partner);
        // An explicit "false" is never overridden.
        silent.email_verified = Some(false);
        assert_eq!(classify(&trusting, &silent).level, Level::Guest);
    }

    #[test]
    fn multi_factor_from_amr_or_declared_acr() {
        let o = org(Kind::Partner);
        for (amr, mfa) in [
            (&["pwd"][..], false),
            (&["hwk"][..], false),
            (&["pwd", "hwk"][..], true),
            (&["pwd", "otp"][..], true),
            (&["mfa"][..], true),
            (&["pwd", "pwd"][..], false),
            (&["pwd", "kba"][..], false),
            (&["pwd", "user"][..], false),
            (&["otp", "otp"][..], false),
            (&["hwk", "pin"][..], true),
        ] {
            assert_eq!(
                is_multi_factor(&claims("a@other.gov.uk", amr), &o),
                mfa,
                "{amr:?}"
            );
        }
        let mut c = claims("a@other.gov.uk", &["pwd"]);
        c.acr = Some("urn:mfa".into());
        assert!(is_multi_factor(&c, &o));
    }
}
