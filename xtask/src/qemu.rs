//! Booting the guest under QEMU: the command line, then a runner that streams
//! the console, watches for the exit marker, enforces a timeout and never
//! leaves a QEMU behind.
//!
//! QEMU is killed when its [`Qemu`] handle drops. The workspace builds with
//! `panic = "abort"`, so `Drop` does not run on a panic, and a signal would
//! end xtask without unwinding either: a registry of live QEMU process ids
//! lets the panic hook and the signal handler ([`kill_on_exit`]) kill them.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::arch::Arch;
use crate::cmd::{self, ScratchDir};
use crate::guest::{self, Console};
use crate::host::{Host, Preparations};
use crate::interference;
use crate::kvm;
use crate::nested_kvm;
use crate::pvhost;
use crate::qemu_pv;

/// Guest memory by default, enough for the kernel's heap and per-CPU
/// stacks. The same on every host, so that only the host differs between
/// runs; under TCG `--mem` chooses another size.
pub const GUEST_MEMORY: MemSize = MemSize::mib(256);

/// Guest RAM for QEMU's `-m`, a whole number of MiB from
/// [`MemSize::MIN_MIB`] to [`MemSize::MAX_MIB`]; written `768M` or `1G`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemSize {
    mib: u32,
}

impl MemSize {
    /// The smallest size the boot tests cover (QEMU `virt` boots smaller).
    pub const MIN_MIB: u32 = 128;
    /// The largest size the boot tests cover.
    pub const MAX_MIB: u32 = 4096;
    /// The form and range, for error messages and `--help`.
    pub const FORM: &str =
        "a whole number of MiB or GiB: NM or NG, from 128M to 4G (e.g. 128M, 768M, 1G, 4G)";

    /// `mib` MiB; checked at compile time where used in a constant.
    pub const fn mib(mib: u32) -> Self {
        assert!(mib >= Self::MIN_MIB && mib <= Self::MAX_MIB);
        Self { mib }
    }

    /// The size in MiB.
    pub const fn mib_count(self) -> u32 {
        self.mib
    }
}

impl FromStr for MemSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad memory size `{s}`: expected {}", Self::FORM);
        let (digits, unit) = s.split_at(s.len().saturating_sub(1));
        let per_unit = match unit {
            "M" | "m" => 1,
            "G" | "g" => 1024,
            _ => return Err(bad()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let mib = digits
            .parse::<u32>()
            .ok()
            .and_then(|n| n.checked_mul(per_unit))
            .filter(|mib| (Self::MIN_MIB..=Self::MAX_MIB).contains(mib))
            .ok_or_else(bad)?;
        Ok(Self { mib })
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib.is_multiple_of(1024) {
            write!(f, "{}G", self.mib / 1024)
        } else {
            write!(f, "{}M", self.mib)
        }
    }
}

/// Only TCG boots take another memory size.
pub fn check_mem(host: Host, mem: MemSize) -> Result<()> {
    if mem != GUEST_MEMORY && !matches!(host, Host::Tcg) {
        bail!("--mem is for --host tcg only: pvhost, nested-kvm and kvm give the guest {GUEST_MEMORY}");
    }
    Ok(())
}

/// One boot of the guest: everything that goes on QEMU's command line.
/// The most vCPUs a guest gets: as many as the kernel brings up.
pub const MAX_SMP: u16 = arch::MAX_CPUS as u16;
const _: () = assert!(arch::MAX_CPUS <= u16::MAX as usize);

#[derive(Debug)]
pub struct Boot {
    pub arch: Arch,
    pub host: Host,
    pub smp: u16,
    /// Guest RAM (TCG only: pvhost, nested-kvm and kvm give the guest
    /// [`GUEST_MEMORY`]).
    pub mem: MemSize,
    /// Enter the guest at EL2 (aarch64's `virtualization=on`).
    pub el2: bool,
    pub image: PathBuf,
    /// The kernel command line, from [`guest::bootargs`].
    pub bootargs: String,
}

impl Boot {
    /// The QEMU to start, preparing what the host needs first (`prep`
    /// keeps it for later boots).
    pub fn command(&self, prep: &mut Preparations) -> Result<Launch> {
        self.host.check(self.arch, self.el2)?;
        check_mem(self.host, self.mem)?;
        if !self.image.is_file() {
            bail!("guest image {} does not exist", self.image.display());
        }
        match self.host {
            Host::Tcg => Ok(Launch {
                command: self.tcg()?,
                scratch: None,
                grace: self.host.power_off_grace(),
            }),
            Host::NestedKvm(settings) => nested_kvm::launch(self, settings, prep.l1()?),
            Host::Kvm(settings) => Ok(Launch {
                command: kvm::command(self, settings)?,
                scratch: None,
                grace: self.host.power_off_grace(),
            }),
            Host::Pvhost(settings) => Ok(Launch {
                command: match self.arch {
                    Arch::Aarch64 => pvhost::command(self, settings, prep.pvhost()?)?,
                    Arch::Loongarch64 => qemu_pv::command(self, settings, prep.qemu_pv()?)?,
                },
                scratch: None,
                grace: self.host.power_off_grace(),
            }),
        }
    }

    fn tcg(&self) -> Result<Command> {
        self.tcg_with(self.arch.qemu().as_ref(), &[])
    }

    /// The TCG command with another QEMU binary and `extra` arguments after
    /// the board's (the LoongArch PV QEMU, [`qemu_pv`]).
    pub fn tcg_with(&self, program: &std::ffi::OsStr, extra: &[String]) -> Result<Command> {
        let mut cmd = Command::new(program);
        cmd.args(self.arch.machine_args(self.el2)?).args(extra);
        // TCG is QEMU's default accelerator on a host of another architecture.
        cmd.arg("-smp")
            .arg(self.smp.to_string())
            .arg("-m")
            .arg(self.mem.to_string())
            .args(["-nodefaults", "-display", "none"])
            .args(["-serial", "stdio", "-monitor", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.image)
            .arg("-append")
            .arg(&self.bootargs);
        Ok(cmd)
    }
}

/// A QEMU ready to start, and the files it uses while it runs.
#[derive(Debug)]
pub struct Launch {
    pub command: Command,
    /// Removed after the run.
    pub scratch: Option<ScratchDir>,
    /// How long QEMU may take to exit after the guest's exit marker.
    pub grace: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest printed its exit marker and QEMU exited.
    Exited(u8),
    /// QEMU exited without an exit marker from the guest.
    NoMarker(ExitStatus),
    /// The guest printed its exit marker but QEMU was still running
    /// [`Host::power_off_grace`] later; QEMU was killed.
    NoPowerOff(u8, Duration),
    /// The guest ran out of time; QEMU was killed.
    TimedOut(Duration),
}

impl Outcome {
    /// xtask's exit code for this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Exited(status) => status,
            Outcome::NoMarker(_) | Outcome::NoPowerOff(..) => guest::EXIT_NO_STATUS,
            Outcome::TimedOut(_) => guest::EXIT_TIMEOUT,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(status) => write!(f, "guest exited with status {status}"),
            Outcome::NoMarker(qemu) => {
                write!(f, "guest stopped without an exit marker (QEMU {qemu})")
            }
            Outcome::NoPowerOff(status, grace) => write!(
                f,
                "guest printed exit status {status} but did not power off within {} s; killed QEMU",
                grace.as_secs()
            ),
            Outcome::TimedOut(after) => {
                write!(f, "timed out after {} s; killed QEMU", after.as_secs())
            }
        }
    }
}

/// How often [`run`] samples QEMU's threads' run-queue wait.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What a run produced.
pub struct Run {
    pub outcome: Outcome,
    /// The guest's console (QEMU's stdout).
    pub console: String,
    /// QEMU's own messages.
    pub stderr: String,
    pub elapsed: Duration,
    /// QEMU's threads' CPU time and run-queue wait, as last sampled
    /// (every 50 ms while it ran); `None` if it could not be read.
    pub interference: Option<interference::Sample>,
}

/// Prints and starts `cmd`, then collects its output until QEMU exits or
/// `timeout` passes. With `echo`, the console goes to stdout and QEMU's
/// messages to stderr as they arrive.
pub fn run(launch: Launch, timeout: Duration, echo: bool) -> Result<Run> {
    let Launch {
        command: mut cmd,
        scratch,
        grace,
    } = launch;
    // No stdin: QEMU then leaves the terminal's mode alone, and the guest
    // takes no input anyway.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd::announce(&cmd);
    let start = Instant::now();
    let deadline = start + timeout;
    let mut qemu = Qemu::spawn(&mut cmd)?;

    let (tx, rx) = mpsc::channel();
    let (stdout, stderr) = qemu.take_pipes();
    forward(stdout, Stream::Console, tx.clone());
    forward(stderr, Stream::Qemu, tx);

    let mut console = Console::default();
    let mut messages = Vec::new();
    let mut power_off_by: Option<Instant> = None;
    // When QEMU must have exited: the deadline, or sooner after a marker.
    let until = |power_off_by: Option<Instant>| power_off_by.map_or(deadline, |t| t.min(deadline));
    let mut out_of_time = false;
    let pid = qemu.child.id();
    let mut interference = None;
    let mut sampled = Instant::now();
    loop {
        if sampled.elapsed() >= SAMPLE_EVERY {
            interference = interference::sample(pid).or(interference);
            sampled = Instant::now();
        }
        let wait = until(power_off_by).saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait.min(SAMPLE_EVERY)) {
            Ok((Stream::Console, chunk)) => {
                if echo {
                    let mut out = io::stdout().lock();
                    // A closed stdout must not stop the run: ignore errors.
                    let _ = out.write_all(&chunk).and_then(|()| out.flush());
                }
                if console.push(&chunk) && power_off_by.is_none() {
                    power_off_by = Some(Instant::now() + grace);
                }
            }
            Ok((Stream::Qemu, chunk)) => {
                if echo {
                    let _ = io::stderr().write_all(&chunk);
                }
                messages.extend_from_slice(&chunk);
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() < until(power_off_by) => {}
            Err(RecvTimeoutError::Timeout) => {
                out_of_time = true;
                break;
            }
            // Both pipes closed: QEMU has exited (or is about to).
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    console.finish();

    let status = if out_of_time {
        None
    } else {
        qemu.wait_until(until(power_off_by))?
    };
    let outcome = match (status, console.status()) {
        (Some(exit), Some(code)) => {
            if !exit.success() {
                crate::progress::say(&format!(
                    "xtask: warning: QEMU {exit} after the guest's exit marker"
                ));
            }
            Outcome::Exited(code)
        }
        (Some(exit), None) => Outcome::NoMarker(exit),
        (None, Some(code)) => Outcome::NoPowerOff(code, grace),
        (None, None) => Outcome::TimedOut(timeout),
    };
    // Kills QEMU if it is still running; otherwise a no-op.
    drop(qemu);
    drop(scratch);
    Ok(Run {
        outcome,
        console: console.text(),
        stderr: String::from_utf8_lossy(&messages).into_owned(),
        elapsed: start.elapsed(),
        interference,
    })
}

#[derive(Clone, Copy)]
enum Stream {
    Console,
    Qemu,
}

/// Sends everything read from `from` to `to`, chunk by chunk, until EOF.
fn forward(
    mut from: impl Read + Send + 'static,
    stream: Stream,
    to: mpsc::Sender<(Stream, Vec<u8>)>,
) {
    thread::spawn(move || {
        let mut buf = [0; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to.send((stream, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
}

/// Process ids of the QEMUs that are running. A pid is listed from spawn
/// until its process has been reaped, and both happen under this lock, so a
/// listed pid always belongs to our (possibly exited, never reused) child.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<u32>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills every running QEMU.
fn kill_all(live: &[u32]) {
    for &pid in live {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Installs a panic hook and a SIGINT/SIGTERM/SIGHUP handler that kill any
/// running QEMU before xtask goes away.
pub fn kill_on_exit() -> Result<()> {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // try_lock: the panicking thread may hold the lock itself.
        match LIVE.try_lock() {
            Ok(live) => kill_all(&live),
            Err(TryLockError::Poisoned(e)) => kill_all(&e.into_inner()),
            Err(TryLockError::WouldBlock) => {}
        }
        default_hook(info);
    }));
    ctrlc::set_handler(|| {
        let live = live();
        if !live.is_empty() {
            kill_all(&live);
            crate::progress::say("\nxtask: interrupted; killed QEMU");
        }
        std::process::exit(guest::EXIT_INTERRUPTED);
    })
    .context("cannot install the signal handler")
}

/// A running QEMU, killed when dropped.
struct Qemu {
    child: Child,
}

impl Qemu {
    fn spawn(cmd: &mut Command) -> Result<Self> {
        let mut live = live();
        let child = cmd.spawn().map_err(|e| {
            let program = cmd.get_program().to_string_lossy().into_owned();
            if e.kind() == io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "{program} not found: ./run.sh installs QEMU >= 10, or install it yourself"
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot start {program}"))
            }
        })?;
        live.push(child.id());
        Ok(Qemu { child })
    }

    fn take_pipes(&mut self) -> (ChildStdout, ChildStderr) {
        let stdout = self.child.stdout.take().expect("spawned with piped stdout");
        let stderr = self.child.stderr.take().expect("spawned with piped stderr");
        (stdout, stderr)
    }

    /// Waits for QEMU to exit on its own until `deadline`; `None` if it is
    /// still running then.
    fn wait_until(&mut self, deadline: Instant) -> Result<Option<ExitStatus>> {
        loop {
            {
                let mut live = live();
                if let Some(status) = self.child.try_wait().context("waiting for QEMU")? {
                    live.retain(|&pid| pid != self.child.id());
                    return Ok(Some(status));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills QEMU (if still running) and reaps it.
    fn kill(&mut self) {
        let mut live = live();
        // Errors: it has already exited, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
        live.retain(|&pid| pid != self.child.id());
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        for (text, mib, shown) in [
            ("128M", 128, "128M"),
            ("768M", 768, "768M"),
            ("1G", 1024, "1G"),
            ("1024M", 1024, "1G"),
            ("1536m", 1536, "1536M"),
            ("4G", 4096, "4G"),
            ("4g", 4096, "4G"),
        ] {
            let size: MemSize = text.parse().unwrap();
            assert_eq!(size, MemSize::mib(mib), "{text}");
            assert_eq!(size.to_string(), shown);
        }
        for bad in [
            "",
            "M",
            "256",
            "1.5G",
            "-1G",
            "127M",
            "5G",
            "8192M",
            "1T",
            "256 M",
            "+1G",
            "99999999999G",
        ] {
            let err = bad.parse::<MemSize>().unwrap_err();
            assert!(err.contains("from 128M to 4G"), "{bad}: {err}");
        }
        assert_eq!(GUEST_MEMORY.to_string(), "256M");
    }

    #[test]
    fn only_tcg_takes_another_size() {
        assert!(check_mem(Host::Tcg, MemSize::mib(4096)).is_ok());
        let kvm = Host::NestedKvm(crate::nested_kvm::Settings::DEFAULT);
        assert!(check_mem(kvm, GUEST_MEMORY).is_ok());
        assert!(check_mem(kvm, MemSize::mib(1024)).is_err());
    }

    #[test]
    fn tcg_command_passes_the_size() {
        let boot = Boot {
            arch: Arch::Loongarch64,
            host: Host::Tcg,
            smp: 2,
            mem: MemSize::mib(768),
            el2: false,
            image: PathBuf::from("/t/lodger"),
            bootargs: "app=selftest".into(),
        };
        let cmd = boot.tcg().unwrap();
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let m = args.iter().position(|a| a == "-m").unwrap();
        assert_eq!(args[m + 1], "768M");
    }
}
