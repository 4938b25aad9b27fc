//! Invitations from a real server: the iCalendar file is well-formed RFC 5545
//! (CRLF, folded at 75 octets, TEXT escaped, the required properties), names
//! the join link and the handling level, and never holds the passcode; nor
//! do the text and `mailto:` link. Every HTML page and the file carry the
//! strict Content-Security-Policy (only this origin, no inline code).

mod common;

use serde_json::{json, Value};

const PASSCODE: &str = "Tulip-4711";

/// The content lines of an iCalendar object: checks CRLF and line length,
/// then unfolds (RFC 5545 3.1).
fn content_lines(ics: &str) -> Vec<String> {
    assert!(ics.ends_with("\r\n"), "ends in CRLF");
    let physical: Vec<&str> = ics[..ics.len() - 2].split("\r\n").collect();
    let mut lines: Vec<String> = Vec::new();
    for p in physical {
        assert!(
            !p.contains('\n') && !p.contains('\r'),
            "a bare CR or LF: {p:?}"
        );
        assert!(p.len() <= 75, "{} octets: {p:?}", p.len());
        match p.strip_prefix(' ') {
            Some(rest) => lines.last_mut().expect("no fold first").push_str(rest),
            None => lines.push(p.to_string()),
        }
    }
    lines
}

/// A property's value (parameters dropped), TEXT unescaped.
fn value(lines: &[String], name: &str) -> Option<String> {
    let line = lines
        .iter()
        .find(|l| l.split([':', ';']).next() == Some(name))?;
    let raw = &line[line.find(':')? + 1..];
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') | Some('N') => out.push('\n'),
                Some(e @ ('\\' | ';' | ',')) => out.push(e),
                other => panic!("bad escape \\{other:?} in {name}"),
            }
        } else {
            assert!(
                name == "URL" || !matches!(c, ';' | ','),
                "unescaped {c:?} in {name}: {raw}"
            );
            out.push(c);
        }
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invitation_has_link_and_level_and_never_the_passcode() {
    let server = common::server().await;
    let title = "Budget; review, part 2 \\ draft — a long title for folding: Årsplan och budget";
    let (status, created) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(&json!({ "title": title, "passcode": PASSCODE }).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let m: Value = serde_json::from_str(&created).unwrap();
    let (id, join_url, level) = (
        m["id"].as_str().unwrap(),
        m["joinUrl"].as_str().unwrap(),
        m["level"]["name"].as_str().unwrap(),
    );
    assert!(!level.is_empty());

    let (status, ics) = common::http(
        &server,
        "GET",
        &format!("/api/meetings/{id}/invitation.ics"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{ics}");
    assert!(!ics.contains(PASSCODE) && !ics.to_lowercase().contains("tulip"));
    let lines = content_lines(&ics);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split([':', ';']).next().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"BEGIN"));
    assert_eq!(lines[0], "BEGIN:VCALENDAR");
    assert_eq!(lines.last().unwrap(), "END:VCALENDAR");
    assert!(
        lines.contains(&"BEGIN:VEVENT".to_string()) && lines.contains(&"END:VEVENT".to_string())
    );
    assert_eq!(value(&lines, "VERSION").as_deref(), Some("2.0"));
    assert!(value(&lines, "PRODID").is_some());
    assert!(value(&lines, "UID").unwrap().starts_with(&format!("{id}@")));
    let stamp = value(&lines, "DTSTAMP").unwrap();
    assert!(stamp.len() == 16 && stamp.ends_with('Z'), "{stamp}");
    let start = lines.iter().find(|l| l.starts_with("DTSTART")).unwrap();
    assert!(
        start.starts_with("DTSTART;VALUE=DATE:") && start.len() == 27,
        "{start}"
    );
    assert_eq!(value(&lines, "SUMMARY").as_deref(), Some(title));
    assert_eq!(value(&lines, "URL").as_deref(), Some(join_url));
    let description = value(&lines, "DESCRIPTION").unwrap();
    assert!(description.contains(&format!("Join the meeting: {join_url}\n")));
    assert!(description.contains(&format!("Handling level: {level}\n")));
    assert!(description.contains("no account and nothing to download"));
    assert!(description.contains("needs a passcode. It is not in this invitation"));

    let (status, inv) = common::http(
        &server,
        "GET",
        &format!("/api/meetings/{id}/invitation"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let inv: Value = serde_json::from_str(&inv).unwrap();
    assert_eq!(inv["text"].as_str().unwrap(), description);
    assert!(inv["mailto"]
        .as_str()
        .unwrap()
        .starts_with("mailto:?subject="));
    assert!(!inv.to_string().contains(PASSCODE) && !inv.to_string().contains("Tulip"));

    let (status, _) = common::http(
        &server,
        "GET",
        "/api/meetings/zzzz-zzzz-zzzz/invitation.ics",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// The header lines of a GET of `path`.
async fn headers(server: &convene_server::RunningServer, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let head = text.split_once("\r\n\r\n").unwrap().0.to_lowercase();
    (text[9..12].parse().unwrap(), head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_has_a_strict_content_security_policy() {
    let server = common::server().await;
    let id = common::create_meeting(&server, "CSP").await;
    for path in [
        "/".to_string(),
        format!("/m/{id}"),
        "/m/zzzz-zzzz-zzzz".into(),
        "/check".into(),
        "/assets/meeting.js".into(),
        format!("/api/meetings/{id}/invitation.ics"),
    ] {
        let (status, head) = headers(&server, &path).await;
        assert!(status == 200 || status == 404, "{path}: {status}");
        let csp = head
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("{path} has no CSP"));
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for needed in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "media-src 'self' blob:",
            "img-src 'self' data:",
        ] {
            assert!(directives.contains(&needed), "{path}: no {needed} in {csp}");
        }
        // Nothing but this origin anywhere (and data: for the empty favicon,
        // blob: for a video file the page plays): no hosts, no wildcards, no
        // blob: for scripts or anything but media, no inline code.
        for d in &directives {
            for source in d.split_whitespace().skip(1) {
                assert!(
                    ["'self'", "'none'"].contains(&source)
                        || (d.starts_with("img-src") && source == "data:")
                        || (d.starts_with("media-src") && source == "blob:"),
                    "{path}: {d} allows {source}"
                );
            }
        }
    }
}

/// The calendar file and the sign-in problem pages come in the reader's
/// language: the one asked for (`?lang=`), the picker's cookie, or
/// Accept-Language; the level's name as the policy gives it in that language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calendar_file_and_sign_in_pages_speak_dutch_and_swedish() {
    let server = common::server_with(|c| {
        c.policy_file = Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../policies/four-levels.toml"),
        );
    })
    .await;
    let (status, created) = common::http(
        &server,
        "POST",
        "/api/meetings",
        Some(
            &json!({ "title": "Overleg", "passcode": PASSCODE, "level": "level-1", "raise": true })
                .to_string(),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = serde_json::from_str::<Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ics = |query: &'static str, header: &'static str| {
        let (server, id) = (&server, id.clone());
        async move {
            let path = format!("/api/meetings/{id}/invitation.ics{query}");
            let (status, body) = common::http_with(server, "GET", &path, None, header).await;
            assert_eq!(status, 200, "{body}");
            let lines = content_lines(&body);
            value(&lines, "DESCRIPTION").unwrap()
        }
    };
    let nl = ics("?lang=nl", "Accept-Language: sv\r\n").await;
    assert!(nl.contains("Rubricering: Beschermingsniveau 1\n"), "{nl}");
    assert!(nl.contains("Zo neemt u deel"), "{nl}");
    assert!(
        nl.contains("Voor deze vergadering is een toegangscode nodig"),
        "{nl}"
    );
    let sv = ics("", "Accept-Language: de-DE, sv-SE;q=0.9, en;q=0.8\r\n").await;
    assert!(sv.contains("Skyddsnivå: Skyddsnivå 1\n"), "{sv}");
    let en = ics("", "").await;
    assert!(en.contains("Handling level: Protection level 1\n"), "{en}");
    // The page's text (GET …/invitation) follows the same choice.
    let (_, inv) = common::http(
        &server,
        "GET",
        &format!("/api/meetings/{id}/invitation?lang=sv"),
        None,
    )
    .await;
    let inv: Value = serde_json::from_str(&inv).unwrap();
    assert_eq!(inv["subject"], "Inbjudan: Overleg");
    assert!(inv["text"].as_str().unwrap().contains("Skyddsnivå 1"));

    // Sign-in problem pages: Accept-Language, or the picker's cookie before it.
    let (status, page) = common::http_with(
        &server,
        "GET",
        "/auth/callback/home?error=access_denied",
        None,
        "Accept-Language: nl-NL,nl;q=0.9,en;q=0.5\r\n",
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("<html lang=\"nl\">"), "{page}");
    assert!(page.contains("Inloggen is niet gelukt"), "{page}");
    assert!(
        page.contains("U of uw organisatie heeft het inloggen afgewezen."),
        "{page}"
    );
    assert!(page.contains("Terug naar Convene"), "{page}");
    let (_, page) = common::http_with(
        &server,
        "GET",
        "/auth/callback/home",
        None,
        "Accept-Language: nl\r\nCookie: convene-lang=sv\r\n",
    )
    .await;
    assert!(
        page.contains("<html lang=\"sv\">")
            && page.contains("Svaret från inloggningstjänsten var ofullständigt."),
        "{page}"
    );
    let (status, page) = common::http_with(
        &server,
        "GET",
        "/auth/login?org=nowhere",
        None,
        "Accept-Language: sv\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        page.contains("Du kan inte logga in via den organisationen"),
        "{page}"
    );
    let (_, page) = common::http(
        &server,
        "GET",
        "/auth/callback/home?error=access_denied",
        None,
    )
    .await;
    assert!(
        page.contains("<html lang=\"en\">") && page.contains("declined the sign-in"),
        "{page}"
    );
}
