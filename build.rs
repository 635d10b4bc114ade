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
//! Relative relocations are packed (DT_RELR, glibc 2.36 and later): the
//! dynamic loader reads a few kilobytes at startup instead of half a
//! megabyte of `.rela.dyn`, which stayed in memory for the process's life.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bin=authgate=-Wl,-z,max-page-size=65536");
        println!("cargo::rustc-link-arg-bin=authgate=-Wl,-z,pack-relative-relocs");
    }
}
