//! Convene's edges: the HTTP server (pages, API), WebSocket signalling, and the
//! glue between the meeting domain and the media core.

mod assets;
pub mod config;
mod cookies;
mod device;
mod http;
mod meeting;
mod registry;
mod signin;
mod writer;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use convene_meeting::RoomLimits;
use convene_sfu::driver::SfuThread;
use convene_sfu::pool::SfuPool;
use convene_storage::Storage;
use tokio::sync::oneshot;
use tracing::info;

use crate::config::Config;
use crate::registry::Registry;

pub struct AppState {
    pub storage: Arc<Storage>,
    /// Audit events go to one writer thread, so they are stored in order
    /// without blocking a meeting's task on the database.
    pub writer: writer::Writer,
    pub admin_token: Option<String>,
    /// Wrong passcode guesses per (client address, meeting).
    pub passcode_limiter:
        std::sync::Mutex<convene_meeting::passcode::Limiter<(std::net::IpAddr, String)>>,
    /// The media workers; each meeting leases one.
    pub sfu: SfuPool,
    pub registry: Registry,
    pub limits: RoomLimits,
    pub public_url: String,
    /// Sign-in (none configured: a trial where everyone is a guest).
    pub auth: Arc<convene_auth::Auth>,
}

pub struct RunningServer {
    pub url: String,
    pub addr: SocketAddr,
    /// The first media worker's address (each worker has its own port).
    pub media_addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: oneshot::Sender<()>,
    http: tokio::task::JoinHandle<()>,
    sfu: Vec<SfuThread>,
}

impl RunningServer {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.http.await;
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
    let sign_in_available = deployment
        .as_ref()
        .is_some_and(|d| !d.organisations().is_empty());
    let storage = Arc::new(
        Storage::open(&config.data_dir)
            .map_err(|e| StartError(format!("data folder {}: {e}", config.data_dir.display())))?,
    );
    let writer = writer::Writer::start(storage.clone());
    let registry = Registry::default();
    let (pool, sfu) = convene_sfu::pool::spawn_pool(
        config.media_workers(),
        config.media_listen,
        config.media_announce,
        || registry.sfu_event_sink(),
    )
    .map_err(|e| StartError(format!("media socket {}: {e}", config.media_listen)))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError(e.to_string()))?;
    let url = config.public_url(addr);
    let state = Arc::new(AppState {
        storage,
        writer,
        admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        passcode_limiter: Default::default(),
        sfu: pool.clone(),
        registry,
        limits: RoomLimits {
            max_participants: config.max_participants,
            reconnect_grace: Duration::from_secs(config.reconnect_grace),
            policy: Arc::new(policy),
            sign_in_available,
            ..RoomLimits::default()
        },
        public_url: url.clone(),
        auth: Arc::new(convene_auth::Auth::new(deployment.as_ref(), &url)),
    });
    {
        let auth = state.auth.clone();
        tokio::spawn(async move { auth.warm_up().await });
    }
    let media_addr = sfu[0].handle.local_addr();
    let media_workers = sfu.len();
    info!(%addr, %media_addr, media_workers, data = %config.data_dir.display(), "Convene started");
    let app = http::router(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
    Ok(RunningServer {
        url,
        addr,
        media_addr,
        state,
        stop,
        http,
        sfu,
    })
}
