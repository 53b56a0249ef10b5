//! Progress of the long commands (bench, demo, the nested-KVM L1 build,
//! the LoongArch PV QEMU build), in one of two modes chosen once per
//! process ([`live`]):
//!
//! - **live**, when stderr is a terminal and `CI` is not set: each long
//!   step ([`Step`]) is one line redrawn in place: what, `[done/total]`
//!   where known, the time so far, an estimate of what is left, and what it
//!   is doing now (the command it runs, the last line that command printed:
//!   ninja's `[N/M]` and apt's `Get:N` become the counts). A step started
//!   inside another is a second line under it. Lines that must stay
//!   (failures, warnings) print above the live lines ([`say`]).
//! - **plain** otherwise (CI, a pipe, a file, `TERM=dumb`): lines only, as
//!   the commands printed before this module: a line per boot or phase,
//!   `$ command` before each command, and for a command whose output goes
//!   to a log (ninja) a count line at most every 10% or 30 s
//!   ([`Throttle`]). No `\r`, no escape codes.
//!
//! Summary lines (a suite's `wrote ...`, the test runner's) are printed by
//! their commands after the step ends, the same in both modes.
//!
//! The live lines are drawn by `indicatif`; the decisions and every plain
//! line are pure functions in [`lines`], tested there.

mod lines;

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

pub use lines::{
    apt_fetch, count_line, decide, linear_left, ninja_count, phase_line, status, Throttle,
};

use crate::cmd;

/// This process's mode: [`decide`] on its stderr and environment.
pub fn live() -> bool {
    static LIVE: LazyLock<bool> = LazyLock::new(|| {
        let var = |name| std::env::var(name).ok();
        decide(
            std::io::stderr().is_terminal(),
            var("CI").as_deref(),
            var("TERM").as_deref(),
        )
    });
    *LIVE
}

/// The live lines, one per live step, innermost last.
static MULTI: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
/// The live steps' lines, innermost last.
static STACK: Mutex<Vec<Live>> = Mutex::new(Vec::new());

fn stack() -> MutexGuard<'static, Vec<Live>> {
    STACK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A live step's line: `{spinner} {prefix} {status} · {note} · {now}`.
#[derive(Clone)]
struct Live {
    bar: ProgressBar,
    /// The caller's estimate of what is left and when it was made: it
    /// counts down between updates.
    left: Arc<Mutex<Option<(Duration, Instant)>>>,
    /// When the counting began (the last message): without the caller's
    /// estimate, what is left is the rate since then ([`linear_left`]).
    since: Arc<Mutex<Instant>>,
    /// What the caller says the step is at (a cell, a phase), and what
    /// runs now (the last command or the last line it printed).
    texts: Arc<Mutex<(String, String)>>,
}

impl Live {
    fn new(what: &str) -> Live {
        let left: Arc<Mutex<Option<(Duration, Instant)>>> = Arc::default();
        let since = Arc::new(Mutex::new(Instant::now()));
        let (estimate, counted) = (Arc::clone(&left), Arc::clone(&since));
        let style = ProgressStyle::with_template("{spinner} {prefix} {status} {wide_msg}")
            .expect("a valid template")
            .with_key(
                "status",
                move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let left = lock(&estimate)
                        .map(|(left, at)| left.saturating_sub(at.elapsed()))
                        .or_else(|| {
                            linear_left(state.pos(), state.len()?, lock(&counted).elapsed())
                        });
                    let _ = w.write_str(&status(state.pos(), state.len(), state.elapsed(), left));
                },
            );
        let bar = MULTI.add(
            ProgressBar::no_length()
                .with_style(style)
                .with_prefix(what.to_owned()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Live {
            bar,
            left,
            since,
            texts: Arc::default(),
        }
    }

    fn set(&self, note: Option<&str>, now: Option<&str>) {
        let mut texts = lock(&self.texts);
        if let Some(note) = note {
            note.clone_into(&mut texts.0);
        }
        if let Some(now) = now {
            // A command's `\r` or escape codes would break the line.
            texts.1 = now.replace(char::is_control, " ");
        }
        let shown: Vec<&str> = [&texts.0, &texts.1]
            .into_iter()
            .map(String::as_str)
            .filter(|t| !t.is_empty())
            .collect();
        self.bar.set_message(
            shown
                .iter()
                .map(|t| format!("· {t}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
}

/// The innermost live step's line, if one is drawn.
fn innermost() -> Option<Live> {
    stack().last().cloned()
}

/// Prints a line that stays: above the live lines if any are drawn.
pub fn say(line: &str) {
    if innermost().is_some() {
        let _ = MULTI.println(line);
    } else {
        eprintln!("{line}");
    }
}

/// A command about to run (`$ program args`): its own line, or in a live
/// step what the step runs now.
pub fn announce(line: &str) {
    match innermost() {
        Some(live) => live.set(None, Some(line)),
        None => eprintln!("{line}"),
    }
}

/// One long step: a live line while it lasts (in live mode), or the
/// lines its caller prints (plain). The live line goes when it drops.
pub struct Step {
    what: String,
    start: Instant,
    live: Option<Live>,
    /// Whether the live line is this step's own (removed when it drops),
    /// or the enclosing step's, lent to [`run_in_step`].
    owned: bool,
    throttle: Throttle,
}

impl Step {
    /// A step called `what` (the start of its lines, `bench`,
    /// `xtask: LoongArch PV QEMU`), live if the process is [`live`].
    pub fn new(what: &str) -> Step {
        Step::with_mode(what, live())
    }

    /// As [`Step::new`], live only if `live` (plain while a command
    /// streams the guest's console, `--verbose`).
    pub fn with_mode(what: &str, live: bool) -> Step {
        let live = live.then(|| {
            let live = Live::new(what);
            stack().push(live.clone());
            live
        });
        Step {
            what: what.to_owned(),
            start: Instant::now(),
            live,
            owned: true,
            throttle: Throttle::new(),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Live: `done` of `total` (if known), and the caller's estimate of
    /// what is left (else one from the rate since the last message).
    /// Plain: nothing.
    pub fn count(&self, done: u64, total: Option<u64>, left: Option<Duration>) {
        if let Some(live) = &self.live {
            match total {
                Some(total) => live.bar.set_length(total),
                None => live.bar.unset_length(),
            }
            live.bar.set_position(done);
            *lock(&live.left) = left.map(|left| (left, Instant::now()));
        }
    }

    /// Live: what the step is at (a cell and its round, a phase); what it
    /// runs follows, and counts from here on estimate what is left from
    /// their rate since. Plain: nothing.
    pub fn message(&self, text: &str) {
        if let Some(live) = &self.live {
            live.set(Some(text), Some(""));
            *lock(&live.since) = Instant::now();
        }
    }

    /// Live: what it runs now (a command, its last line). Plain: nothing.
    fn now(&self, text: &str) {
        if let Some(live) = &self.live {
            live.set(None, Some(text));
        }
    }

    /// Plain: `line` as it is. Live: nothing (the live line says it).
    pub fn plain(&self, line: &str) {
        if self.live.is_none() {
            eprintln!("{line}");
        }
    }

    /// A new phase: plain, its line ([`phase_line`]); live, the line's
    /// message, the counts cleared.
    pub fn phase(&mut self, phase: &str) {
        self.plain(&phase_line(&self.what, phase, self.start.elapsed()));
        self.count(0, None, None);
        self.message(phase);
        self.throttle = Throttle::new();
    }

    /// The step's last phase, a line that stays in both modes.
    pub fn done(&self, phase: &str) {
        say(&phase_line(&self.what, phase, self.start.elapsed()));
    }

    /// Runs `cmd`, reading what it prints line by line; `counts` turns a
    /// line into `(done, total)`. With a `log`, the output goes there
    /// (`$ cmd > log`), and plain mode prints the counts ([`count_line`],
    /// [`Throttle`]) and the stderr lines; without, plain mode prints
    /// every line as it comes. Live, the last line and the counts are the
    /// step's, and the last [`TAIL`] lines are printed if it fails. Fails
    /// unless `cmd` exits 0.
    pub fn run(
        &mut self,
        cmd: &mut Command,
        log: Option<&Path>,
        mut counts: impl FnMut(&str) -> Option<(u64, Option<u64>)>,
    ) -> Result<()> {
        let shown = match log {
            Some(log) => format!(
                "$ {} > {}",
                cmd::display(cmd),
                cmd::quote(&[log.to_string_lossy().into_owned()])
            ),
            None => format!("$ {}", cmd::display(cmd)),
        };
        if self.is_live() {
            self.now(&shown);
        } else {
            say(&shown);
        }
        let mut log = match log {
            Some(path) => {
                Some(File::create(path).with_context(|| format!("creating {}", path.display()))?)
            }
            None => None,
        };
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{program}`"))?;
        // Both streams, line by line, in the order they come.
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let readers = [
            lines(stdout, Stream::Out, tx.clone()),
            lines(stderr, Stream::Err, tx),
        ];
        let mut tail: Vec<String> = Vec::new();
        for (stream, line) in rx {
            if let Some(file) = &mut log {
                writeln!(file, "{line}").context("writing the log")?;
            }
            if let Some((done, total)) = counts(&line) {
                self.count(done, total, None);
                if let (Some(total), Some(_), false) = (total, &log, self.is_live()) {
                    if self.throttle.due(done, total, Instant::now()) {
                        let line = count_line(&self.what, done, total, self.start.elapsed());
                        eprintln!("{line}");
                    }
                }
            }
            if self.is_live() {
                self.now(&line);
                tail.push(line);
                if tail.len() > TAIL {
                    tail.remove(0);
                }
            } else if log.is_none() || stream == Stream::Err {
                eprintln!("{line}");
            }
        }
        for reader in readers {
            let _ = reader.join();
        }
        let status = child
            .wait()
            .with_context(|| format!("waiting for `{program}`"))?;
        if !status.success() {
            for line in &tail {
                say(line);
            }
            bail!("`{}` failed ({status})", cmd::display(cmd));
        }
        Ok(())
    }
}

/// The lines of a failed command printed in live mode.
const TAIL: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// Sends each line read from `from` to `to` until EOF (invalid UTF-8
/// replaced).
fn lines(
    from: impl Read + Send + 'static,
    stream: Stream,
    to: mpsc::Sender<(Stream, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = BufReader::new(from);
        let mut buf = Vec::new();
        while from.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']).to_owned();
            if to.send((stream, line)).is_err() {
                break;
            }
            buf.clear();
        }
    })
}

impl Drop for Step {
    fn drop(&mut self) {
        if let (Some(live), true) = (self.live.take(), self.owned) {
            stack().retain(|l| !Arc::ptr_eq(&l.left, &live.left));
            live.bar.finish_and_clear();
            MULTI.remove(&live.bar);
        }
    }
}

/// [`cmd::run`] inside a live step: the command's output becomes the
/// innermost step's line instead of scrolling (its last lines are
/// printed if it fails). `None` outside a live step.
pub fn run_in_step(cmd: &mut Command) -> Option<Result<()>> {
    let mut step = Step {
        what: String::new(),
        start: Instant::now(),
        live: Some(innermost()?),
        owned: false,
        throttle: Throttle::new(),
    };
    Some(step.run(cmd, None, |_| None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_logs_both_streams_counts_its_lines_and_fails_on_a_failure() {
        let dir = cmd::ScratchDir::new(cmd::target_dir().join("progress-test")).unwrap();
        let log = dir.path().join("ninja.log");
        let mut step = Step::with_mode("t", false);
        let mut seen = Vec::new();
        let script = "echo '[1/2] a'; echo oops >&2; echo '[2/2] b'";
        step.run(
            Command::new("sh").args(["-c", script]),
            Some(&log),
            |line| {
                seen.push(line.to_owned());
                ninja_count(line).map(|(d, t)| (d, Some(t)))
            },
        )
        .unwrap();
        let mut logged: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        // The two streams interleave in no fixed order.
        seen.sort();
        logged.sort();
        assert_eq!(seen, ["[1/2] a", "[2/2] b", "oops"]);
        assert_eq!(logged, seen);
        let err = step
            .run(Command::new("sh").args(["-c", "exit 3"]), None, |_| None)
            .unwrap_err();
        assert_eq!(err.to_string(), "`sh -c 'exit 3'` failed (exit status: 3)");
    }
}
