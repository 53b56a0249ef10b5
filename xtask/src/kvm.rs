//! `--host kvm`: the guest under QEMU+KVM on the machine xtask runs on, an
//! aarch64 or loongarch64 Linux with a usable `/dev/kvm`; and
//! [`command_line`], the one builder of a QEMU+KVM command line, which
//! `--host nested-kvm` also uses for the QEMU inside L1 (it reaches L1's
//! `/init` in `/lodger/params`), so the real-KVM path the `kvm-*` boot
//! tests take is the one a user runs.
//!
//! `--pv on|off` is what that QEMU offers:
//!
//! | guest | QEMU | `--pv on` | `--pv off` |
//! |---|---|---|---|
//! | aarch64 | >= 5.2 | `-cpu host,kvm-steal-time=on` | `kvm-steal-time=off` |
//! | loongarch64 | >= 10.0 | `-cpu la464,kvm-pv-ipi=on,kvm-steal-time=on` | both `off` |
//!
//! QEMU 10.0's LoongArch has no `host` CPU model (under KVM it models the
//! la464, its default); `kvm-pv-ipi` and `kvm-steal-time` are properties of
//! every LoongArch CPU under KVM from 10.0 on (`target/loongarch/kvm/kvm.c`),
//! and `on` makes QEMU fail when the host's KVM lacks the feature. QEMU 10.0
//! offers no switch for KVM's PREEMPT feature: it writes the guest's feature
//! word itself (IPI, STEAL_TIME, VIRT_EXTIOI), so PREEMPT is never offered.
//!
//! The checks take the machine's facts as a [`Machine`] ([`Machine::probe`]
//! reads them), so that each failure and its message are unit-tested on any
//! machine. A failure is one line naming the fix; `cargo xtask run` exits 2
//! with it before building anything.

use std::fmt;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::process::Command;

use anyhow::{bail, Result};

use crate::arch::Arch;
use crate::cmd;
use crate::host::Pv;
use crate::qemu::Boot;

/// The settings of a KVM host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The PV features QEMU offers the guest (see the module's table).
    pub pv: Pv,
}

impl Settings {
    pub const DEFAULT: Settings = Settings { pv: Pv::On };
}

/// A QEMU release, `major.minor.micro`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion(pub u32, pub u32, pub u32);

impl QemuVersion {
    /// The first of `10.0.2`, `7.2`, `10.1.0-rc1` in `text` (leading digits
    /// and dots; a missing micro is 0).
    fn parse_numbers(text: &str) -> Option<QemuVersion> {
        let end = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let mut parts = text[..end].split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let micro = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(QemuVersion(major, minor, micro))
    }

    /// From `qemu-system-* --version`: `QEMU emulator version 10.0.2
    /// (Debian 1:10.0.2+ds-1~bpo12+1)`.
    pub fn from_version_output(output: &str) -> Option<QemuVersion> {
        let (_, rest) = output.split_once("version ")?;
        Self::parse_numbers(rest)
    }

    /// From a Debian package version: `1:7.2+dfsg-7+deb12u7` is 7.2.0.
    pub fn from_debian(version: &str) -> Option<QemuVersion> {
        let upstream = version.split_once(':').map_or(version, |(_, v)| v);
        Self::parse_numbers(upstream)
    }
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The oldest QEMU that has the guest's PV switches under KVM, and what
/// needs it.
pub fn minimum_qemu(arch: Arch) -> (QemuVersion, &'static str) {
    match arch {
        Arch::Aarch64 => (QemuVersion(5, 2, 0), "-cpu host,kvm-steal-time=on|off"),
        Arch::Loongarch64 => (
            QemuVersion(10, 0, 0),
            "the KVM CPU properties kvm-pv-ipi and kvm-steal-time",
        ),
    }
}

/// Whether `/dev/kvm` can be opened for reading and writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DevKvm {
    Usable,
    Missing,
    NoPermission,
    /// Another error, as the system put it.
    Unusable(String),
}

/// What `qemu-system-* --version` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QemuFound {
    Version(QemuVersion),
    NotFound,
    /// It ran but its version could not be read: the first line, or why.
    Unreadable(String),
}

/// The facts about this machine the checks look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `std::env::consts::OS`: `linux`, ...
    pub os: String,
    /// `std::env::consts::ARCH`: `aarch64`, `loongarch64`, `x86_64`, ...
    pub arch: String,
    pub dev_kvm: DevKvm,
    /// The guest architecture's QEMU ([`Arch::qemu`]).
    pub qemu: QemuFound,
}

const DEV_KVM: &str = "/dev/kvm";

impl Machine {
    /// The facts of the machine xtask runs on, for a guest of `guest`'s
    /// architecture (whose QEMU is asked its version).
    pub fn probe(guest: Arch) -> Machine {
        let dev_kvm = match OpenOptions::new().read(true).write(true).open(DEV_KVM) {
            Ok(_) => DevKvm::Usable,
            Err(e) if e.kind() == ErrorKind::NotFound => DevKvm::Missing,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => DevKvm::NoPermission,
            Err(e) => DevKvm::Unusable(e.to_string()),
        };
        Machine {
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            dev_kvm,
            qemu: probe_qemu(guest.qemu()),
        }
    }
}

fn probe_qemu(program: &str) -> QemuFound {
    match cmd::output_unchecked(Command::new(program).arg("--version")) {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == ErrorKind::NotFound) =>
        {
            QemuFound::NotFound
        }
        Err(e) => QemuFound::Unreadable(format!("{e:#}")),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            match QemuVersion::from_version_output(&text) {
                Some(version) if out.status.success() => QemuFound::Version(version),
                _ => QemuFound::Unreadable(format!(
                    "`{program} --version` ({}) printed {:?}",
                    out.status,
                    text.lines().next().unwrap_or("")
                )),
            }
        }
    }
}

/// The Debian package with `arch`'s QEMU.
fn qemu_package(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "qemu-system-arm",
        Arch::Loongarch64 => "qemu-system-misc",
    }
}

/// Fails, with one line naming the fix, unless `machine` can run a guest of
/// `guest`'s architecture under `--host kvm`.
pub fn check(machine: &Machine, guest: Arch) -> Result<()> {
    if machine.os != "linux" {
        bail!(
            "--host kvm needs Linux's KVM, and this is {}: use --host tcg or pvhost here",
            machine.os
        );
    }
    let native = [Arch::Aarch64, Arch::Loongarch64]
        .into_iter()
        .find(|a| a.name() == machine.arch);
    let Some(native) = native else {
        bail!(
            "--host kvm boots the guest on this machine's KVM, and this machine is {} \
             (lodger's guests are aarch64 and loongarch64): run it on an aarch64 or \
             loongarch64 Linux, or use --host nested-kvm (real KVM nested in TCG) here",
            machine.arch
        );
    };
    if native != guest {
        bail!(
            "--host kvm runs guests of this machine's architecture, {}, not {}: \
             use --arch {}, or --host tcg for {} guests",
            native.name(),
            guest.name(),
            native.name(),
            guest.name()
        );
    }
    match &machine.dev_kvm {
        DevKvm::Usable => {}
        DevKvm::Missing => bail!(
            "--host kvm needs {DEV_KVM}, and this machine has none: load KVM \
             (`sudo modprobe kvm`); on arm64 KVM starts only if the kernel was booted at EL2 \
             (`dmesg | grep -i kvm` says why not), and in a VM only with nested virtualization"
        ),
        DevKvm::NoPermission => bail!(
            "--host kvm cannot open {DEV_KVM}: permission denied; join its group \
             (`sudo usermod -aG kvm $USER`, then log in again; `ls -l {DEV_KVM}` shows the group) \
             or run as root"
        ),
        DevKvm::Unusable(why) => bail!("--host kvm cannot open {DEV_KVM}: {why}"),
    }
    let program = guest.qemu();
    match &machine.qemu {
        QemuFound::Version(version) => check_qemu(guest, program, *version),
        QemuFound::NotFound => bail!(
            "--host kvm needs {program}, which is not installed: install QEMU >= {} \
             (Debian: `sudo apt-get install {}`)",
            minimum_qemu(guest).0,
            qemu_package(guest)
        ),
        QemuFound::Unreadable(why) => {
            bail!("--host kvm cannot tell {program}'s version: {why}")
        }
    }
}

/// Fails unless QEMU `version` (the program `program`) has what
/// [`command_line`] uses for a `guest` guest.
pub fn check_qemu(guest: Arch, program: &str, version: QemuVersion) -> Result<()> {
    let (minimum, needs) = minimum_qemu(guest);
    if version < minimum {
        bail!(
            "{program} is QEMU {version}, too old for {} guests under KVM (QEMU >= {minimum} \
             has {needs}): install a newer one (`./run.sh install` installs QEMU >= 10 on \
             Debian)",
            guest.name()
        );
    }
    Ok(())
}

/// The QEMU+KVM command line for `boot`, program first, with `kernel` as
/// the guest's image (its path where that QEMU runs) and the PV switches
/// of `pv`. `--host kvm` runs it; `--host nested-kvm` hands it to L1.
pub fn command_line(boot: &Boot, pv: Pv, kernel: &str) -> Vec<String> {
    let pv = pv.name();
    let (machine, cpu) = match boot.arch {
        Arch::Aarch64 => ("virt,gic-version=3", format!("host,kvm-steal-time={pv}")),
        Arch::Loongarch64 => ("virt", format!("la464,kvm-pv-ipi={pv},kvm-steal-time={pv}")),
    };
    let smp = boot.smp.to_string();
    let mem = boot.mem.to_string();
    let words = [
        boot.arch.qemu(),
        "-M",
        machine,
        "-accel",
        "kvm",
        "-cpu",
        cpu.as_str(),
        "-smp",
        smp.as_str(),
        "-m",
        mem.as_str(),
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-kernel",
        kernel,
        "-append",
        boot.bootargs.as_str(),
    ];
    words.map(String::from).to_vec()
}

/// The QEMU for one boot under `--host kvm` on this machine.
pub fn command(boot: &Boot, settings: Settings) -> Result<Command> {
    let Some(image) = boot.image.to_str() else {
        bail!(
            "the guest image's path {} is not UTF-8",
            boot.image.display()
        );
    };
    let words = command_line(boot, settings.pv, image);
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Host;
    use crate::qemu::GUEST_MEMORY;
    use std::path::PathBuf;

    fn machine(arch: &str) -> Machine {
        Machine {
            os: "linux".into(),
            arch: arch.into(),
            dev_kvm: DevKvm::Usable,
            qemu: QemuFound::Version(QemuVersion(10, 0, 2)),
        }
    }

    fn error(machine: &Machine, guest: Arch) -> String {
        format!("{:#}", check(machine, guest).unwrap_err())
    }

    #[test]
    fn a_matching_linux_with_kvm_and_qemu_10_passes() {
        assert!(check(&machine("aarch64"), Arch::Aarch64).is_ok());
        assert!(check(&machine("loongarch64"), Arch::Loongarch64).is_ok());
        let old_but_enough = Machine {
            qemu: QemuFound::Version(QemuVersion(7, 2, 0)),
            ..machine("aarch64")
        };
        assert!(check(&old_but_enough, Arch::Aarch64).is_ok());
    }

    #[test]
    fn each_failure_names_its_fix() {
        let cases = [
            (
                Machine {
                    os: "macos".into(),
                    ..machine("aarch64")
                },
                Arch::Aarch64,
                "needs Linux's KVM, and this is macos: use --host tcg",
            ),
            (
                machine("x86_64"),
                Arch::Aarch64,
                "this machine is x86_64 (lodger's guests are aarch64 and loongarch64): run it \
                 on an aarch64 or loongarch64 Linux, or use --host nested-kvm",
            ),
            (
                machine("aarch64"),
                Arch::Loongarch64,
                "runs guests of this machine's architecture, aarch64, not loongarch64: use \
                 --arch aarch64, or --host tcg",
            ),
            (
                machine("loongarch64"),
                Arch::Aarch64,
                "loongarch64, not aarch64: use --arch loongarch64",
            ),
            (
                Machine {
                    dev_kvm: DevKvm::Missing,
                    ..machine("aarch64")
                },
                Arch::Aarch64,
                "needs /dev/kvm, and this machine has none: load KVM (`sudo modprobe kvm`)",
            ),
            (
                Machine {
                    dev_kvm: DevKvm::NoPermission,
                    ..machine("loongarch64")
                },
                Arch::Loongarch64,
                "cannot open /dev/kvm: permission denied; join its group (`sudo usermod -aG kvm $USER`",
            ),
            (
                Machine {
                    dev_kvm: DevKvm::Unusable("No such device (os error 19)".into()),
                    ..machine("aarch64")
                },
                Arch::Aarch64,
                "cannot open /dev/kvm: No such device (os error 19)",
            ),
            (
                Machine {
                    qemu: QemuFound::NotFound,
                    ..machine("loongarch64")
                },
                Arch::Loongarch64,
                "needs qemu-system-loongarch64, which is not installed: install QEMU >= 10.0.0 \
                 (Debian: `sudo apt-get install qemu-system-misc`)",
            ),
            (
                Machine {
                    qemu: QemuFound::Version(QemuVersion(9, 2, 4)),
                    ..machine("loongarch64")
                },
                Arch::Loongarch64,
                "qemu-system-loongarch64 is QEMU 9.2.4, too old for loongarch64 guests under \
                 KVM (QEMU >= 10.0.0 has the KVM CPU properties kvm-pv-ipi and kvm-steal-time): \
                 install a newer one",
            ),
            (
                Machine {
                    qemu: QemuFound::Version(QemuVersion(5, 1, 0)),
                    ..machine("aarch64")
                },
                Arch::Aarch64,
                "qemu-system-aarch64 is QEMU 5.1.0, too old for aarch64 guests under KVM \
                 (QEMU >= 5.2.0 has -cpu host,kvm-steal-time=on|off): install a newer one",
            ),
            (
                Machine {
                    qemu: QemuFound::Unreadable("no version".into()),
                    ..machine("aarch64")
                },
                Arch::Aarch64,
                "cannot tell qemu-system-aarch64's version: no version",
            ),
        ];
        for (machine, guest, expected) in cases {
            let message = error(&machine, guest);
            assert!(message.contains(expected), "{machine:?}: {message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }

    #[test]
    fn the_first_problem_is_the_one_reported() {
        // An x86_64 machine without /dev/kvm or QEMU: the architecture.
        let hopeless = Machine {
            dev_kvm: DevKvm::Missing,
            qemu: QemuFound::NotFound,
            ..machine("x86_64")
        };
        assert!(error(&hopeless, Arch::Aarch64).contains("this machine is x86_64"));
    }

    #[test]
    fn qemu_versions() {
        assert_eq!(
            QemuVersion::from_version_output(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)\n\
                 Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n"
            ),
            Some(QemuVersion(10, 0, 2))
        );
        assert_eq!(
            QemuVersion::from_version_output("QEMU emulator version 9.1.50\n"),
            Some(QemuVersion(9, 1, 50))
        );
        assert_eq!(QemuVersion::from_version_output("qemu\n"), None);
        assert_eq!(
            QemuVersion::from_debian("1:7.2+dfsg-7+deb12u7"),
            Some(QemuVersion(7, 2, 0))
        );
        assert_eq!(
            QemuVersion::from_debian("1:10.0.2+ds-1~bpo12+1"),
            Some(QemuVersion(10, 0, 2))
        );
        assert_eq!(QemuVersion::from_debian("garbage"), None);
        assert!(QemuVersion(10, 0, 0) > QemuVersion(9, 2, 4));
        assert_eq!(QemuVersion(7, 2, 0).to_string(), "7.2.0");
        // The QEMU in nested-kvm's L1 (bookworm's 7.2) is new enough.
        assert!(check_qemu(Arch::Aarch64, "q", QemuVersion(7, 2, 0)).is_ok());
    }

    fn boot(arch: Arch) -> Boot {
        Boot {
            arch,
            host: Host::Kvm(Settings::DEFAULT),
            smp: 4,
            mem: GUEST_MEMORY,
            el2: false,
            image: PathBuf::from("/t/lodger"),
            bootargs: "app=selftest pv=off -- a b".into(),
        }
    }

    #[test]
    fn command_lines_for_both_arches_pv_on_and_off() {
        let line = |arch, pv| cmd::quote(&command_line(&boot(arch), pv, "/t/lodger"));
        let tail = "-smp 4 -m 256M -nodefaults -display none -serial stdio -monitor none \
                    -no-reboot -kernel /t/lodger -append 'app=selftest pv=off -- a b'";
        assert_eq!(
            line(Arch::Aarch64, Pv::On),
            format!(
                "qemu-system-aarch64 -M virt,gic-version=3 -accel kvm \
                 -cpu host,kvm-steal-time=on {tail}"
            )
        );
        assert_eq!(
            line(Arch::Aarch64, Pv::Off),
            format!(
                "qemu-system-aarch64 -M virt,gic-version=3 -accel kvm \
                 -cpu host,kvm-steal-time=off {tail}"
            )
        );
        assert_eq!(
            line(Arch::Loongarch64, Pv::On),
            format!(
                "qemu-system-loongarch64 -M virt -accel kvm \
                 -cpu la464,kvm-pv-ipi=on,kvm-steal-time=on {tail}"
            )
        );
        assert_eq!(
            line(Arch::Loongarch64, Pv::Off),
            format!(
                "qemu-system-loongarch64 -M virt -accel kvm \
                 -cpu la464,kvm-pv-ipi=off,kvm-steal-time=off {tail}"
            )
        );
        let run = command(&boot(Arch::Aarch64), Settings { pv: Pv::Off }).unwrap();
        assert_eq!(
            cmd::display(&run),
            cmd::quote(&command_line(&boot(Arch::Aarch64), Pv::Off, "/t/lodger"))
        );
    }

    #[test]
    fn this_machine_is_probed() {
        let here = Machine::probe(Arch::Aarch64);
        assert_eq!(here.arch, std::env::consts::ARCH);
        if here.arch == "x86_64" {
            // Where the project is developed: --host kvm can only fail.
            let message = error(&here, Arch::Aarch64);
            assert!(message.contains("this machine is x86_64"), "{message}");
        }
    }
}
