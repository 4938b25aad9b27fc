//! Convene's media core: a selective forwarding unit (SFU) built on str0m.
//!
//! The core ([`Sfu`]) is sans-IO: datagrams and time go in, datagrams to send and
//! events come out. It knows connections, published tracks and subscriptions, and
//! nothing about meetings, people or permissions; the meeting layer decides who
//! publishes and who subscribes. [`driver`] runs a core on its own thread with one
//! UDP socket.
//!
//! Per packet: a datagram is routed to its connection by a hash-map lookup on the
//! remote address (or the STUN username until the address is known), decrypted by
//! that connection's `Rtc`, and each RTP packet of a published track is rewritten
//! (SSRC, sequence number, timestamp) and written to every subscriber's `Rtc`.
//! Microphones ([`TrackKind::Voice`]) are the exception: each subscriber has at
//! most [`VOICE_SLOTS`] outgoing audio streams, and a microphone's packet goes
//! out on the one it holds, or takes a free one (see `Connection::voice_slot_for`).
//!
//! Under overload, video is dropped rather than forwarded late: a packet that
//! waited in the server longer than [`MAX_MEDIA_AGE`] since the kernel received
//! it is not forwarded (the publisher's connection still counts it). Audio is
//! never dropped for lateness alone.

mod climb;
mod connection;
pub mod driver;
mod feedback;
mod ids;
mod layers;
pub mod logged_address;
mod loss_cap;
mod offer_candidates;
pub mod pool;
mod quality;
mod red;
mod rewrite;
mod route;
mod sendmany;
mod sfu;
mod speaking;
#[cfg(target_os = "linux")]
pub mod stamped;
mod tcp_conns;
pub mod transport;
mod vp8;

pub use ids::{ConnId, TrackId};
pub use layers::{Priority, View};
pub use quality::{Quality, QualityLevel};
pub use rewrite::Rewriter;
pub use sfu::{
    ConnOptions, Datagram, OfferedSlot, Sfu, SfuConfig, SfuError, SfuEvent, SfuStats,
    SlotDirection, TrackKind, MAX_MEDIA_AGE, VOICE_SLOTS,
};
pub use speaking::SpeakingDetector;
pub use transport::Transport;
pub use vp8::{is_vp8_keyframe_start, vp8_keyframe_size};
