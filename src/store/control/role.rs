//! Roles: viewer < editor < admin, held per workspace membership.
//!
//! Viewers read; editors also manage streaming keys; admins also manage
//! users, members and workspaces. A check is "at least this role".

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer = 1,
    Editor = 2,
    Admin = 3,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// The byte stored in the `members` table.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    pub fn from_byte(b: u8) -> Option<Role> {
        match b {
            1 => Some(Role::Viewer),
            2 => Some(Role::Editor),
            3 => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
        for r in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(Role::from_byte(r.to_byte()), Some(r));
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::from_byte(0), None);
        assert_eq!(Role::parse("owner"), None);
    }
}
