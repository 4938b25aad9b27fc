//! The server's ICE candidates on every m-line of an offer, each list closed by
//! `a=end-of-candidates`.
//!
//! str0m writes the candidates into the first m-line only, since every m-line is
//! in one BUNDLE group and so shares that m-line's transport. A client that reads
//! candidates per m-line (aiortc does) then has none for the others, and never
//! connects when it looks for them elsewhere, for instance when an offer brings
//! two m-lines of the same kind. Repeating the candidates in each bundled m-line
//! is what JSEP itself does for offers without `a=bundle-only` (RFC 8829 §5.2.1);
//! browsers and str0m merge the duplicates. `a=end-of-candidates` says that no
//! more will come (the server trickles nothing: it is ICE-lite and knows its
//! address), so a client need not wait for any.
//!
//! (The other way, `a=bundle-only` with port 0 on the other m-lines, reads as a
//! rejected m-line to clients that do not know RFC 8843, aiortc among them.)

/// `sdp` with every `a=candidate` line it holds (first occurrence order, no
/// duplicates) followed by `a=end-of-candidates` in each media section, right after
/// the section's `c=` line (or its `m=` line if it has none). Candidates at session
/// level, if any, stay there too. Everything else is kept as it was; new lines take
/// the line ending of the `m=` line they follow.
pub(crate) fn candidates_on_every_m_line(sdp: &str) -> String {
    let candidates: Vec<&str> = {
        let mut seen: Vec<&str> = Vec::new();
        for line in sdp.split_inclusive('\n') {
            let l = line.trim_end();
            if l.starts_with("a=candidate:") && !seen.contains(&l) {
                seen.push(l);
            }
        }
        seen
    };
    if candidates.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + sdp.len() / 4);
    let mut in_media = false;
    // Where the candidates go in this section: after `c=`, else after `m=`.
    let mut pending: Option<(String, &'static str)> = None;
    let flush = |out: &mut String, pending: &mut Option<(String, &'static str)>| {
        if let Some((buffered, eol)) = pending.take() {
            out.push_str(&buffered);
            for c in &candidates {
                out.push_str(c);
                out.push_str(eol);
            }
            out.push_str("a=end-of-candidates");
            out.push_str(eol);
        }
    };
    for line in sdp.split_inclusive('\n') {
        let l = line.trim_end();
        if l.starts_with("m=") {
            flush(&mut out, &mut pending);
            in_media = true;
            pending = Some((line.to_owned(), line_ending(line)));
            continue;
        }
        if in_media && (l.starts_with("a=candidate:") || l == "a=end-of-candidates") {
            continue; // written once, in order, where the section's list goes
        }
        match &mut pending {
            // The connection line comes right after `m=` (RFC 8866 §5); anything
            // else there means the section has none.
            Some((buffered, _)) if l.starts_with("c=") => {
                buffered.push_str(line);
                flush(&mut out, &mut pending);
            }
            Some(_) => {
                flush(&mut out, &mut pending);
                out.push_str(line);
            }
            None => out.push_str(line),
        }
    }
    flush(&mut out, &mut pending);
    out
}

fn line_ending(line: &str) -> &'static str {
    if line.ends_with("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANDIDATE: &str = "a=candidate:fffe 1 udp 2130706175 10.0.0.1 5000 typ host ufrag 2IeU";

    /// The shape str0m writes: the candidate in the first m-line only.
    fn offer() -> String {
        format!(
            "v=0\r\n\
o=str0m-0.25.0 1 2 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE a b c\r\n\
a=ice-lite\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
{CANDIDATE}\r\n\
a=ice-ufrag:2IeU\r\n\
a=mid:a\r\n\
a=sendonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:2IeU\r\n\
a=mid:b\r\n\
a=sendonly\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:2IeU\r\n\
a=mid:c\r\n\
a=recvonly\r\n"
        )
    }

    fn sections(sdp: &str) -> Vec<String> {
        sdp.split("m=").skip(1).map(|s| format!("m={s}")).collect()
    }

    #[test]
    fn every_m_line_gets_the_candidate_and_its_end_after_the_connection_line() {
        let out = candidates_on_every_m_line(&offer());
        let sections = sections(&out);
        assert_eq!(sections.len(), 3);
        for s in &sections {
            let lines: Vec<&str> = s.split("\r\n").collect();
            assert!(lines[1].starts_with("c=IN IP4"), "{s}");
            assert_eq!(lines[2], CANDIDATE, "{s}");
            assert_eq!(lines[3], "a=end-of-candidates", "{s}");
            assert_eq!(s.matches("a=candidate:").count(), 1, "{s}");
        }
        // Nothing else changed: only the added lines make the difference.
        let added = 2 * (CANDIDATE.len() + 2) + 3 * "a=end-of-candidates\r\n".len();
        assert_eq!(out.len(), offer().len() + added);
        assert!(out.starts_with("v=0\r\no=str0m-0.25.0 1 2 IN IP4 0.0.0.0\r\n"));
        assert!(!out.contains("\r\r") && !out.contains("\n\n"));
    }

    #[test]
    fn several_candidates_keep_their_order_and_are_not_doubled() {
        let second = "a=candidate:abcd 1 udp 2130706175 192.0.2.7 5000 typ host";
        let sdp = offer().replacen(
            &format!("{CANDIDATE}\r\n"),
            &format!("{CANDIDATE}\r\n{second}\r\n"),
            1,
        );
        let once = candidates_on_every_m_line(&sdp);
        for s in sections(&once) {
            let first_at = s.find(CANDIDATE).unwrap();
            let second_at = s.find(second).unwrap();
            assert!(first_at < second_at, "{s}");
            assert_eq!(s.matches("a=candidate:").count(), 2, "{s}");
            assert_eq!(s.matches("a=end-of-candidates").count(), 1, "{s}");
        }
        // Applying it again changes nothing.
        assert_eq!(candidates_on_every_m_line(&once), once);
    }

    #[test]
    fn a_section_without_a_connection_line_gets_them_after_its_m_line() {
        let sdp = "v=0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\na=mid:x\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=mid:y\n";
        let out = candidates_on_every_m_line(sdp);
        assert_eq!(
            out,
            "v=0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\na=end-of-candidates\na=mid:x\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\na=end-of-candidates\na=mid:y\n"
        );
    }

    #[test]
    fn an_sdp_without_candidates_is_left_alone() {
        let sdp = offer().replace(&format!("{CANDIDATE}\r\n"), "");
        assert_eq!(candidates_on_every_m_line(&sdp), sdp);
    }
}
