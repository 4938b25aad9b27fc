//! Convene's meeting domain, free of I/O: the signalling protocol's messages and
//! the room logic that decides who is in a meeting, what they publish, who
//! receives what, and what each participant is told.
//!
//! A [`Room`] takes calls (someone joins, sends a message, loses their connection,
//! time passes) and queues [`Effect`]s: messages to participants and media actions
//! for the SFU. The server edge carries them out.

pub mod access;
pub mod address;
pub mod e2ee;
pub mod identity;
pub mod names;
pub mod passcode;
pub mod policy;
pub mod protocol;
mod room;

pub use room::restart::{token_hash, Returning};
pub use room::{
    welcome_messages, AuditFact, Change, Effect, Entrant, MediaAction, ParticipantId, Room,
    RoomError, RoomLimits, RoomState,
};
