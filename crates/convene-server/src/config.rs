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
    /// Check a deployment file (its sections and its [server] options) and a
    /// policy file without starting anything: prints FILE:LINE:COL: problem
    /// for each problem found and exits 1, or says the files are fine and
    /// exits 0. The policy checked is POLICY, else the one the file's
    /// [server] policy names.
    CheckConfig {
        file: PathBuf,
        policy: Option<PathBuf>,
    },
    /// Copy the database in the data folder to FILE while the server may be
    /// running (a consistent snapshot; SQLite's VACUUM INTO), then check the
    /// copy (integrity, audit chain) and say what it holds. FILE must not
    /// exist. To restore: stop the server, put the copy in place of
    /// convene.db in the data folder (removing convene.db-wal and
    /// convene.db-shm), start it.
    Backup { file: PathBuf },
    /// Write what is kept about a meeting, or about a person (for a subject
    /// access request), to standard output: JSON Lines for a records system,
    /// or an HTML report to read, print or file. Exits 1 when nothing is
    /// kept about the meeting, 2 when the id or name is malformed.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Remove what the retention settings (--retain-meetings-days,
    /// --retain-audit-days) no longer keep, as the running server does every
    /// hour: with --dry-run, only say what would go; with --now, remove it
    /// (one transaction; then a checkpoint of the log it left). Use --now with
    /// the server stopped: a running server purges by itself, and takes a purge
    /// by another process for a change behind its back.
    #[command(group(clap::ArgGroup::new("mode").required(true).args(["dry_run", "now"])))]
    Purge {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        now: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ExportCommand {
    /// The meeting's facts (no secrets), who took part with their verified
    /// identities and times, and its audit rows.
    Meeting {
        id: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: RecordsFormat,
    },
    /// Every meeting and audit row that names a person: by the name shown in
    /// meetings or their verified sign-in (e.g. email), ignoring case.
    Person {
        name_or_email: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: RecordsFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordsFormat {
    Jsonl,
    Html,
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
    /// Check the hash chain of the whole audit log, and the log against its
    /// checkpoints (--audit-checkpoints, verified with --audit-key-file).
    /// Exits 0 and prints the number of rows and the last hash if intact (with
    /// warnings, e.g. rows no checkpoint covers yet); exits 2 and says what
    /// breaks it if not: a changed row, rows rewritten with recomputed hashes,
    /// rows appended later, truncation, or a forged checkpoint.
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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

    /// PostgreSQL to keep meetings, settings and the audit log in, instead of
    /// SQLite in --data-dir: `postgres://USER:PASSWORD@HOST:PORT/DATABASE`,
    /// or key=value form (`host=/run/postgresql user=convene dbname=convene`).
    /// Its schema is made or brought up to date at start.
    #[arg(long, env = "CONVENE_DATABASE", value_name = "URL")]
    pub database: Option<String>,

    /// Run as one node of several that share --database (PostgreSQL) and
    /// coordinate through --redis: each meeting runs on one node, and a
    /// join that reaches another is sent there (docs/cluster-design.md).
    #[arg(long, env = "CONVENE_CLUSTER", requires_all = ["database", "redis"])]
    pub cluster: bool,

    /// Redis the nodes of a cluster coordinate through: `redis://HOST:PORT/DB`
    /// (`rediss://` for TLS, a password as `redis://:PASSWORD@HOST`), or
    /// `redis+unix:///path/to/socket`.
    #[arg(long, env = "CONVENE_REDIS", value_name = "URL", requires = "cluster")]
    pub redis: Option<String>,

    /// PEM file with the certificate authority Redis's certificate must come
    /// from (`rediss://`), instead of those the system trusts.
    #[arg(
        long,
        env = "CONVENE_REDIS_CA",
        value_name = "FILE",
        requires = "redis"
    )]
    pub redis_ca: Option<PathBuf>,

    /// This node's name in the cluster, unique among the nodes (default: the
    /// host and port of its public URL).
    #[arg(long, env = "CONVENE_NODE_ID", requires = "cluster")]
    pub node_id: Option<String>,

    /// With --cluster: a webinar's audience on its node at which newcomers
    /// are sent to another node, which receives the stage once and serves
    /// them (cascading); 0: never. The default is about what one media
    /// worker forwards to (BENCHMARKS.md).
    #[arg(
        long,
        env = "CONVENE_CASCADE_AFTER",
        default_value_t = 750,
        value_name = "PEOPLE"
    )]
    pub cascade_after: u32,

    /// With --cluster: the URLs the other nodes may have, so that a forged
    /// record in Redis cannot send people elsewhere: comma-separated
    /// origins, `*.` for every name under a domain
    /// (`https://*.meet.example.org`), without a port for any port
    /// (default: this node's scheme and the domain its host is in).
    #[arg(long, env = "CONVENE_NODE_URLS", value_name = "ORIGINS", requires = "cluster", value_parser = parse_node_urls)]
    pub node_urls: Option<String>,

    /// Base URL people use to reach this server, for join links
    /// (default: http://<listen address>, or https:// with --tls-cert).
    #[arg(long, env = "CONVENE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// PEM file with this server's TLS certificate, then its intermediates.
    /// With --tls-key, Convene serves https and wss on --listen itself, and
    /// reloads both files when they change and on SIGHUP.
    #[arg(long, env = "CONVENE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the certificate's private key (PKCS#8, RSA or EC).
    #[arg(long, env = "CONVENE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Address for a second, plain-HTTP listener (usually port 80) that
    /// answers every request with a redirect (308) to the same path over
    /// https, and serves nothing else. Needs --tls-cert and --tls-key.
    #[arg(long, env = "CONVENE_HTTP_REDIRECT_LISTEN")]
    pub http_redirect_listen: Option<SocketAddr>,

    /// Seconds a participant whose connection dropped may take to come back
    /// before the others see them leave.
    #[arg(long, env = "CONVENE_RECONNECT_GRACE", default_value_t = 5)]
    pub reconnect_grace: u64,

    /// Seconds a graceful stop (SIGTERM) may take to hold everyone's place
    /// for the restart, tell them and close their sockets; the audit log's
    /// last flush and checkpoint follow.
    #[arg(long, env = "CONVENE_SHUTDOWN_DEADLINE", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub shutdown_deadline: u64,

    /// Most people in one meeting (1 to 10 000).
    #[arg(long, env = "CONVENE_MAX_PARTICIPANTS", default_value_t = 100,
          value_parser = parse_max_participants)]
    pub max_participants: usize,

    /// Token that grants access to the admin API (audit export). Without one, the
    /// admin API is off.
    #[arg(long, env = "CONVENE_ADMIN_TOKEN", hide_env_values = true,
          value_parser = crate::admin::parse_token)]
    pub admin_token: Option<String>,

    /// Log filter, in tracing's syntax (e.g. "info", "convene_sfu=debug").
    #[arg(long, env = "CONVENE_LOG", default_value = "info")]
    pub log: String,

    /// How log lines are written to standard error: "text" for people, "json"
    /// (one object a line) for log shippers.
    #[arg(long, env = "CONVENE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Serve the Prometheus metrics (GET /metrics) on this address of their
    /// own, open to whoever reaches it (bind it to a monitoring network).
    /// Without it, /metrics is served on --listen to holders of the admin
    /// token only.
    #[arg(long, env = "CONVENE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// File whose bytes (at least 32, e.g. from `head -c 32 /dev/urandom`) are
    /// the key audit checkpoints are signed with (HMAC-SHA256). Keep it out of
    /// the data folder and out of reach of whoever administers the database.
    /// Without one, checkpoints are unkeyed and prove nothing against whoever
    /// can write both the database and the checkpoint file. `audit verify`
    /// takes it too.
    #[arg(long, env = "CONVENE_AUDIT_KEY_FILE", global = true)]
    pub audit_key_file: Option<PathBuf>,

    /// File the audit log's checkpoints are appended to, one JSON line each
    /// (they also go to the log at info level). Put it on another volume, or
    /// somewhere append-only. Default: audit-checkpoints.jsonl in the data
    /// folder. `audit verify` reads it.
    #[arg(long, env = "CONVENE_AUDIT_CHECKPOINTS", global = true)]
    pub audit_checkpoints: Option<PathBuf>,

    /// Seconds between audit checkpoints while the log changes (there is also
    /// one every 1000 rows, one at start and one at shutdown).
    #[arg(long, env = "CONVENE_AUDIT_CHECKPOINT_INTERVAL", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub audit_checkpoint_interval: u64,

    /// File holding the key chat is sealed with (32 bytes, raw or as 64 hex digits) where a
    /// meeting's handling level keeps chat (chat_retention_days above 0).
    /// Without one, Convene makes chat.key in the data folder (owner-only):
    /// that protects copies of the database, such as backups, but not a copy
    /// of the whole folder; keep the key elsewhere for more. Exports read it.
    #[arg(long, env = "CONVENE_CHAT_KEY_FILE", global = true)]
    pub chat_key_file: Option<PathBuf>,

    /// Name the client's address in audit rows of refused joins (wrong
    /// passcodes, host keys, locked meetings). Off by default: rows say
    /// "client", and addresses live only in memory, as long as the passcode
    /// back-off and rate limits need them (at most an hour after the last
    /// try), and in debug-level logs.
    #[arg(long, env = "CONVENE_AUDIT_CLIENT_ADDRESSES", global = true)]
    pub audit_client_addresses: bool,

    /// Name clients' addresses in the server's log. Off, Convene's own lines
    /// name a client by a pseudonym that holds only while the process runs
    /// (`client-1a2b3c4d`), and the WebRTC library's lines never name one.
    #[arg(long, env = "CONVENE_LOG_CLIENT_ADDRESSES")]
    pub log_client_addresses: bool,

    /// Days a meeting is kept after it ends (a link never ended: after its
    /// last activity), with its settings, grants and bars; then it is purged
    /// and its link no longer works. 0 keeps meetings for ever. Applied
    /// hourly, and by `convene purge`.
    #[arg(long, env = "CONVENE_RETAIN_MEETINGS_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(0..=36_500), global = true)]
    pub retain_meetings_days: u32,

    /// Days audit rows are kept; older ones are purged from the front of the
    /// log, leaving a purge record (keyed with --audit-key-file) from which
    /// the rest still verifies. 0 keeps them for ever. Applied hourly, and by
    /// `convene purge`.
    #[arg(long, env = "CONVENE_RETAIN_AUDIT_DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(0..=36_500), global = true)]
    pub retain_audit_days: u32,

    /// Minutes a passcode back-off record (a client address and the meeting
    /// it guessed at, or a meeting) is kept after its last wrong try, 15 to
    /// 1440 (not under 15: the longest wait). Swept every minute.
    #[arg(long, env = "CONVENE_RETAIN_BACKOFF_MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(15..=1440))]
    pub retain_backoff_minutes: u32,

    /// Most open HTTP and WebSocket connections at once; further ones are closed
    /// as they arrive. Lowered at start to what the open-files limit allows.
    #[arg(long, env = "CONVENE_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub max_connections: u32,

    /// Most open connections from one client address (a reverse proxy listed in
    /// --trusted-proxy is exempt). People behind one office NAT share it.
    #[arg(long, env = "CONVENE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_address: u32,

    /// Seconds a connection may take to send a request's headers, and may stay
    /// open idle between requests, before it is closed.
    #[arg(long, env = "CONVENE_IDLE_TIMEOUT", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout: u64,

    /// Seconds a whole request (headers read, body and answer) may take.
    #[arg(long, env = "CONVENE_REQUEST_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,

    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the
    /// real client (addresses or CIDR ranges, comma-separated). Those headers
    /// are ignored from anyone else.
    #[arg(long = "trusted-proxy", env = "CONVENE_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// The header the trusted proxies write the client's address into; the
    /// other one is ignored (a proxy passes it through from the client).
    #[arg(
        long,
        env = "CONVENE_FORWARDED_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: ForwardedHeader,

    /// Tests only, not a flag: a TURN credential lifetime shorter than the
    /// deployment file allows (60 s), so that refreshes come within a test.
    #[arg(skip)]
    pub turn_ttl_override: Option<std::time::Duration>,

    /// Where browsers that cannot send UDP send media over TCP (ICE-TCP):
    /// "web" shares the --listen port (told apart from HTTP and TLS by the
    /// first bytes, so TCP 443 carries everything when Convene owns it), an
    /// address gives it a port of its own, "off" turns it off.
    #[arg(long, env = "CONVENE_ICE_TCP_LISTEN", default_value = "web",
          value_parser = parse_ice_tcp)]
    pub ice_tcp_listen: IceTcp,

    /// Address announced to browsers for ICE-TCP, when it differs from where
    /// Convene listens (a wildcard bind, NAT, a load balancer passing TCP
    /// through). Default: --media-announce's (or --media-listen's) address
    /// with the ICE-TCP port.
    #[arg(long, env = "CONVENE_ICE_TCP_ANNOUNCE")]
    pub ice_tcp_announce: Option<SocketAddr>,
}

/// Where ICE-TCP connections are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceTcp {
    Off,
    /// On the web port (--listen).
    Web,
    At(SocketAddr),
}

fn parse_ice_tcp(s: &str) -> Result<IceTcp, String> {
    match s.trim() {
        "off" => Ok(IceTcp::Off),
        "web" => Ok(IceTcp::Web),
        other => other.parse().map(IceTcp::At).map_err(|_| {
            format!("expected \"web\", \"off\" or an address such as 0.0.0.0:3478: {other}")
        }),
    }
}

/// Which header a trusted proxy writes the client's address into. Only that
/// one is read: a proxy that appends to one header passes the other through
/// untouched, and whatever a client wrote there would otherwise be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx `$proxy_add_x_forwarded_for`, HAProxy `option forwardfor`).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=…` (RFC 7239).
    Forwarded,
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!("expected an address or CIDR range, e.g. 10.0.0.5 or 10.0.0.0/24: {s}")
        })
}

fn parse_node_urls(v: &str) -> Result<String, String> {
    crate::node_urls::NodeUrls::parse(v).map(|_| v.to_string())
}

impl Config {
    /// The node URLs this node may send people to (`--node-urls`, or the
    /// default around its public URL).
    pub(crate) fn node_urls_for(&self, public_url: &str) -> crate::node_urls::NodeUrls {
        self.node_urls
            .as_deref()
            .and_then(|v| crate::node_urls::NodeUrls::parse(v).ok())
            .unwrap_or_else(|| crate::node_urls::NodeUrls::around(public_url))
    }

    /// The storage these flags name: PostgreSQL with --database, otherwise
    /// SQLite in --data-dir. An error names which (never a password).
    pub fn open_storage(&self) -> Result<convene_storage::Storage, String> {
        match &self.database {
            // The data folder still holds the keys (chat, device cookies)
            // and the audit checkpoints.
            Some(url) => std::fs::create_dir_all(&self.data_dir)
                .map_err(|e| format!("data folder {}: {e}", self.data_dir.display()))
                .and_then(|()| {
                    convene_storage::Storage::connect(url)
                        .map_err(|e| format!("database {}: {e}", without_password(url)))
                }),
            None => convene_storage::Storage::open(&self.data_dir)
                .map_err(|e| format!("data folder {}: {e}", self.data_dir.display())),
        }
    }

    /// Where audit checkpoints go.
    pub fn audit_checkpoints_path(&self) -> PathBuf {
        self.audit_checkpoints
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-checkpoints.jsonl"))
    }

    /// The audit key, if one is configured (an unreadable or short key file is
    /// an error, not "no key").
    pub fn audit_key(&self) -> Result<Option<convene_storage::AuditKey>, String> {
        self.audit_key_file
            .as_deref()
            .map(convene_storage::AuditKey::from_file)
            .transpose()
    }

    /// What the retention flags keep (0: for ever).
    pub fn retention(&self) -> convene_storage::Retention {
        let days = |d: u32| (d > 0).then_some(d);
        convene_storage::Retention {
            meetings_days: days(self.retain_meetings_days),
            audit_days: days(self.retain_audit_days),
        }
    }

    /// The key kept chat is sealed with: --chat-key-file, else chat.key in
    /// the data folder, made there first when `create` (the server's start;
    /// exports only read it).
    pub fn chat_key(&self, create: bool) -> Result<Option<convene_storage::ChatKey>, String> {
        use convene_storage::ChatKey;
        match &self.chat_key_file {
            Some(path) => ChatKey::from_file(path).map(Some),
            None => {
                let path = self.data_dir.join("chat.key");
                if create {
                    ChatKey::load_or_create(&path).map(Some)
                } else if path.exists() {
                    ChatKey::from_file(&path).map(Some)
                } else {
                    Ok(None)
                }
            }
        }
    }

    pub(crate) fn writer_options(
        &self,
        chat_key: Option<std::sync::Arc<convene_storage::ChatKey>>,
    ) -> Result<crate::writer::WriterOptions, String> {
        Ok(crate::writer::WriterOptions {
            checkpoints: Some(self.audit_checkpoints_path()),
            key: self.audit_key()?,
            checkpoint_every: std::time::Duration::from_secs(self.audit_checkpoint_interval),
            chat_key,
            ..Default::default()
        })
    }

    /// Every flag at its default (environment variables still apply), for
    /// tests and embedding; set fields afterwards.
    pub fn defaults() -> Config {
        Cli::try_parse_from(["convene"])
            .expect("the defaults parse")
            .config
    }

    pub fn media_workers(&self) -> usize {
        self.media_workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        )
    }

    /// The ICE-TCP candidate browsers are given, for connections accepted at
    /// `bound`: --ice-tcp-announce, else the media address's IP with the
    /// bound port. `None` (with a warning) when no address to give is known.
    pub fn ice_tcp_candidate(&self, bound: SocketAddr) -> Option<SocketAddr> {
        if self.ice_tcp_listen == IceTcp::Off {
            return None;
        }
        if let Some(a) = self.ice_tcp_announce {
            return Some(a);
        }
        // Behind a reverse proxy the web port is the proxy's: it speaks HTTP to
        // Convene, and browsers cannot reach --listen at all. A candidate made
        // of the media address and the web port would name another service.
        let behind_proxy = !self.trusted_proxies.is_empty()
            || (bound.ip().is_loopback()
                && self.media_announce.is_some_and(|a| !a.ip().is_loopback()));
        if self.ice_tcp_listen == IceTcp::Web && behind_proxy {
            tracing::warn!(
                "media over TCP is off: the web port is behind a reverse proxy; give ICE-TCP a port of its own (--ice-tcp-listen) to offer it"
            );
            return None;
        }
        let ip = [
            self.media_announce.map(|a| a.ip()),
            Some(self.media_listen.ip()),
            Some(bound.ip()),
        ]
        .into_iter()
        .flatten()
        .find(|ip| !ip.is_unspecified());
        if ip.is_none() {
            tracing::warn!(
                "media over TCP is off: give --ice-tcp-announce or --media-announce, the address browsers reach"
            );
        }
        ip.map(|ip| SocketAddr::new(ip, bound.port()))
    }

    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let (scheme, default) = match self.tls_cert {
                    Some(_) => ("https", 443),
                    None => ("http", 80),
                };
                // Without the scheme's default port, as browsers write origins.
                let host = match bound.ip() {
                    std::net::IpAddr::V4(ip) => ip.to_string(),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                };
                match bound.port() {
                    p if p == default => format!("{scheme}://{host}"),
                    p => format!("{scheme}://{host}:{p}"),
                }
            }
        }
    }

    /// The certificate and key files when Convene terminates TLS itself, or
    /// why the TLS flags given do not fit together.
    pub(crate) fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, String> {
        let files = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), None) => {
                return Err(
                    "--tls-cert needs --tls-key: give both (the certificate chain and \
                            its private key) to serve https, or neither"
                        .into(),
                )
            }
            (None, Some(_)) => {
                return Err(
                    "--tls-key needs --tls-cert: give both (the certificate chain and \
                            its private key) to serve https, or neither"
                        .into(),
                )
            }
            (None, None) => None,
        };
        if files.is_none() && self.http_redirect_listen.is_some() {
            return Err(
                "--http-redirect-listen redirects to https, which Convene serves only \
                        with --tls-cert and --tls-key (behind a reverse proxy, let the proxy \
                        redirect)"
                    .into(),
            );
        }
        if files.is_some() {
            if let Some(url) = &self.public_url {
                if !url.starts_with("https://") {
                    return Err(format!(
                        "--public-url {url}: must start with https:// when Convene serves \
                         TLS itself (--tls-cert)"
                    ));
                }
            }
        }
        Ok(files)
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
    fn trusted_proxies_are_addresses_or_ranges() {
        let cli =
            Cli::try_parse_from(["convene", "--trusted-proxy", "10.0.0.5, 192.168.0.0/16,::1"])
                .unwrap();
        let nets: Vec<String> = cli
            .config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.5/32", "192.168.0.0/16", "::1/128"]);
        let e = Cli::try_parse_from(["convene", "--trusted-proxy", "proxy.example"]).unwrap_err();
        assert!(e.to_string().contains("CIDR"), "{e}");
    }

    /// docs/configuration.md is where operators look: every flag (and its
    /// environment variable) must be there, and nothing the code lacks.
    #[test]
    fn the_default_public_url_leaves_out_the_default_port_as_origins_do() {
        let mut c = Config::defaults();
        assert_eq!(
            c.public_url("10.0.0.1:8080".parse().unwrap()),
            "http://10.0.0.1:8080"
        );
        assert_eq!(
            c.public_url("10.0.0.1:80".parse().unwrap()),
            "http://10.0.0.1"
        );
        c.tls_cert = Some("cert.pem".into());
        assert_eq!(
            c.public_url("10.0.0.1:443".parse().unwrap()),
            "https://10.0.0.1"
        );
        assert_eq!(c.public_url("[::1]:443".parse().unwrap()), "https://[::1]");
        assert_eq!(
            c.public_url("[::1]:8443".parse().unwrap()),
            "https://[::1]:8443"
        );
    }

    #[test]
    fn the_ice_tcp_candidate_is_where_browsers_can_reach_it_or_none() {
        let parse = |args: &[&str]| {
            let mut all = vec!["convene"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).unwrap().config
        };
        let web: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:443".parse().unwrap();
        // Trial on loopback: the web port, at the media address.
        assert_eq!(parse(&[]).ice_tcp_candidate(web), Some(web));
        // Convene on 443 itself, media announced at the public address.
        let c = parse(&["--media-announce", "203.0.113.10:50000"]);
        assert_eq!(
            c.ice_tcp_candidate(public),
            Some("203.0.113.10:443".parse().unwrap())
        );
        // Behind a proxy (loopback web port, public media; or a trusted
        // proxy): the web port cannot carry it.
        assert_eq!(c.ice_tcp_candidate(web), None);
        let c = parse(&["--trusted-proxy", "10.0.0.1"]);
        assert_eq!(c.ice_tcp_candidate(web), None);
        // ... but a port of its own can, and an announced address always wins.
        let c = parse(&[
            "--trusted-proxy",
            "10.0.0.1",
            "--ice-tcp-listen",
            "0.0.0.0:3478",
            "--media-announce",
            "203.0.113.10:50000",
        ]);
        assert_eq!(
            c.ice_tcp_candidate("0.0.0.0:3478".parse().unwrap()),
            Some("203.0.113.10:3478".parse().unwrap())
        );
        let c = parse(&["--ice-tcp-announce", "198.51.100.1:443"]);
        assert_eq!(
            c.ice_tcp_candidate(web),
            Some("198.51.100.1:443".parse().unwrap())
        );
        assert_eq!(
            parse(&["--ice-tcp-listen", "off"]).ice_tcp_candidate(web),
            None
        );
    }

    #[test]
    fn the_configuration_document_names_every_flag() {
        use clap::CommandFactory;
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
        )
        .unwrap();
        let cmd = Cli::command();
        let mut missing = Vec::new();
        let mut flags = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            flags.push(format!("--{long}"));
            if !doc.contains(&format!("`--{long}`")) {
                missing.push(format!("--{long}"));
            }
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                if !doc.contains(&format!("`{env}`")) {
                    missing.push(env.to_string());
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not in docs/configuration.md: {missing:?}"
        );
        // The flags table lists no flag the server does not have.
        let documented: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with("| `--"))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        for flag in documented {
            assert!(
                flags.iter().any(|f| f == flag),
                "docs/configuration.md lists {flag}, which the server does not have"
            );
        }
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

/// A database address fit for a message: its password replaced by `***`
/// (URL form `scheme://user:password@…`, or key=value `password=…`).
pub fn without_password(url: &str) -> String {
    convene_storage::describe_database(url)
}

#[cfg(test)]
mod database_address_tests {
    use super::without_password;

    #[test]
    fn a_password_never_reaches_a_message() {
        for (url, shown) in [
            (
                "postgres://convene:s3cret@db.example:5432/convene",
                "postgres://convene@db.example:5432/convene",
            ),
            (
                "postgres://convene@db/convene?password=s3cret&connect_timeout=3",
                "postgres://convene@db:5432/convene",
            ),
            (
                "host=/run/postgresql user=convene password=s3cret dbname=c",
                "postgres://convene@/run/postgresql:5432/c",
            ),
            (
                "host=db user=convene password='s3 cret' dbname=c",
                "postgres://convene@db:5432/c",
            ),
            (
                "postgres://convene:s3cret@db:notaport/c",
                "a PostgreSQL address that does not parse",
            ),
        ] {
            assert_eq!(without_password(url), shown);
            assert!(!without_password(url).contains("s3"));
        }
    }
}
