use proptest::prelude::*;

use super::*;
use crate::access::Who;

const FOUR: &str = include_str!("../../../../policies/four-levels.toml");

const WHO: [Who; 4] = [
    Who::Everyone,
    Who::HostsAndPresenters,
    Who::Hosts,
    Who::Nobody,
];
const BYPASS: [LobbyBypass; 3] = [
    LobbyBypass::Nobody,
    LobbyBypass::Members,
    LobbyBypass::MembersAndPartners,
];

/// Every combination of the settings a level constrains (and the passcode).
fn all_proposals() -> Vec<(Settings, bool)> {
    let mut out = Vec::new();
    for lobby in [false, true] {
        for screen_share in WHO {
            for chat in WHO {
                for lobby_bypass in BYPASS {
                    for guests_allowed in [false, true] {
                        for require_mfa in [false, true] {
                            for max_participants in [1, 12, 13, 50, 51, 300, 301, 1000] {
                                for has_passcode in [false, true] {
                                    out.push((
                                        Settings {
                                            lobby,
                                            screen_share,
                                            chat,
                                            lobby_bypass,
                                            guests_allowed,
                                            require_mfa,
                                            max_participants,
                                            ..Settings::default()
                                        },
                                        has_passcode,
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The requirements, written out independently of `unmet`.
fn satisfies(l: &HandlingLevel, s: &Settings, has_passcode: bool, sign_in: bool) -> bool {
    !l.e2ee_required
        && (l.guests_allowed || sign_in)
        && (!l.passcode_required || has_passcode)
        && (!l.lobby_required || s.lobby)
        && (bypass_width(s.lobby_bypass) <= bypass_width(l.lobby_bypass))
        && (l.guests_allowed || !s.guests_allowed)
        && (!l.mfa_required || s.require_mfa)
        && (!l.webinar_required || s.webinar)
        && (l.chat_allowed || s.chat == Who::Nobody)
        && narrowness(s.screen_share) >= narrowness(l.screen_share)
        && s.max_participants <= l.max_participants
}

fn policies() -> Vec<Policy> {
    vec![Policy::uk(), Policy::parse(FOUR).unwrap()]
}

#[test]
fn the_shipped_policies_parse_in_order() {
    let uk = Policy::uk();
    let ids: Vec<&str> = uk.levels().iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["official", "official-sensitive"]);
    assert_eq!(uk.lowest().id, "official");
    let four = Policy::parse(FOUR).unwrap();
    assert_eq!(four.levels().len(), 4);
    assert_eq!(four.rank("level-2"), Some(2));
}

#[test]
fn exhaustively_accepted_means_every_requirement_is_met() {
    for policy in policies() {
        for level in policy.levels() {
            for (s, has_passcode) in all_proposals() {
                for sign_in in [false, true] {
                    let p = Proposal {
                        settings: &s,
                        has_passcode,
                        sign_in_available: sign_in,
                    };
                    let unmet = level.unmet(&p);
                    assert_eq!(
                        unmet.is_empty(),
                        satisfies(level, &s, has_passcode, sign_in),
                        "{}: {s:?} passcode={has_passcode} sign-in={sign_in}: {unmet:?}",
                        level.id
                    );
                }
            }
        }
    }
}

#[test]
fn raising_meets_everything_that_settings_can_meet() {
    for policy in policies() {
        for level in policy.levels() {
            for (s, _) in all_proposals() {
                let raised = level.raise(&s);
                let p = Proposal {
                    settings: &raised,
                    has_passcode: true,
                    sign_in_available: true,
                };
                let left = level.unmet(&p);
                assert!(
                    left.iter().all(|u| u.0.contains("end-to-end")),
                    "{}: {s:?} -> {raised:?}: {left:?}",
                    level.id
                );
                assert_eq!(
                    level.raise(&raised),
                    raised,
                    "raising twice changes nothing"
                );
                if level
                    .unmet(&Proposal {
                        settings: &s,
                        has_passcode: true,
                        sign_in_available: true,
                    })
                    .is_empty()
                {
                    assert_eq!(raised, s, "settings that already comply are left alone");
                }
            }
        }
    }
}

#[test]
fn each_unmet_requirement_is_named() {
    let uk = Policy::uk();
    let sensitive = uk.level("official-sensitive").unwrap();
    let s = Settings::default();
    let unmet: Vec<String> = sensitive
        .unmet(&Proposal {
            settings: &s,
            has_passcode: false,
            sign_in_available: true,
        })
        .into_iter()
        .map(|u| u.0)
        .collect();
    assert_eq!(
        unmet,
        [
            "OFFICIAL-SENSITIVE requires a passcode",
            "OFFICIAL-SENSITIVE requires the lobby",
            "OFFICIAL-SENSITIVE requires members and partners to sign in with a second factor",
            "OFFICIAL-SENSITIVE allows screen sharing by hosts and presenters at most",
            "OFFICIAL-SENSITIVE allows at most 50 participants",
        ]
    );
    let four = Policy::parse(FOUR).unwrap();
    let secret = four.level("level-3").unwrap();
    let raised = secret.raise(&s);
    assert!(raised.e2ee, "raising to the level turns encryption on");
    let left = secret.unmet(&Proposal {
        settings: &raised,
        has_passcode: true,
        sign_in_available: true,
    });
    assert!(left.is_empty(), "{left:?}");
    let clear = Settings {
        e2ee: false,
        ..raised
    };
    let left = secret.unmet(&Proposal {
        settings: &clear,
        has_passcode: true,
        sign_in_available: true,
    });
    assert_eq!(left.len(), 1);
    assert!(left[0].0.contains("end-to-end encryption"), "{left:?}");
    // Without sign-in, a level that admits only verified people cannot be held.
    let confidential = four.level("level-2").unwrap();
    let left = confidential.unmet(&Proposal {
        settings: &confidential.raise(&s),
        has_passcode: true,
        sign_in_available: false,
    });
    assert!(left[0].0.contains("no sign-in configured"), "{left:?}");
}

#[test]
fn admission_by_level() {
    let four = Policy::parse(FOUR).unwrap();
    let member = |mfa| Identity {
        level: Level::Member,
        organisation: Some("Home".into()),
        name: None,
        mfa,
        subject: None,
    };
    let open = four.level("level-0").unwrap();
    let confidential = four.level("level-2").unwrap();
    assert!(open.admits(&Identity::guest()).is_ok());
    assert!(confidential
        .admits(&Identity::guest())
        .unwrap_err()
        .contains("Protection level 2"));
    assert!(confidential
        .admits(&member(false))
        .unwrap_err()
        .contains("second factor"));
    assert!(confidential.admits(&member(true)).is_ok());
}

#[test]
fn mistakes_in_a_policy_file_name_the_line() {
    let level = |id: &str, extra: &str| {
        format!(
            "[[level]]\nid = \"{id}\"\nname = \"{id}\"\nbanner = {{ text = \"{id}\", foreground = \"#ffffff\", background = \"#000000\" }}\nmax_participants = 10\n{extra}\n"
        )
    };
    let cases = [
        (
            format!("{}{}", level("a", ""), level("a", "")),
            "line 7: level \"a\": this id is used twice",
        ),
        (
            format!("{}{}", level("a", "guests_allowed = false"), level("b", "")),
            "line 7: level \"b\": is less strict than \"a\" below it (guests_allowed)",
        ),
        (
            level("a", "").replace("#000000", "#777777"),
            "line 1: level \"a\": the banner's colours have a contrast of 4.5",
        ),
        (
            level("a", "").replace("#000000", "black"),
            "must be #rrggbb",
        ),
        (
            level("a", "chat_allowed = false\nchat_retention_days = 5"),
            "chat_allowed is false",
        ),
        (level("a", "lobby_bypass = \"members\""), "not required"),
        (level("a", "colour = 1"), "unknown field"),
        ("".to_string(), "missing field"),
    ];
    for (text, expected) in cases {
        let e = Policy::parse(&text).unwrap_err();
        assert!(e.0.contains(expected), "expected {expected:?}, got {e}");
    }
    // TOML syntax errors come with their line from the parser.
    let e = Policy::parse("[[level]]\nid = \n").unwrap_err();
    assert!(e.0.contains("line 2"), "{e}");
}

fn arb_settings() -> impl Strategy<Value = Settings> {
    (
        any::<bool>(),
        0..4usize,
        0..4usize,
        0..3usize,
        any::<bool>(),
        any::<bool>(),
        1..2000usize,
    )
        .prop_map(|(lobby, ss, chat, by, guests, mfa, max)| Settings {
            lobby,
            screen_share: WHO[ss],
            chat: WHO[chat],
            lobby_bypass: BYPASS[by],
            guests_allowed: guests,
            require_mfa: mfa,
            max_participants: max,
            ..Settings::default()
        })
}

proptest! {
    /// No settings the engine accepts at a level violate any of its requirements,
    /// and whatever a higher level accepts, every lower level accepts too.
    #[test]
    fn accepted_settings_meet_the_level_and_all_below(s in arb_settings(), pass in any::<bool>(), rank in 0..4usize) {
        let four = Policy::parse(FOUR).unwrap();
        let p = Proposal { settings: &s, has_passcode: pass, sign_in_available: true };
        let level = &four.levels()[rank];
        if level.unmet(&p).is_empty() {
            prop_assert!(satisfies(level, &s, pass, true));
            for lower in &four.levels()[..rank] {
                prop_assert!(lower.unmet(&p).is_empty(), "{} accepts but {} does not", level.id, lower.id);
            }
        }
    }
}

#[test]
fn contrast_is_computed_as_wcag_does() {
    let black = colour("#000000").unwrap();
    let white = colour("#ffffff").unwrap();
    assert!((contrast(black, white) - 21.0).abs() < 0.01);
    assert!((contrast(white, white) - 1.0).abs() < 0.01);
}

#[test]
fn levels_that_can_never_be_held_here_say_why() {
    let four = Policy::parse(FOUR).unwrap();
    let why = |id: &str, sign_in: bool| four.level(id).unwrap().unavailable(sign_in);
    assert_eq!(why("level-0", false), None);
    assert_eq!(why("level-1", false), None);
    // Verified people only: held only where someone can sign in.
    assert!(why("level-2", false)
        .unwrap()
        .contains("no sign-in configured"));
    assert_eq!(why("level-2", true), None);
    // End-to-end encryption is there to be had (the meeting is created with it).
    assert_eq!(why("level-3", true), None);
    assert!(Policy::uk()
        .levels()
        .iter()
        .all(|l| l.unavailable(false).is_none()));
}

const TRANSLATED: &str = r##"[[level]]
id = "official"
name = "OFFICIAL"
banner = { text = "OFFICIAL", foreground = "#ffffff", background = "#1d70b8" }
max_participants = 10

[level.translations.nl]
name = "OFFICIEEL"
banner = "OFFICIEEL: routinezaken"

[level.translations.sv]
banner = "OFFICIELL"
"##;

#[test]
fn a_level_may_give_its_name_and_banner_per_language() {
    let p = Policy::parse(TRANSLATED).unwrap();
    let l = p.lowest();
    assert_eq!(l.name_in("nl"), "OFFICIEEL");
    // What a language leaves out is the level's own.
    assert_eq!(l.name_in("sv"), "OFFICIAL");
    assert_eq!(l.name_in("en"), "OFFICIAL");
    let view = serde_json::to_value(l.view()).unwrap();
    assert_eq!(
        view["translations"],
        serde_json::json!({
            "nl": {"name": "OFFICIEEL", "banner": "OFFICIEEL: routinezaken"},
            "sv": {"banner": "OFFICIELL"},
        })
    );
    // A level without translations sends none.
    let plain = Policy::parse(TRANSLATED.split("[level.translations").next().unwrap()).unwrap();
    let plain = serde_json::to_value(plain.lowest().view()).unwrap();
    assert!(plain.get("translations").is_none(), "{plain}");
}

#[test]
fn the_shipped_policies_speak_dutch_and_swedish() {
    for p in policies() {
        for l in p.levels() {
            for lang in ["nl", "sv"] {
                // The UK's markings stay as they are; their banners are worded.
                let t = l.translations.get(lang).map(|t| t.get_ref());
                assert!(t.is_some_and(|t| t.banner.is_some()), "{} in {lang}", l.id);
            }
        }
    }
}

#[test]
fn mistakes_in_translations_name_their_line() {
    let cases = [
        (
            TRANSLATED.replace("translations.sv", "translations.de"),
            "line 11: level \"official\": translations.de: the client has no language \"de\"; it has en, nl, sv",
        ),
        (
            TRANSLATED.replace("name = \"OFFICIEEL\"", "name = \" \""),
            "line 7: level \"official\": translations.nl: a name or banner must not be empty",
        ),
        (
            TRANSLATED.replace("banner = \"OFFICIELL\"", ""),
            "line 11: level \"official\": translations.sv: gives neither a name nor a banner",
        ),
        // Unknown keys are refused with their line, by the TOML parser.
        (
            TRANSLATED.replace("banner = \"OFFICIELL\"", "banner = \"OFFICIELL\"\ntitle = \"x\""),
            "line 13",
        ),
        (
            TRANSLATED.replace("banner = \"OFFICIELL\"", "banner = { text = \"OFFICIELL\" }"),
            "line 12",
        ),
    ];
    for (text, expected) in cases {
        let e = Policy::parse(&text).unwrap_err();
        assert!(e.0.contains(expected), "expected {expected:?}, got {e}");
    }
}

#[test]
fn a_level_may_require_a_webinar_but_not_with_end_to_end_encryption() {
    let level = |extra: &str| {
        format!(
            "[[level]]\nid = \"town-hall\"\nname = \"Town hall\"\nbanner = {{ text = \"Town hall\", foreground = \"#ffffff\", background = \"#00553e\" }}\nmax_participants = 2000\nwebinar_required = true\n{extra}"
        )
    };
    let p = Policy::parse(&level("")).unwrap();
    let l = p.lowest();
    let plain = Settings::default();
    let unmet = l.unmet(&Proposal {
        settings: &plain,
        has_passcode: false,
        sign_in_available: false,
    });
    assert!(
        unmet.iter().any(|u| u.0.contains("requires a webinar")),
        "{unmet:?}"
    );
    let raised = l.raise(&plain);
    assert!(raised.webinar);
    assert!(l
        .unmet(&Proposal {
            settings: &raised,
            has_passcode: false,
            sign_in_available: false,
        })
        .is_empty());
    let both = Policy::parse(&level("e2ee_required = true")).unwrap_err();
    assert!(
        both.0.contains("both a webinar and end-to-end encryption"),
        "{both}"
    );
}
