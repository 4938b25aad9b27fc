//! The log: tracing's fmt subscriber, text for people or JSON for log
//! shippers, filtered by `--log`. Whatever the filter asks, crates that log
//! whole messages at their verbose levels are held to `info`: tungstenite
//! writes every WebSocket frame at trace, and frames carry passcodes, host
//! keys and chat (found by tests/operations.rs, which greps a trace-level log
//! for every secret a meeting handles).

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Targets whose debug and trace events carry message payloads or secrets:
/// the WebSocket library prints whole frames; str0m's ICE agent (`is`)
/// prints each connection's ICE credentials, which ICE-TCP adoption trusts.
const PAYLOAD_LOGGERS: &[&str] = &["tungstenite", "tokio_tungstenite", "is"];

/// How log lines name a meeting: `m-` and the first 12 hex digits of the
/// SHA-256 of its id. The id itself is the link, and for a meeting without a
/// passcode the link is all it takes to join; logs are read more widely than
/// the database. (An operator with the id finds its lines with
/// `printf %s ID | sha256sum | cut -c1-12`, or the `logTag` of the admin API's
/// meeting export.)
pub fn meeting_tag(id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("m-{hex}")
}

pub fn init(filter: &str, format: LogFormat) {
    let payloads_kept_out = filter_fn(|meta| {
        !(*meta.level() > tracing::Level::INFO
            && PAYLOAD_LOGGERS.iter().any(|t| {
                let target = meta.target();
                target == *t
                    || target
                        .strip_prefix(t)
                        .is_some_and(|rest| rest.starts_with("::"))
            }))
    });
    let env = EnvFilter::new(filter);
    let registry = tracing_subscriber::registry().with(env);
    // Colours only for a person at a terminal: journald and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_filter(payloads_kept_out),
            )
            .init(),
        // Spans' fields (meeting, participant) on every line.
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .flatten_event(true)
                    .with_filter(payloads_kept_out),
            )
            .init(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_meeting_is_named_in_the_log_by_a_digest_of_its_id() {
        // printf %s abcd-efgh-jkmn | sha256sum | cut -c1-12
        let tag = super::meeting_tag("abcd-efgh-jkmn");
        assert_eq!(tag.len(), 14);
        assert!(tag.starts_with("m-") && !tag.contains("abcd-efgh"), "{tag}");
        assert_eq!(tag, super::meeting_tag("abcd-efgh-jkmn"));
    }
}
