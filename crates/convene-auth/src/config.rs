//! The deployment configuration file (TOML): the home organisation, its
//! OpenID Connect provider, and the partner organisations this server trusts.
//! Documented in docs/configuration.md; a commented example is
//! `convene.example.toml` at the repository root.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

pub mod turn;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub home: Home,
    #[serde(default, rename = "partner")]
    pub partners: Vec<Partner>,
    #[serde(default)]
    pub sessions: Sessions,
    /// TURN servers browsers may relay media through (the `[turn]` section, [`turn`]).
    pub turn: Option<turn::TurnConfig>,
    /// The server's command-line options (`[server]`): read and checked by
    /// the server itself (convene-server's config_file.rs), not here.
    #[serde(default)]
    pub server: Option<ServerOptions>,
}

/// The `[server]` table, left to the server to read (it knows its flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerOptions;

impl<'de> Deserialize<'de> for ServerOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(ServerOptions)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Home {
    /// Shown on every join page: "hosted by <name>".
    pub name: String,
    #[serde(default)]
    pub domains: Vec<String>,
    pub provider: Option<ProviderConfig>,
    /// Who may create meetings. Default: members when a provider is configured,
    /// anyone otherwise.
    pub create_meetings: Option<WhoCreates>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WhoCreates {
    Members,
    Anyone,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// Short name used in sign-in links: lower-case letters, digits and dashes.
    pub id: String,
    pub name: String,
    pub domains: Vec<String>,
    pub provider: ProviderConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `acr` values that this provider uses for a multi-factor sign-in (some
    /// providers say so in `acr` rather than `amr`).
    #[serde(default)]
    pub mfa_acr_values: Vec<String>,
    /// Signing in again for a second factor (a meeting needs one): ask the
    /// provider for these `acr_values` (space-separated in the request), if it
    /// supports them. Empty: none are sent.
    #[serde(default)]
    pub step_up_acr_values: Vec<String>,
    /// Signing in again for a second factor: send `prompt=login`, so that the
    /// provider authenticates the person again instead of reusing its session.
    #[serde(default)]
    pub step_up_prompt_login: bool,
    /// Treat an `email` without an `email_verified` claim as verified. Off by
    /// default: only `email_verified: true` lets an address's domain make
    /// someone a member or partner. Some providers (Microsoft Entra ID) never
    /// send the claim; turn this on for such a provider only if it issues
    /// `email` solely from addresses it has verified.
    #[serde(default)]
    pub assume_email_verified: bool,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    /// How long a sign-in lasts.
    pub hours: u32,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions { hours: 8 }
    }
}

/// Whether an organisation is ours or a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Home,
    Partner,
}

/// One organisation that can sign people in, as the rest of the code sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// `home`, or the partner's id.
    pub id: String,
    pub name: String,
    pub kind: Kind,
    /// Lower-case.
    pub domains: Vec<String>,
    pub provider: ProviderConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A TOML error by its place and message, without the parser's quote of the
/// line: this file holds client secrets, and the quoted line would carry one
/// into the terminal and the service's log.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!(
                "TOML parse error at line {line}, column {column}\n{}",
                without_values(e.message().trim_end())
            )
        }
        None => without_values(e.message().trim_end()),
    }
}

/// serde's "invalid type: integer `1234`, expected a string" quotes the
/// value, which may be a secret: keep the kind, drop the value.
fn without_values(message: &str) -> String {
    let mut out = message.to_string();
    for lead in ["invalid type: ", "invalid value: "] {
        if let Some(at) = out.find(lead) {
            let rest = &out[at + lead.len()..];
            let kind_end = rest.find([' ', ',']).unwrap_or(rest.len());
            let value_end = rest.find(", expected").unwrap_or(rest.len());
            if value_end > kind_end {
                out = format!(
                    "{}{}{}",
                    &out[..at + lead.len()],
                    &rest[..kind_end],
                    &rest[value_end..]
                );
            }
        }
    }
    out
}

impl DeploymentConfig {
    /// Parse and check. Errors name the place in the file and the problem.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config: DeploymentConfig =
            toml::from_str(text).map_err(|e| ConfigError(toml_error(text, &e)))?;
        if let Some(turn) = &mut config.turn {
            turn.check(text).map_err(ConfigError)?;
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if self.home.name.trim().is_empty() {
            return fail("home.name: the organisation needs a name".into());
        }
        if self.home.provider.is_some() && self.home.domains.is_empty() {
            return fail(
                "home.domains: list the email domains of the home organisation's people".into(),
            );
        }
        if self.sessions.hours == 0 || self.sessions.hours > 24 * 30 {
            return fail("sessions.hours: must be between 1 and 720".into());
        }
        // Each email domain belongs to exactly one organisation, or a partner's
        // provider could vouch for the home organisation's people.
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        let mut ids = vec!["home".to_string()];
        let orgs = std::iter::once((
            "home".to_string(),
            &self.home.domains,
            self.home.provider.as_ref(),
        ))
        .chain(self.partners.iter().map(|p| {
            (
                format!("partner \"{}\"", p.id),
                &p.domains,
                Some(&p.provider),
            )
        }));
        for (name, domains, provider) in orgs {
            for d in domains {
                let d = d.trim().to_ascii_lowercase();
                if d.is_empty()
                    || d.contains('@')
                    || !d.contains('.')
                    || d.contains(char::is_whitespace)
                {
                    return fail(format!(
                        "{name}: \"{d}\" is not an email domain (like example.gov.uk)"
                    ));
                }
                if let Some(prev) = owner.insert(d.clone(), name.clone()) {
                    return fail(format!("{name}: the domain {d} already belongs to {prev}"));
                }
            }
            if let Some(p) = provider {
                check_provider(&name, p)?;
            }
        }
        for p in &self.partners {
            let ok = !p.id.is_empty()
                && p.id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return fail(format!(
                    "partner \"{}\": id must be lower-case letters, digits and dashes",
                    p.id
                ));
            }
            if ids.contains(&p.id) {
                return fail(format!(
                    "partner \"{}\": id is used twice (or is \"home\")",
                    p.id
                ));
            }
            ids.push(p.id.clone());
            if p.name.trim().is_empty() || p.domains.is_empty() {
                return fail(format!(
                    "partner \"{}\": needs a name and at least one email domain",
                    p.id
                ));
            }
        }
        let issuers: Vec<&str> = self
            .home
            .provider
            .iter()
            .chain(self.partners.iter().map(|p| &p.provider))
            .map(|p| p.issuer.trim_end_matches('/'))
            .collect();
        for (i, a) in issuers.iter().enumerate() {
            if issuers[i + 1..].contains(a) {
                return fail(format!(
                    "the issuer {a} is configured for two organisations: each provider vouches for one"
                ));
            }
        }
        Ok(())
    }

    /// Every organisation whose people can sign in, home first.
    pub fn organisations(&self) -> Vec<Organisation> {
        let lower = |d: &Vec<String>| d.iter().map(|d| d.trim().to_ascii_lowercase()).collect();
        let home = self.home.provider.clone().map(|provider| Organisation {
            id: "home".into(),
            name: self.home.name.clone(),
            kind: Kind::Home,
            domains: lower(&self.home.domains),
            provider,
        });
        home.into_iter()
            .chain(self.partners.iter().map(|p| Organisation {
                id: p.id.clone(),
                name: p.name.clone(),
                kind: Kind::Partner,
                domains: lower(&p.domains),
                provider: p.provider.clone(),
            }))
            .collect()
    }

    pub fn who_creates(&self) -> WhoCreates {
        self.home
            .create_meetings
            .unwrap_or(if self.home.provider.is_some() {
                WhoCreates::Members
            } else {
                WhoCreates::Anyone
            })
    }
}

fn check_provider(name: &str, p: &ProviderConfig) -> Result<(), ConfigError> {
    let url = Url::parse(&p.issuer)
        .map_err(|e| ConfigError(format!("{name}: issuer \"{}\" is not a URL: {e}", p.issuer)))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(ConfigError(format!(
            "{name}: issuer {} must use https (plain http only on this machine, for tests)",
            p.issuer
        )));
    }
    if p.client_id.is_empty() || p.client_secret.is_empty() {
        return Err(ConfigError(format!(
            "{name}: provider needs client_id and client_secret"
        )));
    }
    if !p.scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError(format!(
            "{name}: scopes must include \"openid\""
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../convene.example.toml");

    #[test]
    fn the_shipped_example_parses() {
        let c = DeploymentConfig::parse(EXAMPLE).unwrap();
        assert_eq!(c.organisations().len(), 2);
        assert_eq!(c.who_creates(), WhoCreates::Members);
    }

    #[test]
    fn without_a_provider_anyone_creates() {
        let c = DeploymentConfig::parse("[home]\nname = \"Trial\"\n").unwrap();
        assert!(c.organisations().is_empty());
        assert_eq!(c.who_creates(), WhoCreates::Anyone);
    }

    #[test]
    fn mistakes_are_named() {
        let base = r#"
[home]
name = "Home"
domains = ["home.example"]
[home.provider]
issuer = "https://id.home.example"
client_id = "c"
client_secret = "s"
"#;
        let cases = [
            ("[[partner]]\nid = \"p\"\nname = \"P\"\ndomains = [\"HOME.example\"]\n[partner.provider]\nissuer = \"https://id.p.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n", "already belongs to home"),
            ("[[partner]]\nid = \"Bad Id\"\nname = \"P\"\ndomains = [\"p.example\"]\n[partner.provider]\nissuer = \"https://id.p.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n", "lower-case"),
            ("[[partner]]\nid = \"p\"\nname = \"P\"\ndomains = [\"p.example\"]\n[partner.provider]\nissuer = \"http://id.p.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n", "must use https"),
            ("[[partner]]\nid = \"p\"\nname = \"P\"\ndomains = [\"p.example\"]\n[partner.provider]\nissuer = \"https://id.home.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n", "configured for two"),
            ("[[partner]]\nid = \"p\"\nname = \"P\"\ndomains = [\"p.example\"]\ncolour = \"red\"\n", "unknown field"),
        ];
        for (extra, expected) in cases {
            let e = DeploymentConfig::parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.0.contains(expected), "{extra}: {e}");
        }
        let e = DeploymentConfig::parse("[home]\nname = \"x\"\nbogus = 1\n").unwrap_err();
        assert!(e.0.contains("line 3"), "{e}");
    }

    /// A broken line near a secret is placed, never quoted: the error goes to
    /// the terminal and the service's log.
    #[test]
    fn errors_do_not_quote_the_file() {
        for broken in [
            "client_secret = \"Quokka-secret-5821\nclient_id = \"c\"\n",
            "client_secret = \"Quokka-secret-5821\" x\n",
            "client_secret = \"Quokka-secret-5821\"\nclient_id = 7\n",
            "client_secret = 58215821\nclient_id = \"c\"\n",
        ] {
            let text = format!("[home]\nname = \"H\"\ndomains = [\"h.example\"]\n[home.provider]\nissuer = \"https://id.h.example\"\n{broken}");
            let e = DeploymentConfig::parse(&text).unwrap_err();
            assert!(!e.0.contains("Quokka") && !e.0.contains("5821"), "{e}");
            assert!(e.0.starts_with("TOML parse error at line "), "{e}");
        }
    }

    #[test]
    fn turn_is_optional_and_checked() {
        let c = DeploymentConfig::parse(EXAMPLE).unwrap();
        let turn = c.turn.expect("the example has a [turn] section");
        assert_eq!(turn.urls.len(), 3);
        assert_eq!(turn.ttl_seconds.seconds(), 3600);
        let c = DeploymentConfig::parse("[home]\nname = \"Trial\"\n").unwrap();
        assert!(c.turn.is_none());

        let base = "[home]\nname = \"Home\"\n\n[turn]\n";
        let ok = format!(
            "{base}urls = [\"turn:127.0.0.1:3478\"]\nsecret_file = \"turn.secret\"\nttl_seconds = 600\n"
        );
        let turn = DeploymentConfig::parse(&ok).unwrap().turn.unwrap();
        assert_eq!(turn.ttl_seconds.seconds(), 600);
        assert_eq!(turn.secret_file, std::path::Path::new("turn.secret"));
        // A bad URL or lifetime names its line, as syntax errors do.
        let cases = [
            (
                "urls = [\n  \"turn:a.example:3478\",\n  \"turn:b.example:99999\",\n]\nsecret_file = \"s\"\n",
                &["line 7", "turn:b.example:99999", "from 1 to 65535"][..],
            ),
            (
                "urls = [\"turn:a.example\"]\nsecret_file = \"s\"\nttl_seconds = 30\n",
                &["line 7", "from 60 to 86400"],
            ),
            (
                "urls = [\"turn:a.example\"]\nsecret_file = \"s\"\nsecret = \"hunter2\"\n",
                &["turn: the secret does not belong in the deployment file"],
            ),
            ("urls = []\nsecret_file = \"s\"\n", &["turn.urls: list"]),
            (
                "urls = [\"turn:a.example\", \"turn:a.example\"]\nsecret_file = \"s\"\n",
                &["listed twice"],
            ),
            ("urls = [\"turn:a.example\"]\nsecret_file = \"\"\n", &["turn.secret_file"]),
            (
                "urls = [\"turn:a.example\"]\nsecret_file = \"s\"\nstatic_auth_secret = \"hunter2\"\n",
                &["turn: the secret does not belong in the deployment file"],
            ),
            (
                "urls = [\"turn:a.example\"]\nsecret_file = \"s\"\nttl = 60\n",
                &["line 7", "unknown field `ttl`"],
            ),
            ("urls = [\"turn:a.example\"]\n", &["missing field `secret_file`"]),
        ];
        for (body, expected) in cases {
            let e = DeploymentConfig::parse(&format!("{base}{body}")).unwrap_err();
            for x in expected {
                assert!(e.0.contains(x), "{body}: expected {x:?} in {e}");
            }
            assert!(!e.0.contains("hunter2"), "the secret is not echoed: {e}");
        }
    }
}
