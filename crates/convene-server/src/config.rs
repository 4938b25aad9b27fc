//! Command-line flags, each also settable by an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The welcome to a meeting of this size and its pages must fit a socket's
/// outbound queue, or a joiner is dropped as too slow before the welcome is out.
const MAX_PARTICIPANTS_LIMIT: usize = 10_000;
// The 16 leave room for what else reaches a joiner at once (its offer, joins and
// updates of others while the pages go out).
const _: () = assert!(
    convene_meeting::welcome_messages(
        MAX_PARTICIPANTS_LIMIT,
        convene_meeting::RoomLimits::DEFAULT_CHAT_HISTORY
    ) + 16
        < crate::meeting::OUTBOUND_QUEUE
);

fn parse_max_participants(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_PARTICIPANTS_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number from 1 to {MAX_PARTICIPANTS_LIMIT}"
        )),
    }
}

/// Convene: self-hosted video meetings across organisations, from a plain browser.
///
/// With no command it serves http://127.0.0.1:8080/ and keeps its data in
/// ./convene-data. Every option can also be set by the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "convene", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Work with the audit log in the data folder.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Write the audit log (or one meeting's part of it) to standard output.
    Export {
        /// Only this meeting's events.
        #[arg(long)]
        meeting: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
    /// Check the hash chain of the whole audit log. Exits 0 and prints the number
    /// of rows and the last hash if intact; exits 2 and names the first broken row
    /// if not.
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Clone, Args)]
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

    /// Media worker threads, each with its own UDP port (--media-listen's port,
    /// then the next ones); a meeting's media stays on one worker. Defaults to
    /// the number of CPU cores.
    #[arg(long, env = "CONVENE_MEDIA_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub media_workers: Option<u16>,

    /// Deployment configuration file (TOML): the home organisation, its sign-in
    /// provider and trusted partners; see convene.example.toml. Without one,
    /// Convene runs as a trial: no sign-in, anyone may create meetings.
    #[arg(long = "config", env = "CONVENE_CONFIG")]
    pub config_file: Option<PathBuf>,

    /// Handling-level policy file (TOML; see docs/policy.md). Default: the UK
    /// levels OFFICIAL and OFFICIAL-SENSITIVE (policies/uk.toml).
    #[arg(long = "policy", env = "CONVENE_POLICY")]
    pub policy_file: Option<PathBuf>,

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

    /// Most people in one meeting (1 to 10 000).
    #[arg(long, env = "CONVENE_MAX_PARTICIPANTS", default_value_t = 100,
          value_parser = parse_max_participants)]
    pub max_participants: usize,

    /// Token that grants access to the admin API (audit export). Without one, the
    /// admin API is off.
    #[arg(long, env = "CONVENE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Log filter, in tracing's syntax (e.g. "info", "convene_sfu=debug").
    #[arg(long, env = "CONVENE_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    pub fn media_workers(&self) -> usize {
        self.media_workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        )
    }

    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_participants(value: &str) -> Result<usize, clap::Error> {
        Cli::try_parse_from(["convene", "--max-participants", value])
            .map(|cli| cli.config.max_participants)
    }

    #[test]
    fn meeting_size_is_bounded() {
        assert_eq!(max_participants("2000").unwrap(), 2000);
        assert_eq!(max_participants("10000").unwrap(), 10_000);
        for bad in ["0", "10001", "lots"] {
            let e = max_participants(bad).unwrap_err().to_string();
            assert!(e.contains("from 1 to 10000"), "{bad}: {e}");
        }
    }
}
