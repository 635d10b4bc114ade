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
//! Packed relative relocations (`-z pack-relative-relocs`) would save
//! another half megabyte, but need glibc 2.36: RHEL 9 and Ubuntu 22.04
//! could not run the binary, so they are not used.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bin=authgate=-Wl,-z,max-page-size=65536");
    }
}
