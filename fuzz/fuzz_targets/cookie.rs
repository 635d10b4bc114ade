//! Session cookie values: arbitrary strings, and near misses of the live
//! cookie, through `Sessions::resolve` (what the decision path calls for
//! every cookie named like ours) and `Sealer::open` for both purposes.
//!
//! Invariant: only the live cookie itself opens or resolves; garbage,
//! truncations, extensions and bit flips never do. And a value that
//! authenticates but carries arbitrary bytes (sealed here with the real
//! key) never resolves to a session.
//!
//! Input: the first byte picks the shape, the rest is its material.
#![no_main]

use authgate::session::Purpose;
use authgate_fuzz::FIXTURE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = &*FIXTURE;
    let live = fixture.session_cookie.as_bytes();
    let candidate: Vec<u8> = match mode % 4 {
        // Any string.
        0 => rest.to_vec(),
        // The live cookie with bytes XOR-ed: (position, mask) pairs.
        1 => {
            let mut bytes = live.to_vec();
            for pair in rest.chunks_exact(2) {
                let at = usize::from(pair[0]) % bytes.len();
                bytes[at] ^= pair[1];
            }
            bytes
        }
        // A prefix of the live cookie followed by the input.
        2 => {
            let keep = rest
                .first()
                .map_or(0, |&n| usize::from(n) % (live.len() + 1));
            [&live[..keep], rest.get(1..).unwrap_or_default()].concat()
        }
        // Authentic but arbitrary plaintext: sealed with the real key.
        _ => {
            let sealed = fixture
                .app
                .sessions()
                .sealer()
                .seal(Purpose::SessionCookie, rest);
            let resolved = fixture
                .runtime
                .block_on(fixture.app.sessions().resolve(&sealed));
            assert!(
                matches!(resolved, Ok(None)),
                "sealed garbage {rest:?} resolved to a session"
            );
            return;
        }
    };
    let text = String::from_utf8_lossy(&candidate);
    let is_live = text.as_bytes() == live;
    let sessions = &fixture.app.sessions();
    let resolved = fixture.runtime.block_on(sessions.resolve(&text));
    match resolved {
        Ok(Some(_)) => assert!(is_live, "{text:?} resolved to a session"),
        Ok(None) => assert!(!is_live, "the live cookie did not resolve"),
        Err(e) => panic!("in-memory store failed: {e}"),
    }
    let opened = sessions.sealer().open(Purpose::SessionCookie, &text);
    assert_eq!(opened.is_ok(), is_live, "{text:?}: {opened:?}");
    assert!(
        sessions.sealer().open(Purpose::LoginState, &text).is_err(),
        "{text:?} opened as a login state"
    );
});
