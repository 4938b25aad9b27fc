//! End-to-end encryption for Convene's Rust client (issue 16, step 7), the
//! counterpart of the browser's web/e2ee: an MLS member (`mls`) that agrees
//! keys with browsers through the server's Delivery Service, and SFrame
//! (`sframe`, `frame_keys`) for media frames in the format browsers use
//! (web/e2ee/README.md); and the server's check of commits (`delivery`).
//! Design: docs/e2ee-design.md.

pub mod credential;
pub mod delivery;
pub mod frame_keys;
pub mod mls;
pub mod sframe;
pub mod verification;

pub use credential::Claims;
pub use frame_keys::FrameKeys;
pub use mls::{EpochChange, Event, GroupMember, Member, Warning};
pub use sframe::MediaKind;
pub use verification::VerificationCode;
