//! External commands: every one is printed (`$ program args`) before it runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
pub fn quote(words: &[String]) -> String {
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
/// In a live step ([`crate::progress`]) the command is the step's line's
/// message instead.
pub fn announce(cmd: &Command) {
    crate::progress::announce(&format!("$ {}", display(cmd)));
}

/// Prints and runs `cmd` with inherited stdio; fails unless it exits 0.
/// In a live step ([`crate::progress`]) its output becomes the step's
/// line instead of scrolling.
pub fn run(cmd: &mut Command) -> Result<()> {
    if let Some(result) = crate::progress::run_in_step(cmd) {
        return result;
    }
    announce(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Prints and runs `cmd`, and returns its standard output; fails unless it
/// exits 0 (its standard error is shown as it comes).
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = output_unchecked(cmd.stderr(Stdio::inherit()))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", display(cmd), out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// Prints and runs `cmd`, capturing its output, whatever its exit status.
pub fn output_unchecked(cmd: &mut Command) -> Result<Output> {
    announce(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", cmd.get_program().to_string_lossy()))
}

/// Prints (`$ cmd < input > output`) and runs `cmd` with its standard input
/// read from `input` and its standard output written to `output`; fails
/// unless it exits 0.
pub fn run_redirected(cmd: &mut Command, input: &Path, output: &Path) -> Result<()> {
    crate::progress::announce(&format!(
        "$ {} < {} > {}",
        display(cmd),
        quote(&[input.to_string_lossy().into_owned()]),
        quote(&[output.to_string_lossy().into_owned()])
    ));
    let stdin = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let stdout = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let status = cmd
        .stdin(stdin)
        .stdout(stdout)
        .status()
        .with_context(|| format!("cannot start `{}`", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// A directory that is removed, with everything in it, when this drops.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `path` afresh (removing what was there).
    pub fn new(path: PathBuf) -> Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory only takes space.
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
