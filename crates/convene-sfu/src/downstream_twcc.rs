//! Transport-wide congestion control (TWCC) only where the SFU receives.
//!
//! Publishers need TWCC: the SFU's feedback drives their browser's bandwidth
//! estimate, so their video adapts to their uplink. Feedback on what the SFU
//! *sends* would only be useful to a downstream bandwidth estimate, and the SFU
//! has none (no simulcast layers to choose between), yet it costs on every
//! forwarded packet: a sequence-number header extension, a record in str0m's
//! send register (1000 records, about 49 KiB per connection), and a feedback
//! report from every subscriber to parse, several times a second. So the offer
//! leaves the extension out of the m-lines on which the SFU sends; the answer
//! then leaves it out too and str0m stops numbering those packets (it checks the
//! remote's extmap per m-line, as it must for Firefox, which uses TWCC for video
//! only).
//!
//! When downstream congestion control arrives (simulcast), remove this filter.

use std::collections::HashSet;

/// The extension's URI in SDP `a=extmap` lines.
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// `sdp` without the TWCC `a=extmap` line in the media sections whose `a=mid` is
/// in `sending_mids`. Everything else, line endings included, is kept as it was.
pub(crate) fn without_downstream_twcc(sdp: &str, sending_mids: &HashSet<String>) -> String {
    if sending_mids.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len());
    // Sections are split at "m=" lines; the session part comes first.
    let mut section = String::new();
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            push_section(&mut out, &section, sending_mids);
            section.clear();
        }
        section.push_str(line);
    }
    push_section(&mut out, &section, sending_mids);
    out
}

fn push_section(out: &mut String, section: &str, sending_mids: &HashSet<String>) {
    let mid = section
        .split_inclusive('\n')
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"));
    let strip = section.starts_with("m=") && mid.is_some_and(|m| sending_mids.contains(m));
    for line in section.split_inclusive('\n') {
        if strip && is_twcc_extmap(line) {
            continue;
        }
        out.push_str(line);
    }
}

fn is_twcc_extmap(line: &str) -> bool {
    line.starts_with("a=extmap:") && line.trim_end().ends_with(TWCC_URI)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 0.0.0.0\r\n\
a=group:BUNDLE 0 1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:0\r\n\
a=recvonly\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=rtcp-fb:96 transport-cc\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=rtcp-fb:96 transport-cc\r\n";

    fn mids(m: &[&str]) -> HashSet<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_sending_sections_lose_the_extension() {
        let out = without_downstream_twcc(OFFER, &mids(&["1"]));
        let sections: Vec<&str> = out.split("m=video").collect();
        assert_eq!(sections.len(), 3);
        assert!(
            sections[1].contains("transport-wide-cc"),
            "publish m-line keeps TWCC"
        );
        assert!(
            !sections[2].contains("transport-wide-cc"),
            "{}",
            sections[2]
        );
        // The other extensions and the codec's feedback line stay.
        assert!(sections[2].contains("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"));
        assert!(sections[2].contains("a=rtcp-fb:96 transport-cc\r\n"));
        assert_eq!(
            out.len(),
            OFFER.len() - "a=extmap:3 ".len() - TWCC_URI.len() - 2
        );
    }

    #[test]
    fn nothing_changes_without_sending_sections() {
        assert_eq!(without_downstream_twcc(OFFER, &mids(&[])), OFFER);
        assert_eq!(without_downstream_twcc(OFFER, &mids(&["7"])), OFFER);
    }

    #[test]
    fn a_mid_that_only_prefixes_another_is_not_matched() {
        let out = without_downstream_twcc(OFFER, &mids(&["10"]));
        assert_eq!(out, OFFER);
    }
}
