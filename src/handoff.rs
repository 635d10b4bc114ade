//! Handoff: one login for hosts outside the cookie domain.
//!
//! The session cookie is set on `cookie_domain`, so a browser never sends it
//! to a protected host elsewhere (`app.other.test` when the cookie domain is
//! `example.test`). For such a host the login host, once the user has a
//! session, mints a handoff token and sends the browser to
//! that host's `/.authgate/callback` with a page that posts the token there
//! at once (so it never travels in a URL, which access logs and browser
//! history keep); authgate answers there (the proxy routes `/.authgate/` on
//! every protected host to it), sets a session cookie valid on that host
//! only ([`crate::session::Sessions::host_cookie`]) and redirects to the
//! original URL.
//!
//! The token is sealed with its own [`Purpose::Handoff`] key (encrypted and
//! authenticated: nobody can read the session in it or forge one) and
//! carries the session cookie value, the host it is for, the return URL on
//! that host, an expiry [`TOKEN_TTL`] ahead and a random id. It is used up
//! at its first presentation, whatever the outcome: the id is claimed in
//! the session store (atomically, with a TTL until the token's expiry, so
//! the one-time rule holds across replicas sharing Redis) before the host
//! and the browser are checked. It is then refused on any other host and
//! in any other browser, and never accepted again.
//!
//! Both hosts' cookies name the same session record, so signing out (which
//! deletes the record) ends the session on every host at once; the
//! handoff host's cookie is its own credential, refused on every other
//! host, so that host's upstream cannot replay it elsewhere.
//!
//! # Binding to the browser
//!
//! A bearer token alone would let a signed-in user send their own callback
//! link to someone else, who would then be signed in *as that user* on the
//! handoff host (login CSRF). So the sign-in for such a host starts on the
//! host itself, at [`START_PATH`]: it sets a random nonce in a host-only
//! cookie ([`nonce_cookie_name`]) and sends the browser on to the login host
//! with only a keyed hash of it, the [binding](Handoffs::binding). The login
//! host seals the binding into the token, and the callback redeems the token
//! only in the browser whose nonce cookie hashes to it. An attacker can get
//! bindings for nonces of their own, but cannot read the victim's nonce
//! (HttpOnly, host-only, `__Host-` prefixed so a sibling host cannot plant
//! one either) nor compute a binding without `cookie_secret`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::policy::target::{self, Target};
use crate::redirect;
use crate::session::{Purpose, Sealer, SessionStore, StoreError};

/// Where authgate answers handoffs on every protected host.
pub const CALLBACK_PATH: &str = "/.authgate/callback";
/// Where the sign-in for a host outside the cookie domain begins, on that
/// host: it sets the nonce cookie, then goes on to the login host.
pub const START_PATH: &str = "/.authgate/start";
/// The path prefix the proxy routes to authgate on every protected host.
pub const PATH_PREFIX: &str = "/.authgate/";
/// How long a handoff token is valid: long enough for two redirects on a
/// slow connection, short enough that one copied from a log is worthless.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Prefix of the store keys that mark a token id as used.
pub const USED_KEY_PREFIX: &str = "authgate:handoff:";
/// How long the nonce cookie lives: the whole login at the provider happens
/// between [`START_PATH`] and the callback, and a login attempt may take
/// that long (`LOGIN_ATTEMPT_TTL`), plus the token's own lifetime.
pub const NONCE_TTL: Duration = Duration::from_secs(600 + TOKEN_TTL.as_secs());
/// Random bytes in a nonce (and bytes in a binding): 256 bits.
const NONCE_BYTES: usize = 32;
/// Length of a nonce or a binding in unpadded base64url.
const ENCODED_LEN: usize = 43;
/// The HKDF `info` of the binding key; distinct from every sealer key.
const BINDING_INFO: &[u8] = b"authgate v1 handoff binding";

/// Why a handoff token was refused. Messages never repeat the token or the
/// URL, so they are safe to log and show.
#[derive(Debug, Error)]
pub enum HandoffError {
    /// Not a token we sealed: tampered, truncated, another secret or
    /// another purpose.
    #[error("the handoff token is not valid")]
    Forged,
    /// Its [`TOKEN_TTL`] has passed.
    #[error("the handoff token has expired")]
    Expired,
    /// Minted for another host than the one it was presented at.
    #[error("the handoff token was issued for another host")]
    WrongHost,
    /// Its id was already claimed.
    #[error("the handoff token was already used")]
    Replayed,
    /// This browser did not start the sign-in the token was minted for: no
    /// nonce cookie, or one that does not match the token's binding (a
    /// link sent by someone else, or a login CSRF attempt).
    #[error("the handoff token was issued to another browser")]
    OtherBrowser,
    /// The return URL is not an address on the token's host (minting), or
    /// points back at `/.authgate/` (a loop).
    #[error("the return URL is not a page on the handoff host")]
    BadTarget,
    /// The store could not record or check the token's use: fail closed.
    #[error("session store unavailable")]
    Store(#[from] StoreError),
}

/// What a token carries. Field names are short: it travels in a URL.
#[derive(Serialize, Deserialize)]
struct Payload {
    /// Random id, claimed once in the store.
    #[serde(rename = "j")]
    id: String,
    /// The normalised host the token is for.
    #[serde(rename = "h")]
    host: String,
    /// The URL on that host to return to.
    #[serde(rename = "r")]
    return_to: String,
    /// The session cookie value (itself a sealed ticket).
    #[serde(rename = "s")]
    session: String,
    /// The binding of the browser that started the sign-in.
    #[serde(rename = "b")]
    binding: String,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "e")]
    expires_at: i64,
}

/// Where the login host sends a token: the browser posts `token` to
/// `action` (a form, never a URL with the token in it).
pub struct Delivery {
    /// `scheme://host[:port]/.authgate/callback` on the handoff host.
    pub action: String,
    /// The sealed token.
    pub token: String,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// A token that passed every check and is now used up.
pub struct Redeemed {
    /// The session cookie value to set on the handoff host.
    pub session_cookie: String,
    /// Where to send the browser: a URL on the handoff host.
    pub return_to: String,
}

impl fmt::Debug for Redeemed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redeemed")
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// Mints and redeems handoff tokens.
pub struct Handoffs {
    store: Arc<dyn SessionStore>,
    clock: SharedClock,
    /// Normalised cookie domain; `None`: no handoffs (see [`Handoffs::needed_for`]).
    cookie_domain: Option<String>,
    /// Keys the binding of a nonce (derived from `cookie_secret`).
    binding_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Handoffs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoffs")
            .field("cookie_domain", &self.cookie_domain)
            .finish_non_exhaustive()
    }
}

impl Handoffs {
    /// `store` records used token ids (the session store, so replicas
    /// sharing it agree); `cookie_domain` as configured; `secret` is
    /// `cookie_secret`, from which the binding key is derived (replicas
    /// sharing it compute the same bindings).
    pub fn new(
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
        cookie_domain: Option<&str>,
        secret: &Secret,
    ) -> Handoffs {
        let mut binding_key = Zeroizing::new([0u8; 32]);
        // Expand fails only past 255 * 32 bytes of output; 32 is fine.
        let _ = Hkdf::<Sha256>::new(None, secret.expose()).expand(BINDING_INFO, &mut *binding_key);
        Handoffs {
            store,
            clock,
            cookie_domain: cookie_domain.and_then(redirect::normalize_domain),
            binding_key,
        }
    }

    /// A fresh nonce for a browser's nonce cookie: 256 random bits.
    pub fn new_nonce() -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        URL_SAFE_NO_PAD.encode(nonce)
    }

    /// Whether `value` has the shape of a nonce (or a binding): anything
    /// else in the cookie or the query was not made by us.
    pub fn is_well_formed(value: &str) -> bool {
        value.len() == ENCODED_LEN
            && URL_SAFE_NO_PAD
                .decode(value)
                .is_ok_and(|bytes| bytes.len() == NONCE_BYTES)
    }

    /// The binding of `nonce` for the normalised `host`: HMAC-SHA256 under
    /// a key only authgate holds, so it reveals nothing about the nonce and
    /// cannot be computed by anyone else. `None` for a malformed nonce.
    pub fn binding(&self, host: &str, nonce: &str) -> Option<String> {
        if !Self::is_well_formed(nonce) {
            return None;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(self.binding_key.as_slice()).ok()?;
        mac.update(host.as_bytes());
        mac.update(&[0]);
        mac.update(nonce.as_bytes());
        Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// Whether sending the browser to `return_to` (an allowed, absolute
    /// return URL) needs a handoff: its host is neither the cookie domain
    /// nor under it (dot-anchored), so the session cookie would not reach
    /// it. Without a cookie domain the cookie is host-only on the login
    /// host and no handoff is made, as before.
    pub fn needed_for(&self, return_to: &str) -> bool {
        let Some(domain) = &self.cookie_domain else {
            return false;
        };
        let Ok(target) = Target::parse(return_to) else {
            return false;
        };
        !redirect::in_domain(&target.host, domain)
    }

    /// A one-time token handing `session_cookie` to the host of
    /// `return_to`, redeemable only in the browser of `binding`, and the
    /// callback on that host to post it to. `return_to` must already have
    /// passed the `rd` allow-list.
    pub fn mint(
        &self,
        sealer: &Sealer,
        session_cookie: &str,
        return_to: &str,
        binding: &str,
    ) -> Result<Delivery, HandoffError> {
        let target = Target::parse(return_to).map_err(|_| HandoffError::BadTarget)?;
        if target.raw_path.starts_with(PATH_PREFIX) {
            return Err(HandoffError::BadTarget);
        }
        if !Self::is_well_formed(binding) {
            return Err(HandoffError::OtherBrowser);
        }
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let payload = Payload {
            id: URL_SAFE_NO_PAD.encode(id),
            host: target.host.clone().into_owned(),
            return_to: return_to.to_owned(),
            session: session_cookie.to_owned(),
            binding: binding.to_owned(),
            expires_at: self.clock.now() + TOKEN_TTL.as_secs() as i64,
        };
        let json = serde_json::to_vec(&payload).map_err(|_| HandoffError::BadTarget)?;
        let token = sealer.seal(Purpose::Handoff, &json);
        let port = target.port.map_or_else(String::new, |p| format!(":{p}"));
        Ok(Delivery {
            action: format!("{}://{}{port}{CALLBACK_PATH}", target.scheme, target.host),
            token,
        })
    }

    /// Claims a token presented at `request_host` (the `Host` of the
    /// callback request, port allowed) by the browser whose nonce cookie is
    /// `nonce`, then checks it. A token that is ours and not expired is
    /// used up here whatever follows: one shown at the wrong host or in the
    /// wrong browser (someone else's link) can never be redeemed after.
    /// Garbage and expired tokens cost no I/O.
    pub async fn redeem(
        &self,
        sealer: &Sealer,
        token: &str,
        request_host: &str,
        nonce: Option<&str>,
    ) -> Result<Redeemed, HandoffError> {
        let payload = self.open(sealer, token)?;
        self.claim(&payload).await?;
        self.check(&payload, request_host, nonce)?;
        Ok(Redeemed {
            session_cookie: payload.session,
            return_to: payload.return_to,
        })
    }

    /// Marks the token's id as used; [`HandoffError::Replayed`] if it was.
    async fn claim(&self, payload: &Payload) -> Result<(), HandoffError> {
        let remaining = payload.expires_at.saturating_sub(self.clock.now());
        let ttl = Duration::from_secs(u64::try_from(remaining).unwrap_or(0));
        let key = format!("{USED_KEY_PREFIX}{}", payload.id);
        if !self
            .store
            .compare_and_swap(&key, None, b"used", ttl)
            .await?
        {
            return Err(HandoffError::Replayed);
        }
        Ok(())
    }

    /// The token's payload, if it is ours and not expired.
    fn open(&self, sealer: &Sealer, token: &str) -> Result<Payload, HandoffError> {
        let payload: Payload = sealer
            .open(Purpose::Handoff, token)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(HandoffError::Forged)?;
        if self.clock.now() >= payload.expires_at {
            return Err(HandoffError::Expired);
        }
        Ok(payload)
    }

    /// The checks after the claim: the host it was presented at, its
    /// return URL, and the browser.
    fn check(
        &self,
        payload: &Payload,
        request_host: &str,
        nonce: Option<&str>,
    ) -> Result<(), HandoffError> {
        let target = Target::parse(&payload.return_to).map_err(|_| HandoffError::BadTarget)?;
        let (host, _port) = target::normalize_authority(request_host, target.scheme)
            .map_err(|_| HandoffError::WrongHost)?;
        if host != payload.host.as_str() {
            return Err(HandoffError::WrongHost);
        }
        if target.host != payload.host.as_str() || target.raw_path.starts_with(PATH_PREFIX) {
            return Err(HandoffError::BadTarget);
        }
        let expected = nonce.and_then(|nonce| self.binding(&payload.host, nonce));
        match expected {
            Some(expected) if bool::from(expected.as_bytes().ct_eq(payload.binding.as_bytes())) => {
                Ok(())
            }
            _ => Err(HandoffError::OtherBrowser),
        }
    }
}

/// The nonce cookie's name for `cookie_name`. With `Secure` cookies it has
/// the `__Host-` prefix: browsers then refuse it from any response that
/// gives it a `Domain`, so a sibling host cannot plant its own nonce.
pub fn nonce_cookie_name(cookie_name: &str, secure: bool) -> String {
    let prefix = if secure { "__Host-" } else { "" };
    format!("{prefix}{cookie_name}_handoff")
}

/// Where the sign-in for `target` begins when its host is outside the
/// cookie domain: `scheme://host[:port]/.authgate/start?rd=<return_url>`.
/// Built without I/O, in one allocation, on the decision path.
pub fn start_url(target: &Target<'_>, return_url: &str) -> String {
    let encoded = url::form_urlencoded::byte_serialize(return_url.as_bytes());
    let mut url = String::with_capacity(
        target.scheme.as_str().len()
            + 3
            + target.host.len()
            + 6
            + START_PATH.len()
            + 4
            + return_url.len() * 3 / 2,
    );
    url.push_str(target.scheme.as_str());
    url.push_str("://");
    url.push_str(&target.host);
    if let Some(port) = target.port {
        use std::fmt::Write as _;
        let _ = write!(url, ":{port}");
    }
    url.push_str(START_PATH);
    url.push_str("?rd=");
    url.extend(encoded);
    url
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Secret;
    use crate::session::{MemoryStore, SECRET_LEN};

    const SESSION: &str = "sealed-session-ticket";

    struct Fixture {
        handoffs: Handoffs,
        sealer: Sealer,
        clock: ManualClock,
        store: Arc<MemoryStore>,
        /// The nonce cookie of the browser the tests mint for.
        nonce: String,
    }

    fn secret(byte: u8) -> Secret {
        Secret::new(vec![byte; SECRET_LEN])
    }

    fn fixture() -> Fixture {
        let clock = ManualClock::new(1_000_000);
        let shared: SharedClock = Arc::new(clock.clone());
        let store = Arc::new(MemoryStore::new(shared.clone()));
        Fixture {
            handoffs: Handoffs::new(store.clone(), shared, Some(".Example.test"), &secret(3)),
            sealer: Sealer::new(&secret(3), &[]).unwrap(),
            clock,
            store,
            nonce: Handoffs::new_nonce(),
        }
    }

    impl Fixture {
        /// The binding of this fixture's browser for `return_to`'s host.
        fn binding_for(&self, return_to: &str) -> String {
            let host = Target::parse(return_to).unwrap().host.into_owned();
            self.handoffs.binding(&host, &self.nonce).unwrap()
        }

        /// A token for `return_to`, sealed by `sealer`, and its callback.
        fn mint_with(&self, sealer: &Sealer, return_to: &str) -> Delivery {
            let binding = self.binding_for(return_to);
            self.handoffs
                .mint(sealer, SESSION, return_to, &binding)
                .unwrap()
        }

        /// The token of [`Fixture::mint_with`], with our sealer.
        fn mint(&self, return_to: &str) -> String {
            self.mint_with(&self.sealer, return_to).token
        }

        /// Redeems in this fixture's browser.
        async fn redeem(&self, token: &str, host: &str) -> Result<Redeemed, HandoffError> {
            self.handoffs
                .redeem(&self.sealer, token, host, Some(&self.nonce))
                .await
        }
    }

    /// Hosts under the cookie domain (dot-anchored) need no handoff; hosts
    /// elsewhere, look-alikes included, do; without a cookie domain nothing
    /// is handed off.
    #[test]
    fn handoff_is_needed_outside_the_cookie_domain() {
        let f = fixture();
        for inside in [
            "https://example.test/",
            "https://app.example.test/x",
            "https://a.b.example.test:8443/",
        ] {
            assert!(!f.handoffs.needed_for(inside), "{inside}");
        }
        for outside in [
            "https://app.other.test/x",
            "https://evilexample.test/",
            "https://example.test.other.test/",
        ] {
            assert!(f.handoffs.needed_for(outside), "{outside}");
        }
        let none = Handoffs::new(f.store.clone(), Arc::new(f.clock.clone()), None, &secret(3));
        assert!(!none.needed_for("https://app.other.test/x"));
    }

    /// A minted token is for the target host's callback (its port kept),
    /// which is a URL without the token, and redeems there once, giving
    /// back the session and the return URL.
    #[tokio::test]
    async fn mint_then_redeem_once() {
        let f = fixture();
        let delivery = f.mint_with(&f.sealer, "https://App.Other.test:8443/x?q=1");
        assert_eq!(
            delivery.action,
            "https://app.other.test:8443/.authgate/callback"
        );
        assert!(
            !delivery.token.contains(SESSION),
            "the session travels encrypted"
        );
        assert!(!format!("{delivery:?}").contains(&delivery.token));
        let redeemed = f
            .redeem(&delivery.token, "app.other.test:8443")
            .await
            .unwrap();
        assert_eq!(redeemed.session_cookie, SESSION);
        assert_eq!(redeemed.return_to, "https://App.Other.test:8443/x?q=1");
        assert!(!format!("{redeemed:?}").contains(SESSION));
        let again = f.redeem(&delivery.token, "app.other.test:8443").await;
        assert!(matches!(again, Err(HandoffError::Replayed)), "{again:?}");
    }

    /// The used-id mark lives in the store only until the token expires, so
    /// used tokens do not pile up.
    #[tokio::test]
    async fn used_mark_expires_with_the_token() {
        let f = fixture();
        let token = f.mint("https://app.other.test/");
        let id = f.handoffs.open(&f.sealer, &token).unwrap().id;
        f.redeem(&token, "app.other.test").await.unwrap();
        let key = format!("{USED_KEY_PREFIX}{id}");
        assert!(f.store.load(&key).await.unwrap().is_some());
        f.clock.advance(TOKEN_TTL.as_secs() as i64);
        assert!(f.store.load(&key).await.unwrap().is_none());
    }

    /// A token works until the last second before its expiry and is
    /// refused from then on, even unused.
    #[tokio::test]
    async fn expired_token_is_refused() {
        let f = fixture();
        let early = f.mint("https://app.other.test/");
        let late = f.mint("https://app.other.test/");
        f.clock.advance(TOKEN_TTL.as_secs() as i64 - 1);
        f.redeem(&early, "app.other.test").await.unwrap();
        f.clock.advance(1);
        let result = f.redeem(&late, "app.other.test").await;
        assert!(matches!(result, Err(HandoffError::Expired)), "{result:?}");
    }

    /// A token for host A is refused at host B, and that attempt uses it
    /// up; a fresh one works at A, whatever the spelling of its host.
    #[tokio::test]
    async fn token_is_bound_to_its_host() {
        let f = fixture();
        for wrong in [
            "b.other.test",
            "a.other.test.evil.test",
            "",
            "a.other.test:x",
        ] {
            let token = f.mint("https://a.other.test/");
            let result = f.redeem(&token, wrong).await;
            assert!(matches!(result, Err(HandoffError::WrongHost)), "{wrong}");
            let again = f.redeem(&token, "a.other.test").await;
            assert!(matches!(again, Err(HandoffError::Replayed)), "{wrong}");
        }
        let token = f.mint("https://a.other.test/");
        f.redeem(&token, "A.Other.test.").await.unwrap();
    }

    /// Tampered tokens, tokens sealed under another secret or for another
    /// purpose (a session cookie) are all refused as forged.
    #[tokio::test]
    async fn forged_tokens_are_refused() {
        let f = fixture();
        let good = f.mint("https://app.other.test/");
        let flipped = {
            let mut bytes = good.as_bytes().to_vec();
            let i = bytes.len() / 2;
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        };
        let other = Sealer::new(&Secret::new(vec![4; SECRET_LEN]), &[]).unwrap();
        let foreign = f.mint_with(&other, "https://app.other.test/").token;
        let cookie = f.sealer.seal(Purpose::SessionCookie, b"{}");
        for bad in [flipped.as_str(), &foreign, &cookie, "", "not-a-token"] {
            let result = f.redeem(bad, "app.other.test").await;
            assert!(matches!(result, Err(HandoffError::Forged)), "{bad}");
        }
    }

    /// A return URL under `/.authgate/` would loop; one that is not an
    /// absolute URL has no host to hand off to. Neither is minted.
    #[test]
    fn bad_return_urls_are_not_minted() {
        let f = fixture();
        let binding = f.binding_for("https://app.other.test/");
        for bad in [
            "https://app.other.test/.authgate/callback?token=x",
            "/relative",
            "app.other.test/x",
        ] {
            let result = f.handoffs.mint(&f.sealer, SESSION, bad, &binding);
            assert!(matches!(result, Err(HandoffError::BadTarget)), "{bad}");
        }
    }

    /// A binding is stable for one browser and host, differs for another
    /// nonce, another host and another `cookie_secret`, is not the nonce and
    /// has the nonce's shape; a malformed nonce has none.
    #[test]
    fn binding_is_a_keyed_hash_of_nonce_and_host() {
        let f = fixture();
        let nonce = f.nonce.as_str();
        let binding = f.handoffs.binding("app.other.test", nonce).unwrap();
        assert_eq!(
            f.handoffs.binding("app.other.test", nonce).unwrap(),
            binding
        );
        assert!(Handoffs::is_well_formed(&binding));
        assert_ne!(binding, nonce);
        let other_nonce = Handoffs::new_nonce();
        assert_ne!(other_nonce, nonce, "nonces are random");
        assert_ne!(
            f.handoffs.binding("app.other.test", &other_nonce).unwrap(),
            binding
        );
        assert_ne!(f.handoffs.binding("b.other.test", nonce).unwrap(), binding);
        let other_key = Handoffs::new(f.store.clone(), Arc::new(f.clock.clone()), None, &secret(4));
        assert_ne!(other_key.binding("app.other.test", nonce).unwrap(), binding);
        let long = format!("{nonce}A");
        for bad in ["", "short", &nonce[1..], long.as_str(), &"*".repeat(43)] {
            assert!(f.handoffs.binding("app.other.test", bad).is_none(), "{bad}");
        }
    }

    /// A token presented in another browser is refused — without a nonce
    /// cookie, with another browser's nonce, or with a malformed one — and
    /// used up by that presentation: a token minted for an attacker's
    /// binding and delivered to a victim's browser (which refuses it) can
    /// then no longer be redeemed with the attacker's nonce.
    #[tokio::test]
    async fn token_is_bound_to_the_browser_and_used_up_by_a_refusal() {
        let f = fixture();
        let victim = Handoffs::new_nonce();
        for nonce in [None, Some(victim.as_str()), Some("not-a-nonce")] {
            let token = f.mint("https://app.other.test/");
            let result = f
                .handoffs
                .redeem(&f.sealer, &token, "app.other.test", nonce)
                .await;
            assert!(
                matches!(result, Err(HandoffError::OtherBrowser)),
                "{nonce:?}"
            );
            let again = f.redeem(&token, "app.other.test").await;
            assert!(matches!(again, Err(HandoffError::Replayed)), "{nonce:?}");
        }
        let token = f.mint("https://app.other.test/");
        f.redeem(&token, "app.other.test").await.unwrap();
    }

    /// A token is minted only with a binding of the right shape.
    #[test]
    fn malformed_binding_is_not_minted() {
        let f = fixture();
        for bad in ["", "x", &f.nonce[2..]] {
            let result = f
                .handoffs
                .mint(&f.sealer, SESSION, "https://app.other.test/", bad);
            assert!(matches!(result, Err(HandoffError::OtherBrowser)), "{bad}");
        }
    }

    /// The start URL is on the target's own host and port, with the return
    /// URL as its one, encoded, `rd` parameter.
    #[test]
    fn start_url_is_on_the_target_host() {
        let return_url = "https://app.other.test:8443/x?a=1&b=%2F";
        let target = Target::parse(return_url).unwrap();
        let url = start_url(&target, &target.return_url());
        assert_eq!(
            url,
            "https://app.other.test:8443/.authgate/start?rd=https%3A%2F%2Fapp.other.test%3A8443%2Fx%3Fa%3D1%26b%3D%252F"
        );
        let parsed = url::Url::parse(&url).unwrap();
        let rd: Vec<_> = parsed.query_pairs().collect();
        assert_eq!(rd.len(), 1);
        assert_eq!(rd[0].1, return_url);
        let default_port = Target::parse("https://App.Other.test/").unwrap();
        assert!(
            start_url(&default_port, "x").starts_with("https://app.other.test/.authgate/start?rd=")
        );
    }

    /// The nonce cookie is `__Host-` prefixed whenever it is `Secure`.
    #[test]
    fn nonce_cookie_name_has_the_host_prefix_when_secure() {
        assert_eq!(
            nonce_cookie_name("_authgate", true),
            "__Host-_authgate_handoff"
        );
        assert_eq!(nonce_cookie_name("_authgate", false), "_authgate_handoff");
    }
}
