//! Which meeting task owns what: meetings by id, and media connections and tracks
//! by id, so events from the SFU thread reach the right meeting. Connections of
//! the connectivity check (check.rs) belong to no meeting: their events go to
//! the check's socket task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use convene_sfu::{ConnId, SfuEvent, TrackId};
use tokio::sync::mpsc::UnboundedSender;

use crate::meeting::MeetingInput;

#[derive(Default, Clone)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
pub struct Inner {
    pub meetings: HashMap<String, UnboundedSender<MeetingInput>>,
    conns: HashMap<ConnId, UnboundedSender<MeetingInput>>,
    tracks: HashMap<TrackId, UnboundedSender<MeetingInput>>,
    /// Media connections of no meeting task: the connectivity check's
    /// probes, and those of an edge's task (cascading).
    probes: HashMap<ConnId, UnboundedSender<SfuEvent>>,
}

impl Registry {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_conn(&self, conn: ConnId, to: UnboundedSender<MeetingInput>) {
        self.lock().conns.insert(conn, to);
    }

    pub fn remove_conn(&self, conn: ConnId) {
        self.lock().conns.remove(&conn);
    }

    pub fn add_track(&self, track: TrackId, to: UnboundedSender<MeetingInput>) {
        self.lock().tracks.insert(track, to);
    }

    pub fn remove_track(&self, track: TrackId) {
        self.lock().tracks.remove(&track);
    }

    pub fn add_probe(&self, conn: ConnId, to: UnboundedSender<SfuEvent>) {
        self.lock().probes.insert(conn, to);
    }

    pub fn remove_probe(&self, conn: ConnId) {
        self.lock().probes.remove(&conn);
    }

    /// Where the SFU thread sends its events.
    pub fn sfu_event_sink(&self) -> impl FnMut(SfuEvent) + Send + 'static {
        let registry = self.clone();
        move |event| {
            let inner = registry.lock();
            let (conn, track) = match &event {
                SfuEvent::Offer { conn, .. }
                | SfuEvent::Connected(conn)
                | SfuEvent::Disconnected(conn)
                | SfuEvent::Closed(conn)
                | SfuEvent::Failed { conn, .. }
                | SfuEvent::VoiceSlot { conn, .. }
                | SfuEvent::Quality { conn, .. }
                | SfuEvent::RelayLink { conn, .. }
                | SfuEvent::RelayAnswer { conn, .. } => (Some(*conn), None),
                SfuEvent::Speaking { track, .. }
                | SfuEvent::VideoLayers { track, .. }
                | SfuEvent::VideoStalled { track, .. } => (None, Some(*track)),
            };
            let meeting = match (conn, track) {
                (Some(c), _) => inner.conns.get(&c),
                (None, Some(t)) => inner.tracks.get(&t),
                (None, None) => None,
            };
            if let Some(to) = meeting {
                let _ = to.send(MeetingInput::Sfu(event));
            } else if let Some(probe) = conn.and_then(|c| inner.probes.get(&c)) {
                let _ = probe.send(event);
            }
        }
    }
}
