//! External commands: every one is printed (`$ program args`) before it runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root: commands run from here.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ lives inside the workspace root")
}

/// Where cargo puts its output: `$CARGO_TARGET_DIR` or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        // A relative path is relative to where cargo runs: the workspace root.
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `cargo` through rustup's proxy, started in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root());
    cmd
}

/// The command as a shell would take it: program and arguments, quoted where needed.
pub fn display(cmd: &Command) -> String {
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| word.to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    quote(&words)
}

/// Joins words into one line a POSIX shell would split back into them.
/// (The `shlex` crate quotes commas too, which makes every `-M virt,...`
/// harder to read; this is all the quoting needed.)
fn quote(words: &[String]) -> String {
    let is_plain = |c: char| c.is_ascii_alphanumeric() || "_-+=:,./@%".contains(c);
    words
        .iter()
        .map(|word| {
            if !word.is_empty() && word.chars().all(is_plain) {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints `$ command` on stderr (stdout stays for results, such as an image path).
pub fn announce(cmd: &Command) {
    eprintln!("$ {}", display(cmd));
}

/// Prints and runs `cmd` with inherited stdio; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    announce(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args(["-M", "virt,gic-version=3", "-append", "app=x -- a b", ""]);
        assert_eq!(
            display(&cmd),
            "qemu-system-aarch64 -M virt,gic-version=3 -append 'app=x -- a b' ''"
        );
    }

    #[test]
    fn quote_round_trips_through_a_shell() {
        let words = [
            "it's".to_string(),
            "$HOME".into(),
            "a\\b".into(),
            "x y".into(),
        ];
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", quote(&words)))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "it's\n$HOME\na\\b\nx y\n"
        );
    }
}
