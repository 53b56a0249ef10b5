//! initramfs archives: a [`Tree`] says what goes in, is laid out in a
//! staging directory, and GNU `cpio` packs it in the kernel's `newc` format,
//! uncompressed, every file owned by root.
//!
//! Linux unpacks concatenated archives in order, later entries over earlier
//! ones, so a large archive built once can be followed by a small one made
//! for each run.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// One entry of an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// A copy of this file (its permissions kept).
    Copy(PathBuf),
    /// A file with this content; `executable` sets mode 0755, else 0644.
    Text {
        content: String,
        executable: bool,
    },
    /// A symbolic link to this target.
    Symlink(String),
}

/// What an archive holds: paths relative to its root (no leading `/`).
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// Adds an entry at `path`; its parent directories come implicitly.
    pub fn add(&mut self, path: &str, entry: Entry) -> Result<()> {
        let path = path.trim_start_matches('/');
        if path.is_empty()
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("bad archive path {path:?}");
        }
        if self.entries.insert(path.to_owned(), entry).is_some() {
            bail!("{path} is in the archive twice");
        }
        Ok(())
    }

    /// The paths to archive, each directory before what it holds (the
    /// kernel creates no missing parents when it unpacks).
    pub fn list(&self) -> Vec<String> {
        let mut paths: BTreeMap<Vec<&str>, ()> = BTreeMap::new();
        for path in self.entries.keys() {
            let parts: Vec<&str> = path.split('/').collect();
            for end in 1..=parts.len() {
                paths.insert(parts[..end].to_vec(), ());
            }
        }
        // Sorting by components puts every directory right before its contents.
        paths.into_keys().map(|parts| parts.join("/")).collect()
    }

    /// Lays the tree out under `dir` (which must not exist yet).
    pub fn stage(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (path, entry) in &self.entries {
            let to = dir.join(path);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            let context = || format!("staging {}", to.display());
            match entry {
                Entry::Dir => fs::create_dir_all(&to).with_context(context)?,
                Entry::Copy(from) => {
                    fs::copy(from, &to).with_context(|| {
                        format!("copying {} to {}", from.display(), to.display())
                    })?;
                }
                Entry::Text {
                    content,
                    executable,
                } => {
                    fs::write(&to, content).with_context(context)?;
                    let mode = if *executable { 0o755 } else { 0o644 };
                    fs::set_permissions(&to, fs::Permissions::from_mode(mode))
                        .with_context(context)?;
                }
                Entry::Symlink(target) => symlink(target, &to).with_context(context)?,
            }
        }
        Ok(())
    }

    /// Stages the tree in `staging`, then writes the archive to `archive`.
    pub fn archive(&self, staging: &Path, archive: &Path) -> Result<()> {
        self.stage(staging)?;
        let list = staging.with_extension("list");
        let mut text = self.list().join("\n");
        text.push('\n');
        fs::write(&list, text)?;
        let mut cpio = Command::new("cpio");
        cpio.args([
            "--create",
            "--format=newc",
            "--owner=0:0",
            "--reproducible",
            "--quiet",
        ])
        .current_dir(staging);
        let list = list.canonicalize()?;
        cmd::run_redirected(&mut cpio, &list, archive).context(
            "packing the initramfs needs GNU cpio (Debian package cpio; ./run.sh install adds it)",
        )?;
        fs::remove_file(&list)?;
        Ok(())
    }
}

/// Writes `parts` one after the other into `to`.
pub fn concatenate(parts: &[&Path], to: &Path) -> Result<()> {
    let mut out = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    for part in parts {
        let mut input =
            fs::File::open(part).with_context(|| format!("opening {}", part.display()))?;
        std::io::copy(&mut input, &mut out).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_puts_directories_before_their_contents() {
        let mut tree = Tree::default();
        let text = |s: &str| Entry::Text {
            content: s.into(),
            executable: false,
        };
        tree.add("usr/bin/qemu", Entry::Copy("/q".into())).unwrap();
        tree.add("/init", text("#!")).unwrap();
        tree.add(
            "lib/ld-linux-aarch64.so.1",
            Entry::Symlink("aarch64-linux-gnu/ld".into()),
        )
        .unwrap();
        tree.add("lib/aarch64-linux-gnu/libc.so.6", Entry::Copy("/c".into()))
            .unwrap();
        tree.add("dev", Entry::Dir).unwrap();
        tree.add("lib-extra", text("")).unwrap();
        assert_eq!(
            tree.list(),
            [
                "dev",
                "init",
                "lib",
                "lib/aarch64-linux-gnu",
                "lib/aarch64-linux-gnu/libc.so.6",
                "lib/ld-linux-aarch64.so.1",
                "lib-extra",
                "usr",
                "usr/bin",
                "usr/bin/qemu",
            ]
        );
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused() {
        let mut tree = Tree::default();
        for bad in ["", "/", "a//b", "a/../b", "./a", "a/"] {
            assert!(tree.add(bad, Entry::Dir).is_err(), "{bad:?}");
        }
        tree.add("a", Entry::Dir).unwrap();
        assert!(tree.add("/a", Entry::Dir).is_err());
    }
}
