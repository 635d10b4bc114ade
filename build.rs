//! Link-time layout of the `authgate` executable.
//!
//! Linux maps a file-backed code fault in 64 KiB page-cache folios (and
//! fault-around windows aligned in virtual addresses). With the default
//! 4 KiB segment alignment the load address is random modulo 64 KiB, so in
//! most runs each window straddles two folios of the file and one fault
//! makes both resident: about a megabyte more of the binary in memory,
//! varying from start to start. Aligning the segments to 64 KiB (as on
//! 64 KiB-page arm64) makes the file offsets and addresses agree, so a
//! fault maps one folio. It costs only padding in the file.
//!
//! With `AUTHGATE_CODE_LAYOUT=1` (an opt-in release step: the Dockerfile
//! and `bench/run.sh` set it; a plain `cargo build --release` neither reads
//! the file nor runs `rustc -V`), release builds also lay out the functions
//! that run first, in the order of `bench/symbol-order.txt` (written by
//! `bench/symbol-order.sh`). Left
//! to the linker, the code run at start-up is spread over the whole
//! `.text`, and its faults keep most of the binary resident. The file names
//! symbols with the hashes of one toolchain and `Cargo.lock`, so it is used
//! only with rust-lld (the default linker of x86_64 Linux since Rust 1.90)
//! and the toolchain it was written with; otherwise the build falls back to
//! the default layout, which is larger in memory but equally correct.
//!
//! Packed relative relocations (`-z pack-relative-relocs`) would save
//! another half megabyte, but need glibc 2.36: RHEL 9 and Ubuntu 22.04
//! could not run the binary, so they are not used.

use std::env;
use std::path::Path;
use std::process::Command;

/// The order file, relative to the package root.
const SYMBOL_ORDER: &str = "bench/symbol-order.txt";
/// Set to `1` to apply [`SYMBOL_ORDER`] to a release build.
const OPT_IN: &str = "AUTHGATE_CODE_LAYOUT";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed={OPT_IN}");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo::rustc-link-arg-bin=authgate=-Wl,-z,max-page-size=65536");
    if env::var(OPT_IN).as_deref() != Ok("1") {
        return;
    }
    println!("cargo::rerun-if-changed={SYMBOL_ORDER}");
    let Some(package) = env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = Path::new(&package).join(SYMBOL_ORDER);
    if env::var("PROFILE").as_deref() == Ok("release")
        && links_with_default_linker()
        && written_for_this_toolchain(&order)
    {
        println!(
            "cargo::rustc-link-arg-bin=authgate=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Functions of the file the binary lacks (inlined, or renamed by a
        // dependency update) are skipped, not errors.
        println!("cargo::rustc-link-arg-bin=authgate=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the final link is the target's default: rust-lld on x86_64 Linux
/// for the toolchain that wrote the order file (`bench/symbol-order.sh`
/// writes none for a toolchain that links otherwise), as long as no linker
/// or linker flavour is configured.
fn links_with_default_linker() -> bool {
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && env::var_os("RUSTC_LINKER").is_none()
        && !["linker", "link-self-contained", "fuse-ld"]
            .iter()
            .any(|flag| flags.contains(flag))
}

/// Whether the order file's `# toolchain:` line is this compiler's version
/// (`rustc -V` of the compiler Cargo runs).
fn written_for_this_toolchain(order: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(order) else {
        return false;
    };
    let Some(rustc) = env::var_os("RUSTC") else {
        return false;
    };
    let Ok(output) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .take(5)
        .any(|line| line.strip_prefix("# toolchain: ") == Some(version.trim()))
}
