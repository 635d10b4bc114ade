//! Configuration text: arbitrary YAML through `config::parse_str` (what
//! `serve`, `check-config` and reload call), then the policy compiler for
//! a configuration that validates. No environment variables.
//!
//! Invariants: no panic, no hang; every error renders; a configuration
//! that validates compiles (compiling cannot fail).
#![no_main]

use authgate::config;
use authgate::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `*_file` keys read the named file: a fuzzer must not read (or block
    // on) whatever the machine has. Files are the administrator's, not an
    // attacker's input.
    if text.contains("file") {
        return;
    }
    match config::parse_str("fuzz.yaml", text, &|_| None) {
        Ok(loaded) => {
            let _ = format!("{:?}", loaded.config);
            let _ = Policy::compile(loaded.config.routes);
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
});
