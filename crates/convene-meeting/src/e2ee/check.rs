//! The server's check of a group's handshake messages (docs/e2ee-design.md §5,
//! build step 6): each commit verified as a member would, as far as that can
//! be done without a member's secrets, before anyone gets it. The domain holds
//! no MLS library: the edge gives the Delivery Service one (convene-server,
//! with convene-e2ee's openmls `PublicGroup`).

/// One group's checker. Messages are the MLSMessage bytes clients sent.
pub trait HandshakeCheck: Send + std::fmt::Debug {
    /// The group as its first member, `sender`, made it (a GroupInfo with the
    /// ratchet tree, for `group_id` at epoch 0), with the credential of the
    /// `key_package` the server took (and checked) from them.
    fn created(
        &mut self,
        group_info: &[u8],
        group_id: &[u8],
        sender: &str,
        key_package: &[u8],
    ) -> Result<(), String>;
    /// A commit for the current epoch from `sender`, which must add exactly
    /// `add` (participant id, KeyPackage bytes) and remove exactly `remove`.
    /// Applied if it passes; nothing changes if it does not.
    fn commit(
        &mut self,
        commit: &[u8],
        sender: &str,
        add: &[(&str, &[u8])],
        remove: &[&str],
    ) -> Result<(), String>;
}

/// Makes the checker of each new group.
pub type NewCheck = fn() -> Box<dyn HandshakeCheck>;
