//! Who may manage other people's sessions (`admin_groups`): compiled into
//! the same [`Authz`] a route's `allowed_groups` is, so one piece of code
//! decides membership everywhere.

use crate::identity::Identity;

use super::authz::Authz;

/// The admin API's authorization.
#[derive(Clone, Debug)]
pub struct AdminAccess(Authz);

impl AdminAccess {
    /// Members of any of `groups`; no groups admits nobody.
    pub fn groups(groups: &[String]) -> AdminAccess {
        AdminAccess(Authz::compile(false, &[], &[], groups, &[]))
    }

    pub fn allows(&self, identity: &Identity) -> bool {
        self.0.allows(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member_of(groups: &[&str]) -> Identity {
        Identity {
            subject: "s".into(),
            email: Some("ops@example.com".into()),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Identity::default()
        }
    }

    /// Members of a listed group only, matched exactly as routes match
    /// groups; an empty list admits nobody, not everybody.
    #[test]
    fn admits_listed_groups_only() {
        let access = AdminAccess::groups(&["ops".into(), "sre".into()]);
        assert!(access.allows(&member_of(&["dev", "sre"])));
        assert!(!access.allows(&member_of(&["Ops", "dev"])));
        assert!(!access.allows(&member_of(&[])));
        assert!(!AdminAccess::groups(&[]).allows(&member_of(&["ops"])));
    }
}
