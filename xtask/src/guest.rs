//! The contract with the kernel, host side.
//!
//! * Boot arguments (`-append`): `app=NAME`, then any extra raw kernel
//!   arguments, then ` -- ARG...` when the app has arguments.
//! * The guest's last act is to print a line that is exactly
//!   `[[lodger:exit=N]]` (N decimal, 0..=255) and power off. xtask exits
//!   with N. Without the marker it exits [`EXIT_NO_STATUS`]; when the guest
//!   runs past its time, [`EXIT_TIMEOUT`] (both as timeout(1) does).

use anyhow::{bail, Result};

/// A command line refused before anything runs: xtask's flags (clap's own
/// errors exit 2 too), a host that cannot run the guest here, or, from the
/// kernel itself, bad boot arguments. One meaning wherever it comes from.
pub const EXIT_BAD_COMMAND_LINE: u8 = 2;
/// The guest ran out of time and was killed.
pub const EXIT_TIMEOUT: u8 = 124;
/// No status from the guest: it stopped without the marker, did not power
/// off after it, or xtask itself failed.
pub const EXIT_NO_STATUS: u8 = 125;
/// Interrupted (SIGINT, SIGTERM, SIGHUP): QEMU was killed. 128 + SIGINT, as
/// a shell reports it.
pub const EXIT_INTERRUPTED: i32 = 130;

const MARKER_PREFIX: &str = "[[lodger:exit=";
const MARKER_SUFFIX: &str = "]]";

/// The kernel command line for `app` with `extra` raw arguments and the
/// app's own `args`. Words are separated by single spaces, so none of them
/// may be empty or contain whitespace.
pub fn bootargs(app: &str, extra: &str, args: &[impl AsRef<str>]) -> Result<String> {
    check_word("app name", app)?;
    let mut line = format!("app={app}");
    let extra = extra.trim();
    if !extra.is_empty() {
        line.push(' ');
        line.push_str(extra);
    }
    if !args.is_empty() {
        line.push_str(" --");
        for arg in args {
            let arg = arg.as_ref();
            check_word("app argument", arg)?;
            line.push(' ');
            line.push_str(arg);
        }
    }
    Ok(line)
}

fn check_word(what: &str, word: &str) -> Result<()> {
    if word.is_empty() || word.contains(char::is_whitespace) {
        bail!("{what} {word:?} must be one non-empty word: the kernel splits its arguments at whitespace");
    }
    Ok(())
}

/// The status in an exit-marker line, or `None` if the line is not exactly
/// a marker. Trailing `\r`s are allowed: the serial console ends lines with
/// `\r\n`, and a tty on the way (L1's console under nested KVM) may add
/// another.
pub fn parse_exit_marker(line: &str) -> Option<u8> {
    let line = line.trim_end_matches('\r');
    let digits = line
        .strip_prefix(MARKER_PREFIX)?
        .strip_suffix(MARKER_SUFFIX)?;
    // `u8::from_str` also takes a leading `+`; the marker is plain decimal.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The guest's console output, collected chunk by chunk as it arrives, with
/// the exit marker picked out of each complete line.
#[derive(Default)]
pub struct Console {
    bytes: Vec<u8>,
    /// Where the next line starts: everything before it has been scanned.
    line_start: usize,
    /// The status of the last marker seen.
    status: Option<u8>,
}

impl Console {
    /// Adds output; returns true if it completed a marker line.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        self.bytes.extend_from_slice(chunk);
        let mut found = false;
        while let Some(len) = self.bytes[self.line_start..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let end = self.line_start + len;
            found |= self.scan(self.line_start, end);
            self.line_start = end + 1;
        }
        found
    }

    /// The end of the output: a last line without a newline still counts.
    pub fn finish(&mut self) {
        if self.line_start < self.bytes.len() {
            self.scan(self.line_start, self.bytes.len());
            self.line_start = self.bytes.len();
        }
    }

    fn scan(&mut self, start: usize, end: usize) -> bool {
        let status = std::str::from_utf8(&self.bytes[start..end])
            .ok()
            .and_then(parse_exit_marker);
        if status.is_some() {
            self.status = status;
        }
        status.is_some()
    }

    /// The status from the last exit marker, if the guest printed one.
    pub fn status(&self) -> Option<u8> {
        self.status
    }

    /// Everything the guest printed (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootargs_order() {
        let none: [&str; 0] = [];
        assert_eq!(bootargs("selftest", "", &none).unwrap(), "app=selftest");
        assert_eq!(
            bootargs("panic", "", &["cpu=1"]).unwrap(),
            "app=panic -- cpu=1"
        );
        assert_eq!(
            bootargs("x", " bogus=1 pv=off ", &["a", "b"]).unwrap(),
            "app=x bogus=1 pv=off -- a b"
        );
    }

    #[test]
    fn bootargs_rejects_words_the_kernel_would_split() {
        assert!(bootargs("", "", &["a"]).is_err());
        assert!(bootargs("two words", "", &["a"]).is_err());
        assert!(bootargs("x", "", &["a b"]).is_err());
        assert!(bootargs("x", "", &[""]).is_err());
    }

    #[test]
    fn marker() {
        assert_eq!(parse_exit_marker("[[lodger:exit=0]]"), Some(0));
        assert_eq!(parse_exit_marker("[[lodger:exit=255]]\r"), Some(255));
        assert_eq!(parse_exit_marker("[[lodger:exit=1]]\r\r"), Some(1));
        assert_eq!(parse_exit_marker("[[lodger:exit=007]]"), Some(7));
        for line in [
            "[[lodger:exit=256]]",
            "[[lodger:exit=-1]]",
            "[[lodger:exit=+1]]",
            "[[lodger:exit=]]",
            "[[lodger:exit=1]] ",
            " [[lodger:exit=1]]",
            "x [[lodger:exit=1]]",
            "[[lodger:exit=1]",
            "[[lodger:exit=0x1]]",
        ] {
            assert_eq!(parse_exit_marker(line), None, "{line:?}");
        }
    }

    #[test]
    fn console_finds_markers_across_chunks() {
        let mut console = Console::default();
        assert!(!console.push(b"boot\r\n[[lodger:ex"));
        assert_eq!(console.status(), None);
        assert!(console.push(b"it=3]]\r\n"));
        assert_eq!(console.status(), Some(3));
        assert!(console.push(b"[[lodger:exit=4]]\nmore\n"));
        assert_eq!(console.status(), Some(4));
        assert_eq!(
            console.text(),
            "boot\r\n[[lodger:exit=3]]\r\n[[lodger:exit=4]]\nmore\n"
        );
    }

    #[test]
    fn console_last_line_without_newline() {
        let mut console = Console::default();
        console.push(b"x\n[[lodger:exit=9]]");
        assert_eq!(console.status(), None);
        console.finish();
        assert_eq!(console.status(), Some(9));
    }

    #[test]
    fn marker_inside_a_line_is_not_a_marker() {
        let mut console = Console::default();
        console.push(b"echo [[lodger:exit=1]]\n");
        console.finish();
        assert_eq!(console.status(), None);
    }
}
