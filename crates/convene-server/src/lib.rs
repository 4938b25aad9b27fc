//! Convene's edges: the HTTP server (pages, API), WebSocket signalling, and the
//! glue between the meeting domain and the media core.

mod admin;
mod assets;
mod cascade;
mod check;
mod client_addr;
mod cluster;
pub mod config;
pub mod config_file;
mod cookies;
mod device;
pub mod export;
mod handoff;
mod hashing;
mod http;
mod ice_tcp;
mod invitation;
mod listener;
pub mod logging;
mod media_quality;
mod meeting;
mod metrics;
mod mls_check;
mod node_urls;
mod origin;
mod problem_page;
mod rates;
mod readiness;
mod redirect;
mod registry;
pub mod retention;
mod shared_sessions;
mod signin;
mod tls;
mod turn;
mod utc;
mod words;
mod writer;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use convene_meeting::RoomLimits;
use convene_sfu::driver::SfuThread;
use convene_sfu::pool::SfuPool;
use convene_storage::Storage;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::registry::Registry;

/// Passcode checks one client address may have made, right or wrong: a burst,
/// then this many a second. Bounds what one address (even one that knows the
/// passcode) can spend of the hashing threads; an office behind one NAT
/// address still gets a room of people in within a minute or two.
const PASSCODE_CHECKS_PER_SEC: f64 = 2.0;
const PASSCODE_CHECKS_BURST: f64 = 30.0;
/// Joins with a wrong host key from one client address, before further ones
/// from it are turned away unread (a right host key always gets in).
const REFUSED_JOINS_PER_SEC: f64 = 1.0;
const REFUSED_JOINS_BURST: f64 = 30.0;
/// Sign-in starts per client address (each makes a provider round trip).
const LOGINS_PER_SEC: f64 = 1.0;
const LOGINS_BURST: f64 = 20.0;
/// Meetings created without signing in (a trial, or `create_meetings =
/// "anyone"`), per client address: 60 at once, then one every 10 s.
const ANONYMOUS_CREATIONS_PER_SEC: f64 = 0.1;
const ANONYMOUS_CREATIONS_BURST: f64 = 60.0;

/// Connections the metrics listener takes at once, in all and per address.
const METRICS_CONNECTIONS: usize = 32;
const METRICS_CONNECTIONS_PER_ADDRESS: usize = 8;

/// Loopback, private (RFC 1918, RFC 4193) or link-local: not the Internet.
fn is_private(ip: std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
    }
}

pub struct AppState {
    pub storage: Arc<Storage>,
    /// Audit events go to one writer thread, so they are stored in order
    /// without blocking a meeting's task on the database.
    pub writer: writer::Writer,
    pub admin_token: Option<String>,
    /// Whether audit rows of refused joins name the client's address
    /// (`--audit-client-addresses`); by default they say only "client".
    pub audit_addresses: bool,
    /// Seals the chat of meetings whose level keeps it.
    pub chat_key: Arc<convene_storage::ChatKey>,
    /// Passcode guesses per (client address, meeting), and per meeting.
    pub passcode_limiter:
        std::sync::Mutex<convene_meeting::passcode::Limiter<(std::net::IpAddr, String)>>,
    pub meeting_passcode_limiter: std::sync::Mutex<convene_meeting::passcode::Limiter<String>>,
    /// Every Argon2 check and hash runs here, bounded in threads and memory.
    pub hashers: hashing::Hashers,
    /// Per client address group (IPv4 address, IPv6 /64): passcode checks
    /// (right or wrong), wrong host keys, and sign-in starts.
    pub passcode_checks: rates::PerClient,
    pub refused_joins: rates::PerClient,
    pub logins: rates::PerClient,
    /// Meetings created without a sign-in, per client address (each is a row
    /// kept until retention removes it: a flood would fill the disk).
    pub anonymous_creations: rates::PerClient,
    /// Reverse proxies whose forwarding header is believed, and which header.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    pub forwarded_header: config::ForwardedHeader,
    pub connections: Arc<listener::ConnectionStats>,
    /// The media workers; each meeting leases one.
    pub sfu: SfuPool,
    pub registry: Registry,
    pub limits: RoomLimits,
    pub public_url: String,
    /// Convene terminates TLS itself: every answer goes over https, with HSTS.
    pub serves_tls: bool,
    /// Sign-in (none configured: a trial where everyone is a guest).
    pub auth: Arc<convene_auth::Auth>,
    /// TURN credentials for browsers (none configured: no relay).
    pub turn: turn::Turn,
    /// The connectivity check's limits and counters (`/check`).
    pub checks: check::Checks,
    /// Counters for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Stopping for a restart: no new sockets, no meeting starts.
    pub draining: std::sync::atomic::AtomicBool,
    /// The last answer about the database's writability (`/readyz`).
    pub ready: readiness::StorageProbe,
    /// Wrong admin tokens per client address group.
    pub wrong_admin_tokens: rates::PerClient,
    /// This node's part in a cluster (`--cluster`).
    pub cluster: Option<cluster::Link>,
    /// Cascading webinars over the cluster's nodes (with `cluster`).
    pub cascade: Option<cascade::Cascade>,
}

impl AppState {
    /// Who an audit row of a refused join names: the client's address only
    /// where the deployment asked for addresses.
    pub(crate) fn client_label(&self, address: Option<std::net::IpAddr>) -> String {
        match address {
            Some(a) if self.audit_addresses => format!("client {a}"),
            _ => "client".into(),
        }
    }
}

pub struct RunningServer {
    pub url: String,
    pub addr: SocketAddr,
    /// The first media worker's address (each worker has its own port).
    pub media_addr: SocketAddr,
    /// The plain-HTTP listener that redirects to https, if there is one.
    pub redirect_addr: Option<SocketAddr>,
    /// The metrics listener (`--metrics-listen`), if there is one.
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    /// The main listener and the redirect listener.
    http: Vec<tokio::task::JoinHandle<()>>,
    /// Reloads the TLS certificate when its files change or on SIGHUP.
    tls_reloader: Option<tokio::task::JoinHandle<()>>,
    sfu: Vec<SfuThread>,
}

impl RunningServer {
    /// A graceful stop (SIGTERM): no new sockets or meetings; each meeting
    /// keeps who is in it for when the server is back, tells them it is
    /// restarting and closes their sockets (within `deadline`, after which
    /// the rest goes on regardless); then the listeners stop, the audit log
    /// is flushed with a last checkpoint, and the media workers end.
    pub async fn drain_and_shutdown(self, deadline: Duration) {
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let waits: Vec<_> = {
            let inner = self.state.registry.lock();
            inner
                .meetings
                .values()
                .map(|tx| {
                    let (done, wait) = tokio::sync::oneshot::channel();
                    let _ = tx.send(meeting::MeetingInput::Drain {
                        done,
                        hold_places: true,
                    });
                    wait
                })
                .collect()
        };
        let meetings = waits.len();
        if tokio::time::timeout(deadline, futures_util::future::join_all(waits))
            .await
            .is_err()
        {
            tracing::warn!(
                meetings,
                "not every meeting had stopped by the shutdown deadline"
            );
        } else {
            info!(meetings, "every meeting stopped for the restart");
        }
        self.shutdown().await;
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(r) = &self.tls_reloader {
            r.abort();
        }
        for listener in self.http {
            let _ = listener.await;
        }
        // Refusal tallies and a last checkpoint.
        self.state.writer.flush().await;
        tokio::task::spawn_blocking(move || self.sfu.into_iter().for_each(SfuThread::shutdown))
            .await
            .ok();
    }
}

#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let certificates = config
        .tls_files()
        .map_err(StartError)?
        .map(tls::Certificates::load)
        .transpose()
        .map_err(|e| StartError(e.to_string()))?;
    let deployment = match &config.config_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StartError(format!("configuration {}: {e}", path.display())))?;
            Some(
                convene_auth::config::DeploymentConfig::parse(&text)
                    .map_err(|e| StartError(format!("configuration {}: {e}", path.display())))?,
            )
        }
    };
    let policy = match &config.policy_file {
        None => convene_meeting::policy::Policy::uk(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StartError(format!("policy {}: {e}", path.display())))?;
            convene_meeting::policy::Policy::parse(&text)
                .map_err(|e| StartError(format!("policy {}: {e}", path.display())))?
        }
    };
    let turn_issuer = match deployment.as_ref().and_then(|d| d.turn.as_ref()) {
        None => None,
        Some(t) => {
            // The secret file's path is relative to the deployment file's folder.
            let base = config
                .config_file
                .as_deref()
                .and_then(std::path::Path::parent)
                .unwrap_or(std::path::Path::new("."));
            let issuer = turn::Issuer::load(t, base, config.turn_ttl_override)
                .map_err(|e| StartError(format!("configuration: {e}")))?;
            info!(urls = ?t.urls.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                  ttl_seconds = issuer.ttl().as_secs(), "TURN credentials for browsers");
            Some(issuer)
        }
    };
    let sign_in_available = deployment
        .as_ref()
        .is_some_and(|d| !d.organisations().is_empty());
    let storage = Arc::new(config.open_storage().map_err(StartError)?);
    if let Some(url) = &config.database {
        if convene_storage::database_security(url) == Some("prefer") {
            warn!(
                database = %convene_storage::describe_database(url),
                "the database connection uses TLS only if the server offers it (sslmode=prefer, the default): a machine in the middle can refuse it unseen; set sslmode=require (docs/configuration.md, --database)"
            );
        }
    }
    // Levels that keep chat seal it with this key (made on first start).
    let chat_key = std::sync::Arc::new(
        config
            .chat_key(true)
            .map_err(StartError)?
            .ok_or_else(|| StartError("no chat key".into()))?,
    );
    let writer = writer::Writer::start(
        storage.clone(),
        config
            .writer_options(Some(chat_key.clone()))
            .map_err(StartError)?,
    );
    let registry = Registry::default();
    let open_files = listener::raise_open_files_limit();
    let max_connections = listener::connection_cap(config.max_connections as usize, open_files);
    info!(open_files, max_connections, "open-files limit");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError(e.to_string()))?;
    let ice_tcp_listener =
        match config.ice_tcp_listen {
            config::IceTcp::At(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
                StartError(format!("cannot listen on {a} (--ice-tcp-listen): {e}"))
            })?),
            config::IceTcp::Web | config::IceTcp::Off => None,
        };
    let ice_tcp_bound = match &ice_tcp_listener {
        Some(l) => Some(l.local_addr().map_err(|e| StartError(e.to_string()))?),
        None if config.ice_tcp_listen == config::IceTcp::Web => Some(addr),
        None => None,
    };
    let tcp_announce = ice_tcp_bound.and_then(|bound| config.ice_tcp_candidate(bound));
    let (pool, sfu) = convene_sfu::pool::spawn_pool(
        config.media_workers(),
        convene_sfu::pool::MediaAddrs {
            bind: config.media_listen,
            announce: config.media_announce,
            tcp_announce,
        },
        || registry.sfu_event_sink(),
    )
    .map_err(|e| StartError(format!("media socket {}: {e}", config.media_listen)))?;
    info!(ice_tcp = ?tcp_announce, "media over TCP");
    let redirect_listener = match config.http_redirect_listen {
        None => None,
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
            StartError(format!(
                "cannot listen on {a} (--http-redirect-listen): {e}"
            ))
        })?),
    };
    let redirect_addr = redirect_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()
        .map_err(|e| StartError(e.to_string()))?;
    convene_sfu::logged_address::show_addresses(config.log_client_addresses);
    let metrics_listener =
        match config.metrics_listen {
            None => None,
            Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
                StartError(format!("cannot listen on {a} (--metrics-listen): {e}"))
            })?),
        };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()
        .map_err(|e| StartError(e.to_string()))?;
    if let Some(a) = metrics_addr.filter(|a| !is_private(a.ip())) {
        warn!(
            addr = %a,
            "the metrics listener answers anyone who reaches {a}, without a token: bind it to loopback or the monitoring network"
        );
    }
    let url = config.public_url(addr);
    let cluster = match (&config.redis, config.cluster) {
        (Some(redis), true) => {
            // Messages between nodes are sealed with a key kept in the
            // database they share, out of Redis's reach.
            let secret = storage
                .node_secret("cluster-messages")
                .map_err(|e| StartError(format!("cluster: the nodes' message key: {e}")))?;
            let redis_ca = match &config.redis_ca {
                Some(path) => Some(
                    std::fs::read(path)
                        .map_err(|e| StartError(format!("--redis-ca {}: {e}", path.display())))?,
                ),
                None => None,
            };
            Some(
                cluster::Link::connect(
                    redis,
                    redis_ca,
                    config.node_id.as_deref(),
                    &url,
                    config.node_urls_for(&url),
                    secret.as_bytes(),
                )
                .await
                .map_err(StartError)?,
            )
        }
        _ => None,
    };
    let backoff_retention = Duration::from_secs(u64::from(config.retain_backoff_minutes) * 60);
    let state = Arc::new(AppState {
        storage,
        writer,
        admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        audit_addresses: config.audit_client_addresses,
        chat_key,
        passcode_limiter: std::sync::Mutex::new(convene_meeting::passcode::Limiter::new(
            convene_meeting::passcode::Rules::PER_ADDRESS.forgetting_after(backoff_retention),
        )),
        meeting_passcode_limiter: std::sync::Mutex::new(convene_meeting::passcode::Limiter::new(
            convene_meeting::passcode::Rules::PER_MEETING.forgetting_after(backoff_retention),
        )),
        hashers: hashing::Hashers::start(hashing::Hashers::default_threads(), hashing::QUEUE_WAIT),
        passcode_checks: rates::PerClient::new(PASSCODE_CHECKS_PER_SEC, PASSCODE_CHECKS_BURST),
        refused_joins: rates::PerClient::new(REFUSED_JOINS_PER_SEC, REFUSED_JOINS_BURST),
        logins: rates::PerClient::new(LOGINS_PER_SEC, LOGINS_BURST),
        anonymous_creations: rates::PerClient::new(
            ANONYMOUS_CREATIONS_PER_SEC,
            ANONYMOUS_CREATIONS_BURST,
        ),
        trusted_proxies: config.trusted_proxies.clone().into(),
        forwarded_header: config.forwarded_header,
        connections: Default::default(),
        sfu: pool.clone(),
        registry,
        limits: RoomLimits {
            max_participants: config.max_participants,
            reconnect_grace: Duration::from_secs(config.reconnect_grace),
            policy: Arc::new(policy),
            sign_in_available,
            handshake_check: Some(mls_check::new_check),
            ..RoomLimits::default()
        },
        public_url: url.clone(),
        serves_tls: certificates.is_some(),
        auth: Arc::new(convene_auth::Auth::new(deployment.as_ref(), &url)),
        turn: turn::Turn::new(turn_issuer),
        checks: Default::default(),
        metrics: metrics::Metrics::new(),
        draining: Default::default(),
        ready: Default::default(),
        wrong_admin_tokens: rates::PerClient::new(
            1.0 / admin::WRONG_TOKEN_EVERY_SECS,
            admin::WRONG_TOKENS_BURST,
        ),
        cascade: cluster
            .as_ref()
            .map(|_| cascade::Cascade::new(config.cascade_after as usize)),
        cluster,
    });
    if state.storage.is_shared() {
        // Nodes that share a database share sign-in sessions too, on a
        // connection of their own: a request's session read never waits
        // behind the audit writer's batch, nor the other way round.
        let sessions = config.open_storage().map_err(StartError)?;
        let key = shared_sessions::cookie_key(&sessions).map_err(StartError)?;
        state.auth.share_sessions(
            Arc::new(shared_sessions::InDatabase(Arc::new(sessions))),
            key,
        );
    }
    {
        let auth = state.auth.clone();
        tokio::spawn(async move { auth.warm_up().await });
    }
    {
        // Places held at the last graceful stop for people who did not come
        // back in time (their meeting never started again): forgotten.
        let st = state.clone();
        let started = convene_storage::unix_millis();
        tokio::spawn(async move {
            tokio::time::sleep(st.limits.restart_grace * 2).await;
            let _ = tokio::task::spawn_blocking(move || st.storage.forget_returns_before(started))
                .await;
        });
    }
    retention::spawn(state.clone(), config.retention());
    let media_addr = sfu[0].handle.local_addr();
    let media_workers = sfu.len();
    info!(%addr, %media_addr, media_workers, data = %config.data_dir.display(), "Convene started");
    let app = http::router(state.clone(), Duration::from_secs(config.request_timeout));
    let (stop, stopped) = watch::channel(false);
    cluster::spawn_heartbeat(state.clone(), stop.subscribe());
    cascade::spawn(state.clone());
    // The web port and the plain-HTTP redirect count against the same
    // connection caps (both face the public).
    let gate = listener::Gate::new(
        listener::Limits {
            max_connections,
            per_address: config.max_connections_per_address as usize,
            header_timeout: Duration::from_secs(config.idle_timeout),
            trusted: state.trusted_proxies.clone(),
        },
        state.connections.clone(),
    );
    let transport = match &certificates {
        None => listener::Transport::Plain,
        Some(c) => listener::Transport::Tls(tokio_rustls::TlsAcceptor::from(
            c.server_config()
                .map_err(|e| StartError(format!("TLS: {e}")))?,
        )),
    };
    let gate_for_ice_tcp = gate.clone();
    let web_ice_tcp = (config.ice_tcp_listen == config::IceTcp::Web && tcp_announce.is_some())
        .then(|| state.sfu.clone());
    let mut http = vec![tokio::spawn(listener::serve(
        listener,
        app,
        gate.clone(),
        transport,
        web_ice_tcp,
        stopped.clone(),
    ))];
    if let Some(l) = metrics_listener {
        // Caps of its own: a flood on the web port must not blind the
        // monitoring that would show it (and a busy scraper cannot take the
        // web port's places). Its few descriptors come out of the reserve.
        let metrics_gate = listener::Gate::new(
            listener::Limits {
                max_connections: METRICS_CONNECTIONS,
                per_address: METRICS_CONNECTIONS_PER_ADDRESS,
                header_timeout: Duration::from_secs(config.idle_timeout),
                trusted: Arc::new([]),
            },
            Default::default(),
        );
        http.push(tokio::spawn(listener::serve(
            l,
            metrics::router(state.clone()),
            metrics_gate,
            listener::Transport::Plain,
            None,
            stopped.clone(),
        )));
    }
    if let Some(l) = redirect_listener {
        let target = redirect::Target::new(config.public_url.as_deref(), addr.port());
        http.push(tokio::spawn(listener::serve(
            l,
            redirect::router(target),
            gate,
            listener::Transport::Plain,
            None,
            stopped,
        )));
    }
    if let Some(l) = ice_tcp_listener {
        http.push(tokio::spawn(ice_tcp::serve(
            l,
            state.sfu.clone(),
            gate_for_ice_tcp,
            stop.subscribe(),
        )));
    }
    let tls_reloader = certificates.as_ref().map(|c| c.spawn_reloader());
    Ok(RunningServer {
        url,
        addr,
        media_addr,
        redirect_addr,
        metrics_addr,
        state,
        stop,
        http,
        tls_reloader,
        sfu,
    })
}
