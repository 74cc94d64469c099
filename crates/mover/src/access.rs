//! Which identities an entry's permissions let in, as the kernel decides without capabilities.
//!
//! Where root has no power (NFS with `root_squash`), the mover acts as an identity the
//! permissions allow. Usually that is the entry's owner, but the owner's bits may deny what the
//! group's bits (or a named entry of a POSIX ACL) allow: a file of mode 0040 owned by 1001:3003
//! can be read by a member of group 3003 that is not uid 1001, and by nobody else. This module
//! answers "whom else to act as" from the mode and the ACL, following the kernel's
//! `posix_acl_permission` and `acl_permission_check`:
//!
//! - the owner gets the owner bits, whatever the other entries say;
//! - a named user of the ACL gets its entry, masked;
//! - otherwise every matching group (the owning group, named groups) is looked at: access is
//!   granted when one of them allows it (masked), and denied when groups matched but none
//!   allowed it;
//! - everyone else gets the other bits.

use serde::{Deserialize, Serialize};

use crate::owner::Id;

/// Read permission.
pub const READ: u32 = 4;
/// Write permission.
pub const WRITE: u32 = 2;
/// Execute (search, for a directory) permission.
pub const EXEC: u32 = 1;

const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;

/// A POSIX access ACL as the kernel stores it in `system.posix_acl_access`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    users: Vec<(u32, u32)>,
    groups: Vec<(u32, u32)>,
    group_obj: Option<u32>,
    mask: Option<u32>,
}

impl Acl {
    /// Parses the value of `system.posix_acl_access` (version 2: a 4-byte header, then 8-byte
    /// entries `tag: u16, perm: u16, id: u32`, little-endian). `None` when it is not one.
    pub fn parse(value: &[u8]) -> Option<Acl> {
        let (head, body) = value.split_at_checked(4)?;
        if u32::from_le_bytes(head.try_into().ok()?) != 2 || body.len() % 8 != 0 {
            return None;
        }
        let mut acl = Acl::default();
        for e in body.chunks_exact(8) {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let perm = u32::from(u16::from_le_bytes([e[2], e[3]])) & 7;
            let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            match tag {
                TAG_USER => acl.users.push((id, perm)),
                TAG_GROUP => acl.groups.push((id, perm)),
                TAG_GROUP_OBJ => acl.group_obj = Some(perm),
                TAG_MASK => acl.mask = Some(perm),
                TAG_USER_OBJ | TAG_OTHER => {}
                _ => return None,
            }
        }
        Some(acl)
    }

    fn masked(&self, perm: u32) -> u32 {
        perm & self.mask.unwrap_or(7)
    }

    fn is_named_user(&self, uid: u32) -> bool {
        self.users.iter().any(|&(u, _)| u == uid)
    }

    fn is_named_group(&self, gid: u32) -> bool {
        self.groups.iter().any(|&(g, _)| g == gid)
    }
}

/// How an identity other than the entry's owner is let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// As a member of the entry's group (with an fsuid that is not the owner).
    Group,
    /// As a user named in the entry's ACL.
    AclUser,
    /// As a member of a group named in the entry's ACL.
    AclGroup,
    /// As someone who is neither the owner nor in any group of the entry.
    Other,
}

impl Via {
    /// A few words for people.
    pub fn describe(self) -> &'static str {
        match self {
            Via::Group => "a member of its group",
            Via::AclUser => "the user its ACL names",
            Via::AclGroup => "a member of a group its ACL names",
            Via::Other => "neither its owner nor in its groups",
        }
    }
}

/// An identity other than the owner that an entry's permissions let do what is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alternate {
    /// The fsuid and fsgid to act as.
    pub id: Id,
    /// Why the permissions let it in.
    pub via: Via,
}

/// Whether fsuid `uid` with the groups `groups` may do `need` (a mask of [`READ`], [`WRITE`],
/// [`EXEC`]) on an entry of `owner` with permission bits `perm` and access ACL `acl`, by the
/// permission bits alone (no capability).
pub fn allows(
    owner: Id,
    perm: u32,
    acl: Option<&Acl>,
    uid: u32,
    groups: &[u32],
    need: u32,
) -> bool {
    let grants = |bits: u32| bits & need == need;
    if uid == owner.0 {
        return grants((perm >> 6) & 7);
    }
    let Some(acl) = acl else {
        if groups.contains(&owner.1) {
            return grants((perm >> 3) & 7);
        }
        return grants(perm & 7);
    };
    if let Some(&(_, p)) = acl.users.iter().find(|&&(u, _)| u == uid) {
        return grants(acl.masked(p));
    }
    let mut matched = false;
    let owning = acl.group_obj.map(|p| (owner.1, p));
    for (g, p) in owning.into_iter().chain(acl.groups.iter().copied()) {
        if groups.contains(&g) {
            if grants(acl.masked(p)) {
                return true;
            }
            matched = true;
        }
    }
    !matched && grants(perm & 7)
}

/// The first of 65534, 65533, ... (the kernel's overflow uid and below) that `taken` refuses:
/// an fsuid that is neither the owner nor named in the ACL.
fn stand_in(taken: impl Fn(u32) -> bool) -> u32 {
    (0..1024)
        .map(|i| 65534 - i)
        .find(|&u| !taken(u))
        .unwrap_or(65534 - 1024)
}

/// The identities other than the owner that the permissions of an entry of `owner` with bits
/// `perm` and access ACL `acl` let do `need`, best first: users named in the ACL, then a member
/// of the entry's group, then a member of each group named in the ACL, then anyone else.
///
/// Group identities act with the fsuid `prefer_uid` when it is neither the owner nor named in
/// the ACL (so that what they create belongs to that uid: the new entry's own owner), else with
/// a stand-in uid that is neither (65534, or the first free one below it).
pub fn alternates(
    owner: Id,
    perm: u32,
    acl: Option<&Acl>,
    need: u32,
    prefer_uid: Option<u32>,
) -> Vec<Alternate> {
    let named_user = |u: u32| acl.is_some_and(|a| a.is_named_user(u));
    let uid = prefer_uid
        .filter(|&u| u != owner.0 && !named_user(u))
        .unwrap_or_else(|| stand_in(|u| u == owner.0 || named_user(u)));
    let mut candidates: Vec<Alternate> = Vec::new();
    if let Some(acl) = acl {
        for &(u, _) in &acl.users {
            if u != owner.0 {
                candidates.push(Alternate {
                    id: (u, owner.1),
                    via: Via::AclUser,
                });
            }
        }
    }
    candidates.push(Alternate {
        id: (uid, owner.1),
        via: Via::Group,
    });
    if let Some(acl) = acl {
        for &(g, _) in &acl.groups {
            candidates.push(Alternate {
                id: (uid, g),
                via: Via::AclGroup,
            });
        }
    }
    let other_gid = stand_in(|g| g == owner.1 || acl.is_some_and(|a| a.is_named_group(g)));
    candidates.push(Alternate {
        id: (uid, other_gid),
        via: Via::Other,
    });
    let mut out: Vec<Alternate> = Vec::new();
    for c in candidates {
        if allows(owner, perm, acl, c.id.0, &[c.id.1], need) && !out.iter().any(|o| o.id == c.id) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn a_group_readable_file_is_read_by_a_member_that_is_not_its_owner() {
        let owner = (1001, 3003);
        assert!(!allows(owner, 0o040, None, 1001, &[3003], READ));
        assert!(allows(owner, 0o040, None, 65534, &[3003], READ));
        assert!(!allows(owner, 0o040, None, 65534, &[65534], READ));
        let alts = alternates(owner, 0o040, None, READ, None);
        assert_eq!(
            alts,
            [Alternate {
                id: (65534, 3003),
                via: Via::Group
            }]
        );
    }

    #[test]
    fn the_stand_in_is_never_the_owner() {
        let alts = alternates((65534, 3003), 0o040, None, READ, None);
        assert_eq!(alts[0].id, (65533, 3003));
        // The preferred uid is taken when it is not the owner.
        let alts = alternates((1001, 3003), 0o070, None, WRITE | EXEC, Some(1002));
        assert_eq!(alts[0].id, (1002, 3003));
        let alts = alternates((1001, 3003), 0o070, None, WRITE | EXEC, Some(1001));
        assert_eq!(alts[0].id, (65534, 3003));
    }

    #[test]
    fn named_acl_entries_let_in_their_user_and_group_within_the_mask() {
        // user::---, user:1002:r--, group::---, group:4000:r--, mask::r--, other::---
        let raw = acl(&[
            (TAG_USER_OBJ, 0, 0),
            (TAG_USER, 4, 1002),
            (TAG_GROUP_OBJ, 0, 0),
            (TAG_GROUP, 4, 4000),
            (TAG_MASK, 4, 0),
            (TAG_OTHER, 0, 0),
        ]);
        let a = Acl::parse(&raw).unwrap();
        let owner = (1001, 3003);
        let alts = alternates(owner, 0o040, Some(&a), READ, None);
        assert_eq!(
            alts,
            [
                Alternate {
                    id: (1002, 3003),
                    via: Via::AclUser
                },
                Alternate {
                    id: (65534, 4000),
                    via: Via::AclGroup
                },
            ]
        );
        // The owning group matched and denies: no fallback to the other bits.
        assert!(!allows(owner, 0o044, Some(&a), 65534, &[3003], READ));
        // A mask without r lets no named entry read.
        let raw = acl(&[
            (TAG_USER_OBJ, 0, 0),
            (TAG_USER, 4, 1002),
            (TAG_GROUP_OBJ, 0, 0),
            (TAG_MASK, 0, 0),
            (TAG_OTHER, 0, 0),
        ]);
        let a = Acl::parse(&raw).unwrap();
        assert!(alternates(owner, 0o000, Some(&a), READ, None).is_empty());
    }

    #[test]
    fn garbage_is_not_an_acl() {
        assert!(Acl::parse(b"").is_none());
        assert!(Acl::parse(&[1, 0, 0, 0]).is_none());
        assert!(Acl::parse(&[2, 0, 0, 0, 1]).is_none());
    }
}
