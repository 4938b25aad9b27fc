//! ID-token validation, entirely by the openidconnect crate: signature against
//! the provider's JWKS, issuer, audience, expiry and nonce. This module only
//! chooses the settings (asymmetric algorithms only) and reads the claims out.

use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, ClientSecret, IssuerUrl, Nonce, SignatureVerificationError,
};

use crate::classify::Claims;
use crate::config::ProviderConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Signed by a key the JWKS we hold does not have: maybe the provider
    /// rotated its keys, so fetch them again and retry once.
    #[error("the ID token is signed by an unknown key")]
    UnknownKey,
    #[error("the ID token is not valid: {0}")]
    Invalid(String),
}

/// Check `token` as `provider` issued it for this login (`nonce`); `now` is for
/// tests (the real clock otherwise).
pub fn verify(
    token: &CoreIdToken,
    provider: &ProviderConfig,
    jwks: &CoreJsonWebKeySet,
    nonce: &Nonce,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Claims, TokenError> {
    let issuer = IssuerUrl::new(provider.issuer.clone())
        .map_err(|e| TokenError::Invalid(format!("bad issuer URL: {e}")))?;
    let mut verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(provider.client_id.clone()),
        ClientSecret::new(provider.client_secret.clone()),
        issuer,
        jwks.clone(),
    )
    // Asymmetric signatures only: no tokens "signed" with the client secret.
    .set_allowed_algs([
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EdDsa,
    ]);
    if let Some(now) = now {
        verifier = verifier.set_time_fn(move || now);
    }
    let claims = token.claims(&verifier, nonce).map_err(|e| match e {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => TokenError::UnknownKey,
        other => TokenError::Invalid(other.to_string()),
    })?;
    Ok(Claims {
        issuer: claims.issuer().to_string(),
        subject: claims.subject().to_string(),
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified(),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string()),
        amr: claims
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default(),
        acr: claims.auth_context_ref().map(|a| a.to_string()),
    })
}
