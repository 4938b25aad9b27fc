//! The server's check of commits (docs/e2ee-design.md §5, build step 6): an
//! openmls `PublicGroup`, the view of an MLS group (RFC 9420) that a Delivery
//! Service can have without any member's secrets. Commits travel as
//! PublicMessage, so the server can verify each one as a member would before
//! anyone gets it: the committer's signature, that the committer is who sent
//! it, the tree it leaves, and that it does exactly what the server asked (adds
//! those key packages, removes those participants, changes nobody's
//! credential). A commit that fails is refused before fan-out, so members
//! never disagree with the server about the epoch (security review F4).
//!
//! What it cannot check needs secrets: the confirmation and membership tags,
//! and whether the path secrets encrypted to each member are sound. Members
//! still check those (mls.js and [`crate::mls`]) and report a failure.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openmls::prelude::*;
use openmls_rust_crypto::OpenMlsRustCrypto;
use sha2::{Digest, Sha256};

use crate::credential::Claims;
use crate::mls::{adds_differ, changed_credential, CIPHERSUITE};

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refusal(e: impl std::fmt::Display) -> Refusal {
    Refusal(e.to_string())
}

/// One meeting's group as the server checks it.
pub struct CommitCheck {
    provider: OpenMlsRustCrypto,
    group: Option<PublicGroup>,
}

impl std::fmt::Debug for CommitCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitCheck")
            .field("epoch", &self.epoch())
            .finish()
    }
}

impl Default for CommitCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl CommitCheck {
    pub fn new() -> Self {
        CommitCheck {
            provider: OpenMlsRustCrypto::default(),
            group: None,
        }
    }

    /// The group's epoch as checked so far (`None` before it was made).
    pub fn epoch(&self) -> Option<u64> {
        self.group
            .as_ref()
            .map(|g| g.group_context().epoch().as_u64())
    }

    /// The group as its first member made it: its GroupInfo (an MLSMessage,
    /// with the ratchet tree in an extension, as every Convene client sends
    /// it), for `group_id` at epoch 0, signed by its only member, who must be
    /// `sender` with the credential of `key_package` (the KeyPackage
    /// MLSMessage the server took from them, whose credential it checked).
    pub fn created(
        &mut self,
        group_info: &[u8],
        group_id: &[u8],
        sender: &str,
        key_package: &[u8],
    ) -> Result<(), Refusal> {
        let message =
            <MlsMessageIn as openmls::prelude::tls_codec::Deserialize>::tls_deserialize_exact(
                group_info,
            )
            .map_err(refusal)?;
        let MlsMessageBodyIn::GroupInfo(info) = message.extract() else {
            return Err(Refusal("not a GroupInfo".into()));
        };
        let Some(tree) = info.extensions().ratchet_tree() else {
            return Err(Refusal("the GroupInfo has no ratchet tree".into()));
        };
        let tree = tree.ratchet_tree().clone();
        let (group, _) = PublicGroup::from_external(
            self.provider.crypto(),
            self.provider.storage(),
            tree,
            info,
            ProposalStore::new(),
        )
        .map_err(refusal)?;
        if group.ciphersuite() != CIPHERSUITE
            || group.group_id().as_slice() != group_id
            || group.group_context().epoch().as_u64() != 0
        {
            return Err(Refusal(
                "not this meeting's group, suite 1, at epoch 0".into(),
            ));
        }
        let members: Vec<Option<String>> = group.members().map(|m| pid_of(&m.credential)).collect();
        if members != [Some(sender.to_string())] {
            return Err(Refusal(
                "a new group has one member: the one who made it".into(),
            ));
        }
        let kp = <MlsMessageIn as openmls::prelude::tls_codec::Deserialize>::tls_deserialize_exact(
            key_package,
        )
        .map_err(refusal)?;
        let MlsMessageBodyIn::KeyPackage(kp) = kp.extract() else {
            return Err(Refusal("not a KeyPackage".into()));
        };
        let kp = kp
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(refusal)?;
        if group
            .members()
            .any(|m| &m.credential != kp.leaf_node().credential())
        {
            return Err(Refusal(
                "the new group's member has another credential than the key package checked".into(),
            ));
        }
        // No group context extensions: Convene's clients set none, and one
        // (required capabilities, say) could make every later add fail.
        if group.group_context().extensions().iter().next().is_some() {
            return Err(Refusal(
                "a new group has no group context extensions".into(),
            ));
        }
        self.group = Some(group);
        Ok(())
    }

    /// A commit (an MLSMessage) for the current epoch from `sender`, which
    /// must add exactly `add` (participant id and the KeyPackage MLSMessage
    /// each sent) and remove exactly the leaves of `remove`. Applied if it
    /// passes; nothing changes if it does not.
    pub fn commit(
        &mut self,
        commit: &[u8],
        sender: &str,
        add: &[(&str, &[u8])],
        remove: &[&str],
    ) -> Result<(), Refusal> {
        let Some(group) = self.group.as_mut() else {
            return Err(Refusal("there is no group to commit to".into()));
        };
        let message =
            <MlsMessageIn as openmls::prelude::tls_codec::Deserialize>::tls_deserialize_exact(
                commit,
            )
            .map_err(refusal)?;
        if message.wire_format() != WireFormat::PublicMessage {
            return Err(Refusal(
                "commits must be PublicMessages, for the server to check".into(),
            ));
        }
        let message = message.try_into_protocol_message().map_err(refusal)?;
        let processed = group
            .process_message(self.provider.crypto(), message)
            .map_err(refusal)?;
        let Sender::Member(committer) = *processed.sender() else {
            return Err(Refusal("a commit comes from a member".into()));
        };
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(Refusal("not a commit".into()));
        };
        // Adds and removes by value, and nothing else: Convene's committers
        // propose nothing more, and a pre-shared key, ReInit or new group
        // context extension would pass this check yet fail or bind members.
        if let Some(p) = staged.queued_proposals().find(|p| {
            !matches!(
                p.proposal().proposal_type(),
                ProposalType::Add | ProposalType::Remove
            )
        }) {
            return Err(Refusal(format!(
                "proposes {:?}: only adds and removes",
                p.proposal().proposal_type()
            )));
        }
        let leaf_pid = |leaf: LeafNodeIndex| group.leaf(leaf).and_then(|l| pid_of(l.credential()));
        if leaf_pid(committer).as_deref() != Some(sender) {
            return Err(Refusal(format!(
                "signed by leaf {}, which is not the sender's",
                committer.u32()
            )));
        }
        // Removes: every leaf of those asked for, and no other.
        let gone: BTreeSet<u32> = staged
            .remove_proposals()
            .map(|r| r.remove_proposal().removed().u32())
            .collect();
        let asked: BTreeSet<u32> = group
            .members()
            .filter(|m| pid_of(&m.credential).is_some_and(|p| remove.contains(&p.as_str())))
            .map(|m| m.index.u32())
            .collect();
        if gone != asked {
            return Err(Refusal(format!(
                "removes leaves {gone:?}, not those asked for ({asked:?})"
            )));
        }
        let want: Vec<String> = add
            .iter()
            .map(|(p, kp)| format!("{p} {}", B64.encode(Sha256::digest(kp))))
            .collect();
        if let Some(reason) = adds_differ(&staged, want).map_err(refusal)? {
            return Err(Refusal(reason));
        }
        let before = |leaf: u32| {
            group
                .leaf(LeafNodeIndex::new(leaf))
                .map(|l| l.credential().clone())
        };
        if let Some(reason) = changed_credential(before, &staged, Some(committer.u32()), &gone) {
            return Err(Refusal(reason));
        }
        group
            .merge_commit(self.provider.storage(), *staged)
            .map_err(refusal)?;
        Ok(())
    }
}

fn pid_of(credential: &Credential) -> Option<String> {
    let basic = BasicCredential::try_from(credential.clone()).ok()?;
    Claims::parse(basic.identity()).map(|c| c.p)
}

#[cfg(test)]
mod tests;
