//! The ID token's claims as a session keeps them, for `allowed_idp_claims`,
//! `claim/…` criteria and `jwt_claims_headers`.
//!
//! Every cached session holds one, so its size is the cache's: a
//! `serde_json::Map` (a B-tree) spent about 2 KB on a Dex login's thirteen
//! claims. Here they are one sorted slice, the names of the registered
//! OpenID claims are not copied per session, and the claims that only bind
//! a token to one response are not kept (see [`Claims::from_token`]). They
//! serialise as the same JSON object, so stored records read either way.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Claims that bind an ID token to one authentication response and mean
/// nothing once it has been verified (OpenID Connect Core §2, §3.1.3.6,
/// §3.3.2.11): checked at login, then dropped.
const PER_RESPONSE: [&str; 3] = ["at_hash", "c_hash", "nonce"];

/// Claim names kept as `&'static str` instead of one copy per session:
/// the registered ones (OpenID Connect Core §2, §5.1), the ones Dex sends,
/// and the common identity-provider extras.
const KNOWN_NAMES: [&str; 34] = [
    "acr",
    "address",
    "amr",
    "aud",
    "auth_time",
    "azp",
    "birthdate",
    "email",
    "email_verified",
    "exp",
    "family_name",
    "federated_claims",
    "gender",
    "given_name",
    "groups",
    "iat",
    "iss",
    "jti",
    "locale",
    "middle_name",
    "name",
    "nbf",
    "nickname",
    "phone_number",
    "phone_number_verified",
    "picture",
    "preferred_username",
    "profile",
    "roles",
    "sid",
    "sub",
    "updated_at",
    "website",
    "zoneinfo",
];

/// A claim's name: borrowed from [`KNOWN_NAMES`] when it is one of them.
fn claim_name(name: String) -> Cow<'static, str> {
    match KNOWN_NAMES.binary_search(&name.as_str()) {
        Ok(i) => Cow::Borrowed(KNOWN_NAMES[i]),
        Err(_) => Cow::Owned(name),
    }
}

/// A session's claims: name → JSON value, sorted by name, names unique.
#[derive(Clone, Default, PartialEq)]
pub struct Claims(Box<[(Cow<'static, str>, Value)]>);

impl Claims {
    /// The claims of a verified ID token, as a session keeps them: all but
    /// the per-response ones (`nonce`, `at_hash`, `c_hash`).
    pub fn from_token(claims: Map<String, Value>) -> Claims {
        claims
            .into_iter()
            .filter(|(name, _)| !PER_RESPONSE.contains(&name.as_str()))
            .collect()
    }

    /// The value of the claim `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .binary_search_by(|(own, _)| own.as_ref().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, replacing a claim of that name. Copies the
    /// slice: for building identities (tests, `authgate check`), not for
    /// anything per request.
    pub fn insert(&mut self, name: String, value: Value) {
        let mut all = std::mem::take(&mut self.0).into_vec();
        all.retain(|(own, _)| *own != name);
        all.push((claim_name(name), value));
        *self = Claims::sorted(all);
    }

    /// The claims in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (name.as_ref(), value))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `all` sorted by name; of two claims of one name, the last wins (as
    /// in a JSON object read by `serde_json`).
    fn sorted(mut all: Vec<(Cow<'static, str>, Value)>) -> Claims {
        // Stable, so equal names keep their order and the last is kept.
        all.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut unique: Vec<(Cow<'static, str>, Value)> = Vec::with_capacity(all.len());
        for claim in all {
            match unique.last_mut() {
                Some(last) if last.0 == claim.0 => *last = claim,
                _ => unique.push(claim),
            }
        }
        Claims(unique.into_boxed_slice())
    }
}

impl FromIterator<(String, Value)> for Claims {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(claims: I) -> Claims {
        Claims::sorted(
            claims
                .into_iter()
                .map(|(name, value)| (claim_name(name), value))
                .collect(),
        )
    }
}

impl From<Map<String, Value>> for Claims {
    /// Every claim of `map`, the per-response ones included (for
    /// identities built by hand; a login uses [`Claims::from_token`]).
    fn from(map: Map<String, Value>) -> Claims {
        map.into_iter().collect()
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Claims {
    /// Straight into the slice: a session loaded from the store (a cold
    /// cache) builds no B-tree on the way.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Claims, D::Error> {
        struct ClaimsVisitor;

        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = Claims;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Claims, A::Error> {
                let mut all = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some((name, value)) = access.next_entry::<String, Value>()? {
                    all.push((claim_name(name), value));
                }
                Ok(Claims::sorted(all))
            }
        }

        deserializer.deserialize_map(ClaimsVisitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn known_names_are_sorted_and_unique() {
        assert!(KNOWN_NAMES.windows(2).all(|w| w[0] < w[1]));
    }

    /// A login keeps every claim but the three that bind the token to its
    /// response; names known or not are found.
    #[test]
    fn a_token_keeps_all_but_the_per_response_claims() {
        let claims = Claims::from_token(map(json!({
            "sub": "CgQxMDAxEgRsZGFw", "nonce": "n", "at_hash": "a", "c_hash": "c",
            "groups": ["devops"], "department": "eng", "exp": 1_800_000_000,
        })));
        assert_eq!(claims.len(), 4);
        assert_eq!(claims.get("groups"), Some(&json!(["devops"])));
        assert_eq!(claims.get("department"), Some(&json!("eng")));
        assert_eq!(claims.get("exp"), Some(&json!(1_800_000_000)));
        assert!(!claims.contains_key("nonce"));
        assert!(!claims.contains_key("at_hash") && !claims.contains_key("c_hash"));
        assert_eq!(claims.get("missing"), None);
    }

    /// Serialised as the JSON object a `Map` gave, in the same (name)
    /// order, so records stored before and after read the same.
    #[test]
    fn serialises_as_the_same_object() {
        let original = map(json!({"zeta": 1, "sub": "s", "aud": ["a", "b"], "org": {"unit": "x"}}));
        let claims = Claims::from(original.clone());
        assert_eq!(
            serde_json::to_string(&claims).unwrap(),
            serde_json::to_string(&original).unwrap()
        );
        let back: Claims =
            serde_json::from_str(&serde_json::to_string(&original).unwrap()).unwrap();
        assert_eq!(back, claims);
        assert!(serde_json::from_str::<Claims>("[1, 2]").is_err());
    }

    /// Of a name given twice, the last value counts, as `serde_json` reads
    /// an object; `insert` replaces.
    #[test]
    fn the_last_of_a_repeated_name_wins() {
        let claims: Claims = serde_json::from_str(r#"{"sub": "a", "x": 1, "sub": "b"}"#).unwrap();
        assert_eq!(claims.len(), 2);
        assert_eq!(claims.get("sub"), Some(&json!("b")));
        let mut claims = claims;
        claims.insert("x".into(), json!(2));
        claims.insert("a".into(), json!(true));
        assert_eq!(
            claims.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["a", "sub", "x"]
        );
        assert_eq!(claims.get("x"), Some(&json!(2)));
    }
}
