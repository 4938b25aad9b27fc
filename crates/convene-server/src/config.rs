//! Command-line flags, each also settable by an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Convene: self-hosted video meetings across organisations, from a plain browser.
///
/// With no options it serves http://127.0.0.1:8080/ and keeps its data in
/// ./convene-data. Every option can also be set by the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "convene", version)]
pub struct Config {
    /// Address and port for the web pages, the API and signalling (HTTP and WebSocket).
    #[arg(long, env = "CONVENE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// UDP address and port for all media (one port for every participant).
    /// Port 0 picks a free port.
    #[arg(long, env = "CONVENE_MEDIA_LISTEN", default_value = "127.0.0.1:0")]
    pub media_listen: SocketAddr,

    /// Address browsers should send media to, when it differs from --media-listen
    /// (a wildcard bind such as 0.0.0.0, or a public address in front of NAT).
    /// The port defaults to the bound port.
    #[arg(long, env = "CONVENE_MEDIA_ANNOUNCE")]
    pub media_announce: Option<SocketAddr>,

    /// Folder for Convene's data (the SQLite database).
    #[arg(long, env = "CONVENE_DATA_DIR", default_value = "convene-data")]
    pub data_dir: PathBuf,

    /// Base URL people use to reach this server, for join links
    /// (default: http://<listen address>).
    #[arg(long, env = "CONVENE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Seconds a participant whose connection dropped may take to come back
    /// before the others see them leave.
    #[arg(long, env = "CONVENE_RECONNECT_GRACE", default_value_t = 5)]
    pub reconnect_grace: u64,

    /// Most people in one meeting.
    #[arg(long, env = "CONVENE_MAX_PARTICIPANTS", default_value_t = 100)]
    pub max_participants: usize,

    /// Log filter, in tracing's syntax (e.g. "info", "convene_sfu=debug").
    #[arg(long, env = "CONVENE_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}
