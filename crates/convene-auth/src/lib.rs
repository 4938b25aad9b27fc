//! Sign-in with the home organisation's and trusted partners' OpenID Connect
//! providers: authorization-code flow with PKCE, state (bound to the browser)
//! and nonce; provider discovery; ID-token validation by the openidconnect
//! crate, re-fetching the provider's keys when it rotates them; server-side
//! sessions. HTTP routes live in the server; this crate does the protocol.

pub mod classify;
pub mod config;
pub mod shared;
pub mod store;
pub mod verify;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use convene_meeting::identity::Identity;
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    core::CoreAuthPrompt, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use tracing::{info, warn};

use crate::config::{DeploymentConfig, Organisation, WhoCreates};
use crate::store::{Pending, PendingLogins, Session, Sessions};
use crate::verify::TokenError;

/// Keys are fetched again after a signature by an unknown key at most this often.
const MIN_REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no organisation \"{0}\" signs people in here")]
    UnknownOrganisation(String),
    #[error("{0}")]
    Pending(#[from] store::PendingError),
    #[error("the sign-in service of {0} cannot be reached: {1}")]
    Provider(String, String),
    #[error("the sign-in service refused the sign-in: {0}")]
    Refused(String),
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("the sign-in could not be kept just now ({0}); please try again")]
    Unavailable(String),
}

struct Provider {
    org: Organisation,
    /// Discovery document with its keys, and when it was fetched.
    metadata: tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

/// Everything about sign-in for one server.
pub struct Auth {
    home_name: String,
    who_creates: WhoCreates,
    providers: HashMap<String, Provider>,
    order: Vec<String>,
    /// This server's public URL: providers send people back to
    /// `<base>/auth/callback/<organisation id>`.
    base: String,
    http: openidconnect::reqwest::Client,
    pending: Mutex<PendingLogins>,
    sessions: Mutex<Sessions>,
    /// Where sessions are kept for every node, when nodes share a database.
    shared: std::sync::OnceLock<shared::Shared>,
}

/// An organisation whose people can sign in, as the join page lists them.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInOption {
    pub id: String,
    pub name: String,
    pub home: bool,
}

/// Where to send the browser, and the login cookie to set on it.
pub struct Started {
    pub url: String,
    pub binding: String,
}

/// A finished sign-in.
pub struct SignedIn {
    pub token: String,
    pub return_to: String,
    pub identity: Identity,
}

impl Auth {
    /// `public_url` is this server's address as browsers see it. Each provider
    /// sends people back to its own `<public_url>/auth/callback/<org id>`, so a
    /// response can never be taken for another provider's (mix-up attacks).
    pub fn new(config: Option<&DeploymentConfig>, public_url: &str) -> Auth {
        let orgs = config.map(|c| c.organisations()).unwrap_or_default();
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider point us anywhere (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Auth {
            home_name: config
                .map(|c| c.home.name.clone())
                .unwrap_or_else(|| "this server (trial: no organisation configured)".into()),
            who_creates: config
                .map(|c| c.who_creates())
                .unwrap_or(WhoCreates::Anyone),
            order: orgs.iter().map(|o| o.id.clone()).collect(),
            providers: orgs
                .into_iter()
                .map(|org| {
                    (
                        org.id.clone(),
                        Provider {
                            org,
                            metadata: tokio::sync::Mutex::new(None),
                        },
                    )
                })
                .collect(),
            base: public_url.trim_end_matches('/').to_string(),
            http,
            pending: Mutex::new(PendingLogins::default()),
            sessions: Mutex::new(Sessions::new(Duration::from_secs(
                u64::from(config.map(|c| c.sessions.hours).unwrap_or(8)) * 3600,
            ))),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Whether this deployment still vouches for an identity it gave before a
    /// restart: its organisation is still configured, as home or partner as
    /// before, with the address's domain among its own. (The configuration
    /// may have changed while the server was down: a partner dropped, a
    /// domain removed.) Guests need no vouching.
    pub fn still_vouches(&self, identity: &Identity) -> bool {
        use convene_meeting::identity::Level;
        if !identity.is_verified() {
            return true;
        }
        let domain = identity
            .subject
            .as_deref()
            .and_then(|s| s.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        self.providers.values().any(|p| {
            let kind_matches = matches!(
                (p.org.kind, identity.level),
                (config::Kind::Home, Level::Member) | (config::Kind::Partner, Level::Partner)
            );
            kind_matches
                && identity.organisation.as_deref() == Some(p.org.name.as_str())
                && domain.as_ref().is_some_and(|d| p.org.domains.contains(d))
        })
    }

    /// Where organisation `org`'s provider sends people back (register this).
    pub fn redirect_for(&self, org: &str) -> String {
        format!("{}/auth/callback/{org}", self.base)
    }

    pub fn home_name(&self) -> &str {
        &self.home_name
    }

    pub fn who_creates(&self) -> WhoCreates {
        self.who_creates
    }

    /// Whether anyone can sign in at all.
    pub fn enabled(&self) -> bool {
        !self.providers.is_empty()
    }

    pub fn session_lifetime(&self) -> Duration {
        self.sessions().lifetime()
    }

    pub fn options(&self) -> Vec<SignInOption> {
        self.order
            .iter()
            .filter_map(|id| self.providers.get(id))
            .map(|p| SignInOption {
                id: p.org.id.clone(),
                name: p.org.name.clone(),
                home: p.org.kind == config::Kind::Home,
            })
            .collect()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep sessions in `backend` too, for every node (once, at start).
    /// `key` tags the cookies (the same on every node: from the database).
    pub fn share_sessions(
        &self,
        backend: std::sync::Arc<dyn shared::SessionBackend>,
        key: Vec<u8>,
    ) {
        let _ = self.shared.set(shared::Shared::new(backend, key));
    }

    /// Whether sessions are shared between nodes.
    pub fn sessions_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    /// The session cookie `token` stands for, sent by `client` (its address;
    /// shares are counted by address group here); an error when the shared
    /// store cannot say: it is away and this node has no recent copy, or the cookie is new here and `client` sent
    /// more new cookies than its share of reads. The request should then be
    /// tried again, not served as if signed out.
    pub fn checked_session(
        &self,
        token: &str,
        client: IpAddr,
    ) -> Result<Option<Session>, &'static str> {
        if !store::well_formed(token) {
            return Ok(None);
        }
        match self.shared.get() {
            // A cookie no node made: no read, no budget spent.
            Some(sh) if !sh.made_here(shared::Kind::Cookie, token) => Ok(None),
            Some(sh) => sh.session(&self.sessions, &store::sha256_hex(token), client),
            None => Ok(self.sessions().get(token, Instant::now())),
        }
    }

    /// Sign out the sign-in cookie `token` belongs to: on every node, with
    /// shared sessions. An error when that could not be stored (the person
    /// is still signed in, and should be told so).
    pub fn sign_out(&self, token: &str, client: IpAddr) -> Result<(), String> {
        if !store::well_formed(token) {
            return Ok(());
        }
        let hash = store::sha256_hex(token);
        if let Some(sh) = self.shared.get() {
            // A cookie no node made has nothing to end anywhere: no read.
            let session = match sh.made_here(shared::Kind::Cookie, token) {
                true => sh.session(&self.sessions, &hash, client)?,
                false => None,
            };
            if let Some(s) = session {
                sh.backend.end(&s.family).map_err(|e| {
                    warn!("sessions: sign-out not stored for the other nodes: {e}");
                    shared::UNCHECKED.to_string()
                })?;
            }
        }
        self.sessions().forget(&hash);
        Ok(())
    }

    /// A one-time code that carries the sign-in `token` belongs to to
    /// another node (only with shared sessions), for the browser that holds
    /// `nonce` there, on its way to `meeting`; none without a sign-in; an
    /// error when the shared store cannot say or keep it just now.
    pub fn handoff(
        &self,
        token: &str,
        nonce: &str,
        meeting: &str,
        client: IpAddr,
    ) -> Result<Option<String>, &'static str> {
        let Some(sh) = self.shared.get() else {
            return Ok(None);
        };
        if !store::well_formed(nonce) {
            return Ok(None);
        }
        let Some(session) = self.checked_session(token, client)? else {
            return Ok(None);
        };
        sh.handoff(&session, &format!("{nonce} {meeting}"))
            .map(Some)
    }

    /// The cookie value for this node that a code from another node stands
    /// for (once), if this browser holds the `nonce` it was made for and is
    /// on its way to the same `meeting`; an error when the shared store does
    /// not answer.
    pub fn take_handoff(
        &self,
        code: &str,
        nonce: &str,
        meeting: &str,
    ) -> Result<Option<String>, &'static str> {
        let Some(sh) = self.shared.get() else {
            return Ok(None);
        };
        if !store::well_formed(code)
            || !store::well_formed(nonce)
            || !sh.made_here(shared::Kind::Code, code)
        {
            return Ok(None);
        }
        sh.take_handoff(&self.sessions, code, &format!("{nonce} {meeting}"))
    }

    /// Discover each provider now, so that a misconfiguration shows in the log
    /// at start-up. Failures are not fatal: sign-in retries discovery.
    pub async fn warm_up(&self) {
        for p in self.providers.values() {
            match self.metadata(p, false).await {
                Ok(_) => {
                    info!(organisation = %p.org.name, issuer = %p.org.provider.issuer, "sign-in provider ready")
                }
                Err(e) => warn!("{e}"),
            }
        }
    }

    async fn metadata(
        &self,
        p: &Provider,
        refresh: bool,
    ) -> Result<CoreProviderMetadata, LoginError> {
        let mut held = p.metadata.lock().await;
        if let Some((md, at)) = held.as_ref() {
            if !refresh || at.elapsed() < MIN_REFRESH {
                return Ok(md.clone());
            }
        }
        let unreachable = |e: String| LoginError::Provider(p.org.name.clone(), e);
        let issuer = IssuerUrl::new(p.org.provider.issuer.clone())
            .map_err(|e| unreachable(e.to_string()))?;
        // Discovery checks that the document names the issuer we asked for, and
        // fetches the provider's signing keys.
        let md = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        *held = Some((md.clone(), Instant::now()));
        Ok(md)
    }

    /// Start signing in with organisation `org`; afterwards the browser returns
    /// to `return_to` (a path on this server). With `step_up` (signing in again
    /// because a meeting needs a second factor), the request carries what the
    /// provider is configured to be asked for then: `acr_values`, `prompt=login`.
    pub async fn begin(
        &self,
        org: &str,
        return_to: &str,
        step_up: bool,
    ) -> Result<Started, LoginError> {
        let p = self
            .providers
            .get(org)
            .ok_or_else(|| LoginError::UnknownOrganisation(org.chars().take(40).collect()))?;
        let md = self.metadata(p, false).await?;
        let client = CoreClient::from_provider_metadata(
            md,
            ClientId::new(p.org.provider.client_id.clone()),
            Some(ClientSecret::new(p.org.provider.client_secret.clone())),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_for(org))
                .map_err(|e| LoginError::Refused(e.to_string()))?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in p.org.provider.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if step_up {
            let provider = &p.org.provider;
            if !provider.step_up_acr_values.is_empty() {
                request =
                    request.add_extra_param("acr_values", provider.step_up_acr_values.join(" "));
            }
            if provider.step_up_prompt_login {
                request = request.add_prompt(CoreAuthPrompt::Login);
            }
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let binding = store::random_hex(16);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                state.secret().clone(),
                Pending {
                    org: org.to_string(),
                    nonce,
                    verifier,
                    binding: binding.clone(),
                    return_to: safe_return(return_to),
                    at: Instant::now(),
                },
            );
        Ok(Started {
            url: url.to_string(),
            binding,
        })
    }

    /// Organisation `org`'s provider sent the browser back (to its own
    /// callback path) with `code` and `state` (and, per RFC 9207, `iss`);
    /// `binding` is the browser's login cookie.
    pub async fn finish(
        &self,
        org: &str,
        code: &str,
        state: &str,
        iss: Option<&str>,
        binding: Option<&str>,
    ) -> Result<SignedIn, LoginError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(state, binding, Instant::now())?;
        if pending.org != org {
            return Err(LoginError::Refused(
                "the response came back for another organisation".into(),
            ));
        }
        let p = self
            .providers
            .get(&pending.org)
            .ok_or_else(|| LoginError::UnknownOrganisation(pending.org.clone()))?;
        if iss
            .is_some_and(|i| i.trim_end_matches('/') != p.org.provider.issuer.trim_end_matches('/'))
        {
            return Err(LoginError::Refused(
                "the response came from another issuer".into(),
            ));
        }
        let md = self.metadata(p, false).await?;
        let client = CoreClient::from_provider_metadata(
            md.clone(),
            ClientId::new(p.org.provider.client_id.clone()),
            Some(ClientSecret::new(p.org.provider.client_secret.clone())),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_for(&pending.org))
                .map_err(|e| LoginError::Refused(e.to_string()))?,
        );
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| LoginError::Refused(e.to_string()))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::Refused(error_chain(&e)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| LoginError::Refused("no ID token in the response".into()))?;
        let claims =
            match verify::verify(id_token, &p.org.provider, md.jwks(), &pending.nonce, None) {
                Err(TokenError::UnknownKey) => {
                    // The provider may have rotated its keys since we fetched them.
                    let md = self.metadata(p, true).await?;
                    verify::verify(id_token, &p.org.provider, md.jwks(), &pending.nonce, None)?
                }
                other => other?,
            };
        let identity = classify::classify(&p.org, &claims);
        let key = format!(
            "account:{}",
            &store::sha256_hex(&format!("{}#{}", claims.issuer, claims.subject))[..32]
        );
        info!(organisation = %p.org.name, level = ?identity.level, mfa = identity.mfa, "signed in");
        let now = Instant::now();
        let token = match self.shared.get() {
            Some(sh) => sh.new_token(shared::Kind::Cookie),
            None => store::random_hex(store::TOKEN_BYTES),
        };
        let session = self
            .sessions()
            .create_as(&token, identity.clone(), key, now);
        if let Some(sh) = self.shared.get() {
            // The first cookie's hash is its family's.
            sh.backend
                .save(&session.family, &shared::store(&session, now))
                .map_err(LoginError::Unavailable)?;
        }
        Ok(SignedIn {
            token,
            return_to: pending.return_to,
            identity,
        })
    }
}

/// Only paths on this server: never `//elsewhere` or `https://elsewhere`; and
/// short (pending logins are kept in memory).
pub fn safe_return(path: &str) -> String {
    let ok = path.len() <= 512
        && path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control());
    if ok {
        path.to_string()
    } else {
        "/".into()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn return_paths_stay_on_this_server() {
        for (given, kept) in [
            ("/m/abcd-efgh-jkmn", "/m/abcd-efgh-jkmn"),
            ("//evil.example/x", "/"),
            ("https://evil.example", "/"),
            ("/\\evil.example", "/"),
            ("", "/"),
            (&format!("/{}", "x".repeat(600)), "/"),
        ] {
            assert_eq!(super::safe_return(given), kept);
        }
    }

    /// After a restart with a changed configuration, identities given under
    /// the old one are believed only as far as the new one still vouches.
    #[test]
    fn identities_are_believed_only_while_the_configuration_vouches() {
        use super::*;
        use convene_meeting::identity::Level;
        let provider = |host: &str| {
            format!("issuer = \"https://id.{host}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n")
        };
        let before = format!(
            "[home]\nname = \"Home\"\ndomains = [\"home.example\"]\n[home.provider]\n{}\
             [[partner]]\nid = \"p\"\nname = \"Partner\"\ndomains = [\"p.example\"]\n[partner.provider]\n{}",
            provider("home.example"),
            provider("p.example")
        );
        let after = format!(
            "[home]\nname = \"Home\"\ndomains = [\"home.example\"]\n[home.provider]\n{}",
            provider("home.example")
        );
        let who = |level, org: &str, email: &str| Identity {
            level,
            organisation: Some(org.into()),
            name: None,
            mfa: false,
            subject: Some(email.into()),
        };
        let member = who(Level::Member, "Home", "ann@HOME.example");
        let partner = who(Level::Partner, "Partner", "bo@p.example");
        let posing = who(Level::Member, "Partner", "bo@p.example");
        let old = Auth::new(
            Some(&DeploymentConfig::parse(&before).unwrap()),
            "https://m",
        );
        assert!(old.still_vouches(&member));
        assert!(old.still_vouches(&partner));
        assert!(!old.still_vouches(&posing), "a partner is not a member");
        let new = Auth::new(Some(&DeploymentConfig::parse(&after).unwrap()), "https://m");
        assert!(new.still_vouches(&member));
        assert!(!new.still_vouches(&partner), "the partner was dropped");
        assert!(new.still_vouches(&Identity::guest()));
        let none = Auth::new(None, "https://m");
        assert!(!none.still_vouches(&member), "sign-in switched off");
    }
}
