//! Who a signed-in user is: the claims the provider vouched for at login.
//!
//! Built by `oidc` from a verified ID token, kept (sealed) in the session
//! store, read by `policy` and rendered into headers by `decision`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The identity of one session, as the provider stated it at the last login
/// or refresh.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The ID token's `sub`: opaque, stable per user and connector.
    pub subject: String,
    /// `email`, if the provider sent one.
    pub email: Option<String>,
    /// `email_verified`; `None` when the claim was absent.
    pub email_verified: Option<bool>,
    /// `preferred_username` (Dex: the LDAP `preferredUsernameAttr`).
    pub preferred_username: Option<String>,
    /// `name` (Dex: the LDAP `nameAttr`).
    pub name: Option<String>,
    /// `groups`; empty when the provider omitted the claim (Dex does so for
    /// users in no group).
    pub groups: Vec<String>,
    /// Every claim of the ID token, for `allowed_idp_claims`.
    pub claims: Map<String, Value>,
}

impl Identity {
    /// Who this is, for logs and pages: the email, else the subject.
    pub fn display_name(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.subject)
    }
}
