//! The words of what the server writes itself for a person to read (the
//! calendar file, the sign-in problem page), in English, Dutch or Swedish.
//!
//! They come from the browser client's catalogues (web/i18n/<lang>.json),
//! built into the binary: one catalogue per language for everything Convene
//! says, so the calendar file says word for word what the page's invitation
//! text does, and translators have one file to keep. The message ids used here
//! are named only as `….t("id", …)`, which tests/e2e/i18n-catalogue.test.mjs
//! counts as used (and requires in every language).

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::{header, HeaderMap};

/// A language the client has a catalogue for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Nl,
    Sv,
}

/// The cookie the client's language picker sets (web/i18n.js), so that pages
/// the server writes follow the picker rather than the browser's language.
const COOKIE: &str = "convene-lang";

static CATALOGUES: LazyLock<[HashMap<String, String>; 3]> = LazyLock::new(|| {
    [
        include_str!("../../../web/i18n/en.json"),
        include_str!("../../../web/i18n/nl.json"),
        include_str!("../../../web/i18n/sv.json"),
    ]
    .map(|text| {
        let all: HashMap<String, serde_json::Value> =
            serde_json::from_str(text).expect("the built-in catalogues are JSON");
        // Plural messages are the client's; the server says no counts.
        all.into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
            .collect()
    })
});

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Nl => "nl",
            Lang::Sv => "sv",
        }
    }

    /// A language tag's language, by its base ("nl-BE" is Dutch), as the client chooses.
    pub fn parse(tag: &str) -> Option<Lang> {
        let base = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match base.as_str() {
            "en" => Some(Lang::En),
            "nl" => Some(Lang::Nl),
            "sv" => Some(Lang::Sv),
            _ => None,
        }
    }

    /// The language for a request: the one asked for (a `lang` query
    /// parameter), else the picker's (its cookie), else the first of
    /// `Accept-Language` by preference that there is a catalogue for, else English.
    pub fn of_request(asked: Option<&str>, headers: &HeaderMap) -> Lang {
        asked
            .and_then(Lang::parse)
            .or_else(|| crate::cookies::get(headers, COOKIE).and_then(Lang::parse))
            .or_else(|| {
                let accept = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
                Lang::from_accept_language(accept)
            })
            .unwrap_or(Lang::En)
    }

    /// RFC 9110 12.5.4: tags by quality (highest first, ties in order); q=0 is "not this".
    fn from_accept_language(value: &str) -> Option<Lang> {
        let mut tags: Vec<(u16, Lang)> = value
            .split(',')
            .take(32)
            .filter_map(|item| {
                let mut parts = item.split(';');
                let lang = Lang::parse(parts.next()?)?;
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1000), |q| {
                        q.trim().parse::<f32>().ok().map(|q| (q * 1000.0) as u16)
                    })?;
                (q > 0).then_some((q, lang))
            })
            .collect();
        tags.sort_by_key(|t| std::cmp::Reverse(t.0));
        tags.first().map(|(_, l)| *l)
    }

    /// Message `id` in this language (English where it lacks it, which the
    /// catalogue test forbids), with `{name}` placeholders filled from `params`.
    pub fn t(self, id: &str, params: &[(&str, &str)]) -> String {
        let [en, nl, sv] = &*CATALOGUES;
        let own = match self {
            Lang::En => en,
            Lang::Nl => nl,
            Lang::Sv => sv,
        };
        let mut text = own
            .get(id)
            .or_else(|| en.get(id))
            .cloned()
            .unwrap_or_else(|| id.to_string());
        for (name, value) in params {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_come_from_the_query_the_cookie_or_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of_request(None, &h), Lang::En);
        h.insert(
            header::ACCEPT_LANGUAGE,
            "de-DE, sv;q=0.5, nl-BE;q=0.8".parse().unwrap(),
        );
        assert_eq!(Lang::of_request(None, &h), Lang::Nl);
        h.insert(header::ACCEPT_LANGUAGE, "nl;q=0, sv-FI".parse().unwrap());
        assert_eq!(Lang::of_request(None, &h), Lang::Sv);
        h.insert(header::COOKIE, "a=b; convene-lang=en".parse().unwrap());
        assert_eq!(Lang::of_request(None, &h), Lang::En);
        assert_eq!(Lang::of_request(Some("nl"), &h), Lang::Nl);
        assert_eq!(Lang::of_request(Some("xx"), &h), Lang::En);
    }

    #[test]
    fn words_come_from_the_client_catalogues() {
        assert_eq!(
            Lang::Nl.t("invite.level", &[("level", "Beschermingsniveau 1")]),
            "Rubricering: Beschermingsniveau 1"
        );
        assert_eq!(Lang::Sv.t("no.such-message", &[]), "no.such-message");
    }
}
