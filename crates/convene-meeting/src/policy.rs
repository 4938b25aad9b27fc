//! Handling levels: the deployment's classification scale (for example UK
//! OFFICIAL and OFFICIAL-SENSITIVE) and what each level requires of a meeting.
//! One pure engine decides, used alike by the HTTP API (creating meetings), the
//! signalling (changing settings or the level) and admission (who may join).
//! The policy file format is documented in docs/policy.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::access::{Settings, Who};
use crate::identity::{Identity, Level, LobbyBypass};

/// The UK levels, used when the deployment names no policy file.
pub const UK_POLICY: &str = include_str!("../../../policies/uk.toml");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Lowest first.
    levels: Vec<HandlingLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Banner {
    pub text: String,
    /// `#rrggbb`
    pub foreground: String,
    pub background: String,
}

/// The languages the browser client has catalogues for (web/i18n/): a level's
/// name and banner text may be given in each of them.
pub const LANGUAGES: [&str; 3] = ["en", "nl", "sv"];

/// A level's name and banner text in one language (`[level.translations.nl]`);
/// what it leaves out is shown as the level itself says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelText {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The banner's text (its colours are the level's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlingLevel {
    pub id: String,
    pub name: String,
    pub banner: Banner,
    /// The name and banner text per language (one of [`LANGUAGES`]), where the
    /// policy gives them; spans for the line in error messages.
    #[serde(default)]
    pub translations: BTreeMap<String, toml::Spanned<LevelText>>,
    #[serde(default)]
    pub passcode_required: bool,
    #[serde(default)]
    pub lobby_required: bool,
    /// The most who may skip the lobby.
    #[serde(default = "most_bypass")]
    pub lobby_bypass: LobbyBypass,
    #[serde(default = "yes")]
    pub guests_allowed: bool,
    /// Members and partners must have signed in with more than one factor.
    #[serde(default)]
    pub mfa_required: bool,
    #[serde(default)]
    pub e2ee_required: bool,
    /// Meetings at this level are webinars (an audience that watches). Not
    /// a protection, so not part of the order of levels; a level cannot
    /// require both this and end-to-end encryption.
    #[serde(default)]
    pub webinar_required: bool,
    #[serde(default = "yes")]
    pub recording_allowed: bool,
    #[serde(default = "yes")]
    pub chat_allowed: bool,
    /// Days chat is kept (stored sealed, shown to later joiners); 0: relayed
    /// only, kept nowhere on the server.
    #[serde(default)]
    pub chat_retention_days: u32,
    /// The widest screen-sharing setting allowed.
    #[serde(default = "everyone")]
    pub screen_share: Who,
    pub max_participants: usize,
}

fn yes() -> bool {
    true
}
fn most_bypass() -> LobbyBypass {
    LobbyBypass::MembersAndPartners
}
fn everyone() -> Who {
    Who::Everyone
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(rename = "level")]
    levels: Vec<toml::Spanned<HandlingLevel>>,
}

/// What a level needs that a meeting's settings do not give, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmet(pub String);

/// The meeting as the policy sees it: its settings, and whether it has a passcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal<'a> {
    pub settings: &'a Settings,
    pub has_passcode: bool,
    /// Whether this server can verify identities at all (a sign-in provider).
    pub sign_in_available: bool,
}

/// What everyone sees of a level: its name and banner, and those in the
/// languages the policy gives (the client picks the page's, else these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LevelView {
    pub id: String,
    pub name: String,
    pub banner: Banner,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: BTreeMap<String, LevelText>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Strictness order of "who may" settings: a higher number lets fewer people.
fn narrowness(w: Who) -> u8 {
    match w {
        Who::Everyone => 0,
        Who::HostsAndPresenters => 1,
        Who::Hosts => 2,
        Who::Nobody => 3,
    }
}

fn bypass_width(b: LobbyBypass) -> u8 {
    match b {
        LobbyBypass::Nobody => 0,
        LobbyBypass::Members => 1,
        LobbyBypass::MembersAndPartners => 2,
    }
}

impl Policy {
    pub fn uk() -> Policy {
        Policy::parse(UK_POLICY).expect("the shipped UK policy is valid")
    }

    /// Parse and check a policy file. Errors name the line and the problem.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let line = |span: std::ops::Range<usize>| {
            text.get(..span.start)
                .map_or(0, |t| t.matches('\n').count())
                + 1
        };
        let mut levels: Vec<HandlingLevel> = Vec::new();
        for spanned in &file.levels {
            let at = line(spanned.span());
            let l = spanned.get_ref();
            let fail =
                |msg: String| Err(PolicyError(format!("line {at}: level \"{}\": {msg}", l.id)));
            if l.id.is_empty()
                || !l
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return fail("id must be lower-case letters, digits and dashes".into());
            }
            if levels.iter().any(|o| o.id == l.id) {
                return fail("this id is used twice".into());
            }
            if l.name.trim().is_empty() || l.banner.text.trim().is_empty() {
                return fail("needs a name and banner text".into());
            }
            for (language, text) in &l.translations {
                let at = line(text.span());
                let fail = |msg: String| {
                    Err(PolicyError(format!(
                        "line {at}: level \"{}\": translations.{language}: {msg}",
                        l.id
                    )))
                };
                if !LANGUAGES.contains(&language.as_str()) {
                    return fail(format!(
                        "the client has no language \"{language}\"; it has {}",
                        LANGUAGES.join(", ")
                    ));
                }
                let t = text.get_ref();
                if t.name.is_none() && t.banner.is_none() {
                    return fail("gives neither a name nor a banner".into());
                }
                if [&t.name, &t.banner]
                    .into_iter()
                    .flatten()
                    .any(|s| s.trim().is_empty())
                {
                    return fail("a name or banner must not be empty".into());
                }
            }
            if l.max_participants == 0 {
                return fail("max_participants must be at least 1".into());
            }
            if l.webinar_required && l.e2ee_required {
                return fail(
                    "a level cannot require both a webinar and end-to-end encryption (a webinar cannot be encrypted end to end)"
                        .into(),
                );
            }
            if !l.chat_allowed && l.chat_retention_days > 0 {
                return fail("chat_retention_days is set but chat_allowed is false".into());
            }
            if !l.lobby_required && l.lobby_bypass != LobbyBypass::MembersAndPartners {
                return fail(
                    "lobby_bypass limits who skips a lobby that is not required (set lobby_required = true)"
                        .into(),
                );
            }
            let (fg, bg) = match (colour(&l.banner.foreground), colour(&l.banner.background)) {
                (Some(f), Some(b)) => (f, b),
                _ => return fail("banner colours must be #rrggbb".into()),
            };
            let ratio = contrast(fg, bg);
            if ratio < 4.5 {
                return fail(format!(
                    "the banner's colours have a contrast of {ratio:.1}:1; at least 4.5:1 is needed to be readable"
                ));
            }
            // Each level is at least as strict as the one below it, so that
            // raising a level never relaxes anything.
            if let Some(below) = levels.last() {
                let looser = below.looser_than(l);
                if let Some(what) = looser {
                    return fail(format!(
                        "is less strict than \"{}\" below it ({what}); levels go from least to most strict",
                        below.id
                    ));
                }
            }
            levels.push(l.clone());
        }
        if levels.is_empty() {
            return Err(PolicyError("the policy has no [[level]]".into()));
        }
        Ok(Policy { levels })
    }

    pub fn levels(&self) -> &[HandlingLevel] {
        &self.levels
    }

    pub fn lowest(&self) -> &HandlingLevel {
        &self.levels[0]
    }

    pub fn level(&self, id: &str) -> Option<&HandlingLevel> {
        self.levels.iter().find(|l| l.id == id)
    }

    /// Level `id`, or the lowest when there is none by that id (an empty id
    /// from before levels existed, or one an edited policy dropped).
    pub fn level_or_lowest(&self, id: &str) -> &HandlingLevel {
        self.level(id).unwrap_or(self.lowest())
    }

    /// Position in the order (0 = lowest).
    pub fn rank(&self, id: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.id == id)
    }
}

impl HandlingLevel {
    pub fn view(&self) -> LevelView {
        LevelView {
            id: self.id.clone(),
            name: self.name.clone(),
            banner: self.banner.clone(),
            translations: self
                .translations
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                .collect(),
        }
    }

    /// The level's name in `language` where the policy gives one, else as written.
    pub fn name_in(&self, language: &str) -> &str {
        self.translations
            .get(language)
            .and_then(|t| t.get_ref().name.as_deref())
            .unwrap_or(&self.name)
    }

    /// Which requirement of `above` this level has and it lacks, if any.
    fn looser_than(&self, above: &HandlingLevel) -> Option<&'static str> {
        let weaker = |a: bool, b: bool| a && !b;
        if weaker(self.passcode_required, above.passcode_required) {
            Some("passcode_required")
        } else if weaker(self.lobby_required, above.lobby_required) {
            Some("lobby_required")
        } else if bypass_width(above.lobby_bypass) > bypass_width(self.lobby_bypass) {
            Some("lobby_bypass")
        } else if weaker(above.guests_allowed, self.guests_allowed) {
            Some("guests_allowed")
        } else if weaker(self.mfa_required, above.mfa_required) {
            Some("mfa_required")
        } else if weaker(self.e2ee_required, above.e2ee_required) {
            Some("e2ee_required")
        } else if weaker(above.recording_allowed, self.recording_allowed) {
            Some("recording_allowed")
        } else if weaker(above.chat_allowed, self.chat_allowed) {
            Some("chat_allowed")
        } else if narrowness(above.screen_share) < narrowness(self.screen_share) {
            Some("screen_share")
        } else if above.max_participants > self.max_participants {
            Some("max_participants")
        } else {
            None
        }
    }

    /// Everything the proposal falls short of at this level; empty if it meets them all.
    pub fn unmet(&self, p: &Proposal<'_>) -> Vec<Unmet> {
        let s = p.settings;
        let mut out = Vec::new();
        let n = &self.name;
        if let Some(why) = self.unavailable(p.sign_in_available) {
            out.push(Unmet(format!(
                "{n} {why}: meetings at this level cannot be held here"
            )));
        }
        let mut need = |cond: bool, msg: String| {
            if cond {
                out.push(Unmet(msg));
            }
        };
        need(
            self.passcode_required && !p.has_passcode,
            format!("{n} requires a passcode"),
        );
        need(
            self.lobby_required && !s.lobby,
            format!("{n} requires the lobby"),
        );
        need(
            bypass_width(s.lobby_bypass) > bypass_width(self.lobby_bypass),
            format!(
                "{n} lets at most {} skip the lobby",
                match self.lobby_bypass {
                    LobbyBypass::Nobody => "nobody",
                    LobbyBypass::Members => "members",
                    LobbyBypass::MembersAndPartners => "members and partners",
                }
            ),
        );
        need(
            !self.guests_allowed && s.guests_allowed,
            format!("{n} does not allow unverified guests"),
        );
        need(
            self.mfa_required && !s.require_mfa,
            format!("{n} requires members and partners to sign in with a second factor"),
        );
        need(
            self.e2ee_required && !s.e2ee,
            format!(
                "{n} requires end-to-end encryption, which is chosen when a meeting is created"
            ),
        );
        need(
            self.webinar_required && !s.webinar,
            format!("{n} requires a webinar, which is chosen when a meeting is created"),
        );
        need(
            !self.chat_allowed && s.chat != Who::Nobody,
            format!("{n} does not allow chat"),
        );
        need(
            narrowness(s.screen_share) < narrowness(self.screen_share),
            format!(
                "{n} allows screen sharing by {} at most",
                who_words(self.screen_share)
            ),
        );
        need(
            s.max_participants > self.max_participants,
            format!("{n} allows at most {} participants", self.max_participants),
        );
        out
    }

    /// Why no meeting can ever be held at this level on this server (what no
    /// setting can give: a capability Convene lacks, or sign-in when the level
    /// admits only verified people), in words after the level's name; `None`
    /// when meetings at this level can be created. Pickers offer such levels
    /// disabled, with this reason.
    pub fn unavailable(&self, sign_in_available: bool) -> Option<String> {
        if !self.guests_allowed && !sign_in_available {
            Some("admits only verified people, and this server has no sign-in configured".into())
        } else {
            None
        }
    }

    /// The settings raised just enough to meet this level (what a passcode or a
    /// missing capability needs cannot be raised: `unmet` still reports it).
    pub fn raise(&self, s: &Settings) -> Settings {
        let mut r = s.clone();
        r.lobby |= self.lobby_required;
        if bypass_width(r.lobby_bypass) > bypass_width(self.lobby_bypass) {
            r.lobby_bypass = self.lobby_bypass;
        }
        r.guests_allowed &= self.guests_allowed;
        r.require_mfa |= self.mfa_required;
        r.e2ee |= self.e2ee_required;
        r.webinar |= self.webinar_required;
        if !self.chat_allowed {
            r.chat = Who::Nobody;
        }
        if narrowness(r.screen_share) < narrowness(self.screen_share) {
            r.screen_share = self.screen_share;
        }
        r.max_participants = r.max_participants.min(self.max_participants);
        r
    }

    /// Whether this level lets `identity` be present, and if not, why.
    pub fn admits(&self, identity: &Identity) -> Result<(), String> {
        if identity.level == Level::Guest && !self.guests_allowed {
            return Err(format!(
                "this meeting is {}: only people verified by their organisation's sign-in may join",
                self.name
            ));
        }
        if identity.is_verified() && self.mfa_required && !identity.mfa {
            return Err(format!(
                "this meeting is {}: sign in with a second factor (such as a security key or code) to join",
                self.name
            ));
        }
        Ok(())
    }
}

fn who_words(w: Who) -> &'static str {
    match w {
        Who::Everyone => "everyone",
        Who::HostsAndPresenters => "hosts and presenters",
        Who::Hosts => "hosts",
        Who::Nobody => "nobody",
    }
}

fn colour(s: &str) -> Option<[f64; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let c = |i: usize| {
        u8::from_str_radix(&hex[i..i + 2], 16)
            .ok()
            .map(|v| f64::from(v) / 255.0)
    };
    Some([c(0)?, c(2)?, c(4)?])
}

/// WCAG 2 contrast ratio of two sRGB colours.
fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
    let lum = |c: [f64; 3]| {
        let ch = |v: f64| {
            if v <= 0.03928 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * ch(c[0]) + 0.7152 * ch(c[1]) + 0.0722 * ch(c[2])
    };
    let (la, lb) = (lum(a), lum(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

#[cfg(test)]
mod tests;
