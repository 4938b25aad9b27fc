//! What people may call themselves, and what chat text may carry, so that no
//! one can pass for someone or something they are not.
//!
//! A display name is shown next to badges the client draws for the role and the
//! verified identity. Left unchecked, a name could imitate those badges
//! ("Ann (host)"), hide characters (zero-width spaces, so that two names look
//! the same but differ), or reverse the text that follows it on screen (the
//! right-to-left override, U+202E). [`display_name`] normalises a name to NFC,
//! strips invisible and direction-changing characters, and refuses names that
//! imitate a role label; [`chat_text`] strips the direction-changing
//! characters from chat, so a message cannot reverse what is shown after it.

use unicode_normalization::UnicodeNormalization;

/// Why a name was refused; the message is for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("please give a name")]
    Empty,
    #[error("a name is at most {0} characters")]
    TooLong(usize),
    #[error(
        "a name may not contain \"{0}\": roles and sign-in are shown by Convene itself, next to the name"
    )]
    RoleLabel(String),
}

/// Characters that change the direction of the text around them: the
/// embeddings and overrides (U+202A–U+202E), the isolates (U+2066–U+2069),
/// the left-to-right and right-to-left marks (U+200E, U+200F) and the Arabic
/// letter mark (U+061C).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// The format characters (general category Cf) of Unicode 15, as ranges: all
/// invisible, and all of them either steer the layout of the text around them
/// or hide in it (zero-width space, joiners, soft hyphen, word joiner, byte
/// order mark, tags). Listed from the Unicode Character Database.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Characters that are not format characters but show as nothing, or as a
/// blank that is not a space: the combining grapheme joiner, the Hangul fillers,
/// Khmer inherent vowels, Mongolian variation selectors and the blank braille
/// pattern. (Emoji variation selectors, U+FE00–U+FE0F, stay: they change how a
/// visible character looks, and hide nothing.)
const BLANK: &[(u32, u32)] = &[
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180D),
    (0x180F, 0x180F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFFA0, 0xFFA0),
];

fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Characters a name never keeps: controls, format characters (which include
/// every bidi control and the zero-width ones) and invisible blanks.
pub fn is_hidden(c: char) -> bool {
    c.is_control() || in_ranges(FORMAT, c) || in_ranges(BLANK, c)
}

/// Words the client shows in brackets, or that people read as a role or a
/// verified status: a name may not carry them in brackets. Compared after
/// compatibility folding, in lower case, with everything but letters and
/// digits removed ("Co-Host", "co host" and "ＣＯＨＯＳＴ" are all "cohost").
const ROLE_LABELS: &[&str] = &[
    "host",
    "cohost",
    "presenter",
    "participant",
    "moderator",
    "organiser",
    "organizer",
    "guest",
    "member",
    "partner",
    "verified",
    "unverified",
    "you",
];

/// Opening and closing brackets, beyond the ASCII ones that compatibility
/// folding maps fullwidth and superscript forms to.
const OPENING: &str = "([{<\u{27E8}\u{27E6}\u{3010}\u{3014}\u{3016}\u{3018}\u{301A}\u{300C}\u{300E}\u{2985}\u{FD3E}\u{2768}\u{276A}\u{276C}\u{276E}\u{2770}\u{2772}\u{2774}\u{2045}\u{2329}\u{3008}\u{300A}";
const CLOSING: &str = ")]}>\u{27E9}\u{27E7}\u{3011}\u{3015}\u{3017}\u{3019}\u{301B}\u{300D}\u{300F}\u{2986}\u{FD3F}\u{2769}\u{276B}\u{276D}\u{276F}\u{2771}\u{2773}\u{2775}\u{2046}\u{232A}\u{3009}\u{300B}";

/// The first role label found in brackets in `name`, as written there.
fn role_label(name: &str) -> Option<String> {
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if !is_opening(*c) {
            continue;
        }
        // Up to the next closing bracket, or the end: an unclosed "(host" reads
        // as a label cut short.
        let end = chars[i + 1..]
            .iter()
            .position(|c| is_closing(*c))
            .map_or(chars.len(), |n| i + 1 + n);
        let inside: String = chars[i + 1..end].iter().collect();
        let folded: String = inside
            .nfkc()
            .flat_map(char::to_lowercase)
            .filter(|c| c.is_alphanumeric())
            .collect();
        if ROLE_LABELS.contains(&folded.as_str()) {
            let shown: String = chars[i..(end + 1).min(chars.len())].iter().collect();
            return Some(shown);
        }
    }
    None
}

fn is_opening(c: char) -> bool {
    OPENING.contains(c) || c.to_string().nfkc().any(|f| OPENING.contains(f))
}

fn is_closing(c: char) -> bool {
    CLOSING.contains(c) || c.to_string().nfkc().any(|f| CLOSING.contains(f))
}

/// A display name as it will be shown: NFC, without hidden characters, with
/// whitespace runs made one space and the ends trimmed; 1 to `max_chars`
/// characters; no role label in brackets.
pub fn display_name(raw: &str, max_chars: usize) -> Result<String, NameError> {
    let visible: String = raw.nfc().filter(|c| !is_hidden(*c)).collect();
    // Removing a character can let two others compose: normalise again.
    let visible: String = visible.nfc().collect();
    let name = visible.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > max_chars {
        return Err(NameError::TooLong(max_chars));
    }
    if let Some(label) = role_label(&name) {
        return Err(NameError::RoleLabel(label));
    }
    Ok(name)
}

/// Chat text without bidi controls, so that a message cannot reverse or
/// reorder the text shown after it (isolates go too: only balanced ones would
/// be harmless, and nothing needs them in a chat line). Everything else is
/// kept as sent.
pub fn chat_text(raw: &str) -> String {
    raw.chars().filter(|c| !is_bidi_control(*c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        display_name(raw, 64).unwrap_or_else(|e| panic!("{raw:?} refused: {e}"))
    }

    #[test]
    fn names_are_nfc_with_whitespace_collapsed() {
        // "e" + combining acute accent becomes one "é".
        assert_eq!(ok("Ame\u{301}lie"), "Am\u{E9}lie");
        assert_eq!(ok("  Bob \n\t Smith "), "Bob Smith");
        assert_eq!(ok("Ann\u{2028}Lee"), "Ann Lee");
        assert_eq!(ok("José Ñúñez"), "José Ñúñez");
        // Right-to-left scripts and emoji stay as they are.
        assert_eq!(ok("שרה כהן"), "שרה כהן");
        assert_eq!(ok("سارة"), "سارة");
        assert_eq!(ok("Ann \u{1F600}\u{FE0F}"), "Ann \u{1F600}\u{FE0F}");
    }

    #[test]
    fn bidi_controls_are_stripped_from_names() {
        // "Bob" + RLO + "nimda": shown as "Bobadmin" reversed without the strip.
        assert_eq!(ok("Bob\u{202E}nimda"), "Bobnimda");
        for c in ('\u{202A}'..='\u{202E}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{200E}', '\u{200F}', '\u{061C}'])
        {
            assert!(is_bidi_control(c));
            assert_eq!(ok(&format!("A{c}nn")), "Ann", "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn invisible_characters_are_stripped_from_names() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{AD}',
            '\u{180E}',
            '\u{2061}',
            '\u{206F}',
            '\u{FFF9}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{34F}',
            '\u{3164}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{2800}',
            '\u{7}',
            '\u{1B}',
            '\u{7F}',
            '\u{85}',
        ] {
            assert!(is_hidden(c), "U+{:04X}", c as u32);
            assert_eq!(ok(&format!("A{c}nn")), "Ann", "U+{:04X}", c as u32);
        }
        // Nothing visible left: no name.
        assert_eq!(
            display_name("\u{200B}\u{3164} \u{FEFF}", 64),
            Err(NameError::Empty)
        );
        // Visible characters are not hidden.
        for c in ['a', ' ', 'é', 'ש', '\u{FE0F}', '-', '\u{301}'] {
            assert!(!is_hidden(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn a_stripped_character_cannot_stop_composition() {
        // "e", a zero-width space, then a combining accent: "é" once the space goes.
        assert_eq!(ok("Ame\u{200B}\u{301}lie"), "Am\u{E9}lie");
    }

    #[test]
    fn the_length_counts_what_is_left() {
        assert_eq!(ok(&format!("{}\u{200B}", "n".repeat(64))), "n".repeat(64));
        assert_eq!(
            display_name(&"n".repeat(65), 64),
            Err(NameError::TooLong(64))
        );
        // A decomposed name is counted composed.
        assert!(display_name(&"e\u{301}".repeat(64), 64).is_ok());
    }

    #[test]
    fn role_labels_in_brackets_are_refused() {
        for name in [
            "Someone (host)",
            "Someone (Host)",
            "Someone [host]",
            "Someone {HOST}",
            "Someone <host>",
            "Someone (co-host)",
            "Someone (Co Host)",
            "Someone (cohost)",
            "Someone (guest)",
            "Someone (member)",
            "Someone (partner)",
            "Someone (moderator)",
            "Someone (organiser)",
            "Someone (organizer)",
            "Someone (presenter)",
            "Someone (you)",
            "Someone (verified)",
            "(host) Someone",
            "Someone ( host )",
            "Someone (host",
            "Someone ((host))",
            // Fullwidth letters and brackets fold to the same label.
            "Someone \u{FF08}\u{FF48}\u{FF4F}\u{FF53}\u{FF54}\u{FF09}",
            "Someone \u{3010}host\u{3011}",
            // Hidden characters inside the label are stripped before the check.
            "Someone (ho\u{200B}st)",
            "Someone (h\u{AD}ost)",
        ] {
            assert!(
                matches!(display_name(name, 64), Err(NameError::RoleLabel(_))),
                "{name:?} was accepted"
            );
        }
        let e = display_name("Someone (host)", 64).unwrap_err();
        assert!(e.to_string().contains("\"(host)\""), "{e}");
    }

    #[test]
    fn other_brackets_and_role_words_outside_brackets_are_fine() {
        for name in [
            "Someone (Finance)",
            "Ann (she/her)",
            "Host",
            "Ghost (Ops)",
            "Sam Hostler",
            "Bob (hosting)",
            "Dr. Jane Guest",
            "Partner Agency Ltd",
            "(Bob)",
        ] {
            assert_eq!(ok(name), name);
        }
    }

    #[test]
    fn chat_loses_bidi_controls_and_keeps_everything_else() {
        assert_eq!(chat_text("see \u{202E}gpj.exe"), "see gpj.exe");
        assert_eq!(chat_text("a\u{2067}b\u{2069}c\u{200F}"), "abc");
        let kept = "line one\nline two \u{200D}\u{1F468}\u{200D}\u{1F469} שלום (host)";
        assert_eq!(chat_text(kept), kept);
    }
}
