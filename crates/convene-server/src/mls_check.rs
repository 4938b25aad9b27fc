//! The check the Delivery Service of an encrypted meeting runs on every commit
//! before fan-out (convene-meeting's `HandshakeCheck`, docs/e2ee-design.md §5
//! step 6), made with convene-e2ee's openmls `PublicGroup`.

use convene_meeting::e2ee::check::HandshakeCheck;

#[derive(Debug, Default)]
struct PublicGroupCheck(convene_e2ee::delivery::CommitCheck);

impl HandshakeCheck for PublicGroupCheck {
    fn created(
        &mut self,
        group_info: &[u8],
        group_id: &[u8],
        sender: &str,
        key_package: &[u8],
    ) -> Result<(), String> {
        self.0
            .created(group_info, group_id, sender, key_package)
            .map_err(|e| e.0)
    }

    fn commit(
        &mut self,
        commit: &[u8],
        sender: &str,
        add: &[(&str, &[u8])],
        remove: &[&str],
    ) -> Result<(), String> {
        self.0.commit(commit, sender, add, remove).map_err(|e| e.0)
    }
}

/// One checker per group.
pub fn new_check() -> Box<dyn HandshakeCheck> {
    Box::<PublicGroupCheck>::default()
}
