//! Sessions: the sealed cookie, the session store and its cache.
//!
//! - The cookie holds only a sealed, fixed-size ticket: session id,
//!   per-session key, issue and expiry times. No claims, so it never grows.
//! - The [`SessionRecord`] (identity, refresh token, refresh schedule) lives
//!   in a [`SessionStore`], sealed with the per-session key: a leaked store
//!   is useless without the cookies.
//! - [`Sessions`] ties them together and keeps a short-lived local cache, so
//!   the decision path does no I/O for a known session.
//!
//! Stores: [`MemoryStore`] (demo, tests), [`EmbeddedStore`] (a redb file,
//! the default) and [`RedisStore`] (shared by replicas; standalone,
//! Sentinel or Cluster), all held to one conformance suite. With Redis,
//! every deletion or replacement is also published, so each replica drops
//! its cached copy at once ([`Sessions::follow_changes`]).

mod admin;
mod cookie;
mod embedded;
mod file_pool;
mod index;
mod manager;
mod memory;
mod open;
mod record;
pub(crate) mod redis;
mod seal;
mod store;
mod ticket;
mod value_cache;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod test_redis;

pub use self::redis::{CHANGES_CHANNEL, Credentials, RedisStore, RedisTarget};
pub use admin::{Reply, Request, Scope, perform};
pub use cookie::{SessionCookie, cookie_values};
pub use embedded::EmbeddedStore;
pub use index::{
    Origin, SessionIndex, SessionInfo, Target, public_id, session_key, user_key, user_of,
};
pub use manager::{
    COOKIE_VALUE_LEN, CachedLookup, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_TTL, Resolved,
    SessionError, Sessions, touch_interval,
};
pub use memory::MemoryStore;
pub use open::open_store;
pub use record::{EncodeError, SessionRecord};
pub use seal::{MAX_SEALED_LEN, Purpose, SECRET_LEN, SealError, Sealer};
pub use store::{
    ChangeFeed, IndexEntry, KEY_PREFIX, SessionStore, StoreChange, StoreError, StoreFuture,
    parse_store_key, store_key,
};
