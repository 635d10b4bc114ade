//! A size-limited tmpfs mounted on a fresh temporary directory, to give the
//! embedded session store a real full or read-only disk. Needs root (the
//! tests and CI run as root); unmounted in `Drop`, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::run_ok;

/// A mounted tmpfs; unmounted (lazily, if still busy) when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `8m`).
    pub fn mount(size: &str) -> Tmpfs {
        let dir = super::temp_dir("tmpfs");
        run_ok(
            "mount a tmpfs (the tests run as root)",
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(dir.path()),
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mount -o remount,<options>`: `ro`, `rw`, `size=16m`.
    pub fn remount(&self, options: &str) {
        run_ok(
            "remount the tmpfs",
            Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(self.dir.path()),
        );
    }

    /// Fills the free space with one file; returns it (delete it to give
    /// the space back).
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let block = vec![0x5a_u8; 64 * 1024];
        // Until the disk is full: then a write fails (or writes less).
        while let Ok(n) = file.write(&block) {
            if n == 0 {
                break;
            }
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Busy while a server still holds a file there: then lazily.
        let _ = Command::new("umount")
            .arg(self.dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        let mounted = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .contains(&self.dir.path().display().to_string());
        if mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}
