//! What the room's tests share: joining, draining effects, and reading who
//! was sent what.

use super::*;
use crate::protocol::ClientMessage as C;

pub fn join_msg(name: &str) -> C {
    C::Join {
        protocol: PROTOCOL_VERSION,
        name: name.into(),
        resume: None,
        passcode: None,
        host_key: None,
        e2ee: false,
    }
}

pub fn drain(r: &mut Room) -> Vec<Effect> {
    std::iter::from_fn(|| r.poll_effect()).collect()
}

/// Every message `who` receives among `effects`, alone or in a broadcast.
pub fn sent_to(effects: &[Effect], who: &ParticipantId) -> Vec<ServerMessage> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, message } if to == who => Some(message.clone()),
            Effect::Broadcast { to, message } if to.contains(who) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

pub fn media(effects: &[Effect]) -> Vec<MediaAction> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Media(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}
