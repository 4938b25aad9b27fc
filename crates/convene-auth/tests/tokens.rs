//! ID-token validation, with tokens signed the way a provider signs them (test
//! keys in tests/fixtures): whatever is expired, altered, meant for another
//! client, for another login (nonce), from another issuer, or signed by an
//! unknown key or with the client secret is refused.

use chrono::{Duration, Utc};
use convene_auth::config::ProviderConfig;
use convene_auth::verify::{verify, TokenError};
use openidconnect::core::{
    CoreGenderClaim, CoreHmacKey, CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, AuthenticationMethodReference, EmptyAdditionalClaims, EndUserEmail, EndUserName,
    IssuerUrl, JsonWebKeyId, LocalizedClaim, Nonce, PrivateSigningKey, StandardClaims,
    SubjectIdentifier,
};

const ISSUER: &str = "https://id.home.example";

fn provider() -> ProviderConfig {
    ProviderConfig {
        issuer: ISSUER.into(),
        client_id: "convene".into(),
        client_secret: "a-client-secret-long-enough-for-hmac-000".into(),
        scopes: vec!["openid".into()],
        mfa_acr_values: vec![],
        assume_email_verified: false,
        step_up_acr_values: vec![],
        step_up_prompt_login: false,
    }
}

fn key(file: &str, kid: &str) -> CoreRsaPrivateSigningKey {
    let pem = std::fs::read_to_string(format!(
        "{}/tests/fixtures/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.into()))).unwrap()
}

fn jwks(keys: &[&CoreRsaPrivateSigningKey]) -> CoreJsonWebKeySet {
    CoreJsonWebKeySet::new(keys.iter().map(|k| k.as_verification_key()).collect())
}

struct Spec {
    issuer: &'static str,
    audience: &'static str,
    nonce: &'static str,
    expires_in: Duration,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            issuer: ISSUER,
            audience: "convene",
            nonce: "nonce-1",
            expires_in: Duration::minutes(5),
        }
    }
}

fn claims(spec: &Spec) -> CoreIdTokenClaims {
    let mut name = LocalizedClaim::new();
    name.insert(None, EndUserName::new("Alice Archer".into()));
    CoreIdTokenClaims::new(
        IssuerUrl::new(spec.issuer.into()).unwrap(),
        vec![Audience::new(spec.audience.into())],
        Utc::now() + spec.expires_in,
        Utc::now() - Duration::seconds(10),
        StandardClaims::<CoreGenderClaim>::new(SubjectIdentifier::new("alice-1".into()))
            .set_email(Some(EndUserEmail::new("alice@home.example".into())))
            .set_email_verified(Some(true))
            .set_name(Some(name)),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(spec.nonce.into())))
    .set_auth_method_refs(Some(vec![
        AuthenticationMethodReference::new("pwd".into()),
        AuthenticationMethodReference::new("hwk".into()),
    ]))
}

fn token(spec: &Spec, signer: &CoreRsaPrivateSigningKey) -> CoreIdToken {
    CoreIdToken::new(
        claims(spec),
        signer,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .unwrap()
}

fn check(
    t: &CoreIdToken,
    keys: &CoreJsonWebKeySet,
) -> Result<convene_auth::classify::Claims, TokenError> {
    verify(t, &provider(), keys, &Nonce::new("nonce-1".into()), None)
}

fn invalid(r: Result<convene_auth::classify::Claims, TokenError>, what: &str) {
    match r {
        Err(TokenError::Invalid(msg)) => {
            assert!(msg.to_lowercase().contains(what), "{what}: {msg}")
        }
        other => panic!("{what}: expected refusal, got {other:?}"),
    }
}

#[test]
fn a_good_token_gives_its_claims() {
    let k = key("test-signing-key.pem", "k1");
    let c = check(&token(&Spec::default(), &k), &jwks(&[&k])).unwrap();
    assert_eq!(c.issuer, ISSUER);
    assert_eq!(c.subject, "alice-1");
    assert_eq!(c.email.as_deref(), Some("alice@home.example"));
    assert_eq!(c.name.as_deref(), Some("Alice Archer"));
    assert_eq!(c.amr, vec!["pwd", "hwk"]);
}

#[test]
fn expired_wrong_audience_wrong_nonce_and_foreign_issuer_are_refused() {
    let k = key("test-signing-key.pem", "k1");
    let keys = jwks(&[&k]);
    let expired = Spec {
        expires_in: Duration::minutes(-5),
        ..Spec::default()
    };
    invalid(check(&token(&expired, &k), &keys), "expired");
    let other_client = Spec {
        audience: "someone-else",
        ..Spec::default()
    };
    invalid(check(&token(&other_client, &k), &keys), "audience");
    // A token from another login (replayed into this one) carries its nonce.
    let replayed = Spec {
        nonce: "nonce-of-another-login",
        ..Spec::default()
    };
    invalid(check(&token(&replayed, &k), &keys), "nonce");
    let untrusted = Spec {
        issuer: "https://id.untrusted.example",
        ..Spec::default()
    };
    invalid(check(&token(&untrusted, &k), &keys), "issuer");
}

#[test]
fn an_altered_token_fails_its_signature() {
    let k = key("test-signing-key.pem", "k1");
    let good = serde_json::to_value(token(&Spec::default(), &k)).unwrap();
    let parts: Vec<&str> = good.as_str().unwrap().split('.').collect();
    // Change the email in the payload, keep the signature.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
    let forged = payload.replace("alice@home.example", "mallory@home.example");
    assert_ne!(payload, forged);
    let altered = format!("{}.{}.{}", parts[0], b64.encode(forged), parts[2]);
    let altered: CoreIdToken = serde_json::from_value(serde_json::Value::String(altered)).unwrap();
    invalid(check(&altered, &jwks(&[&k])), "signature");
}

#[test]
fn an_unknown_key_is_reported_so_keys_can_be_fetched_again() {
    let old = key("test-signing-key.pem", "k1");
    let new = key("other-signing-key.pem", "k2");
    let t = token(&Spec::default(), &new);
    assert_eq!(
        check(&t, &jwks(&[&old])).unwrap_err(),
        TokenError::UnknownKey
    );
    // After rotation the provider publishes the new key: the same token passes.
    assert!(check(&t, &jwks(&[&old, &new])).is_ok());
    // A key that claims the right id but is not the provider's fails the signature.
    let impostor = key("other-signing-key.pem", "k1");
    invalid(
        check(&token(&Spec::default(), &impostor), &jwks(&[&old])),
        "signature",
    );
}

#[test]
fn tokens_signed_with_the_client_secret_are_refused() {
    let hmac = CoreHmacKey::new(provider().client_secret.into_bytes());
    let t = CoreIdToken::new(
        claims(&Spec::default()),
        &hmac,
        CoreJwsSigningAlgorithm::HmacSha256,
        None,
        None,
    )
    .unwrap();
    let k = key("test-signing-key.pem", "k1");
    assert!(check(&t, &jwks(&[&k])).is_err());
}
