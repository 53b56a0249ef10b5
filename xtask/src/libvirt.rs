//! `cargo xtask libvirt`: a libvirt domain for the image, for people who run
//! KVM guests through libvirt (`virsh define FILE`, `virsh start --console
//! lodger`).
//!
//! The domain boots the ELF directly (`<kernel>`, `<cmdline>`: the same
//! boot arguments as `cargo xtask run`), on the `virt` board of each
//! architecture, with `-cpu host` under KVM (`host-passthrough`), the serial
//! console on a pty, no other devices, and destroys itself when the guest
//! powers off or resets (QEMU's `-no-reboot`).
//!
//! Steal time: libvirt has no way of its own to say it on arm64 or
//! LoongArch. `<features><kvm>` holds x86's switches (`hidden`,
//! `hint-dedicated`, `poll-control`, `pv-ipi`, `dirty-ring`), and a
//! host-passthrough CPU's `<feature>`s are checked against libvirt's CPU map,
//! whose arm64 part knows only `sve*` and `pauth`. QEMU has it as a property
//! of `-cpu host` (`kvm-steal-time`; LoongArch also `kvm-pv-ipi`), so `--pv
//! on|off` goes in `<qemu:commandline>` (which the schema accepts) as a
//! second `-cpu host,kvm-steal-time=on|off`: QEMU takes the last `-cpu`, and
//! for host-passthrough libvirt's own is plain `-cpu host`. libvirt marks
//! such a domain "tainted: custom-argv" in its log; nothing else changes.
//! (No arm64 or LoongArch KVM host here to boot it on: the XML is checked
//! against the schema, see [`test_step`].)

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::host::Pv;
use crate::qemu::{self, MemSize};
use crate::run::Guest;
use crate::{cmd, guest};

/// libvirt's namespace for QEMU command-line additions.
const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// The domain's name unless `--name` says otherwise.
const DEFAULT_NAME: &str = "lodger";

#[derive(clap::Args)]
pub struct Args {
    /// `run`'s flags for the guest.
    #[command(flatten)]
    guest: Guest,
    /// Steal time (LoongArch: and PV IPIs) offered to the guest:
    /// `-cpu host,kvm-steal-time=on|off` [default: on]
    #[arg(long, value_enum, value_name = "on|off")]
    pv: Option<Pv>,
    /// The domain's name.
    #[arg(long, default_value = DEFAULT_NAME, value_name = "NAME")]
    name: String,
    /// Where to write the XML [default: target/libvirt/NAME-ARCH.xml]
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let g = &args.guest;
    let checked = g
        .bootargs()
        .and_then(|cmdline| check_name(&args.name).map(|()| cmdline));
    let cmdline = match checked {
        Ok(cmdline) => cmdline,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            return Ok(ExitCode::from(guest::EXIT_BAD_COMMAND_LINE));
        }
    };
    let image = g.image()?;
    // libvirt wants an absolute path, and the image must exist to boot.
    let kernel = std::fs::canonicalize(&image)
        .with_context(|| format!("guest image {}", image.display()))?;
    let domain = Domain {
        name: &args.name,
        arch: g.arch,
        smp: g.smp,
        mem: g.mem,
        pv: args.pv.unwrap_or(Pv::On),
        kernel: &kernel,
        cmdline: &cmdline,
    };
    let output = args
        .output
        .unwrap_or_else(|| default_path(g.arch, &args.name));
    domain.write(&output)?;
    println!("{}", output.display());
    Ok(ExitCode::SUCCESS)
}

/// `target/libvirt/NAME-ARCH.xml`.
pub fn default_path(arch: Arch, name: &str) -> PathBuf {
    cmd::target_dir()
        .join("libvirt")
        .join(format!("{name}-{}.xml", arch.name()))
}

/// libvirt's domain names: no `/`, no newline (its `objectName`), and here
/// also one word, so that `virsh start NAME` needs no quoting.
fn check_name(name: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_-.+".contains(c);
    if name.is_empty() || !name.chars().all(ok) {
        bail!("domain name {name:?}: use letters, digits and _ - . + only");
    }
    Ok(())
}

/// What goes into the domain XML.
#[derive(Debug)]
pub struct Domain<'a> {
    pub name: &'a str,
    pub arch: Arch,
    pub smp: u16,
    pub mem: MemSize,
    pub pv: Pv,
    /// The ELF, an absolute path.
    pub kernel: &'a Path,
    /// The kernel command line, from [`guest::bootargs`].
    pub cmdline: &'a str,
}

impl Domain<'_> {
    /// The domain XML. Every value from the command line goes through
    /// [`escape`]; comments hold only fixed text (a `--`, as in the app's
    /// arguments, would end an XML comment).
    pub fn xml(&self) -> String {
        // The board is `virt` on both; the guest's interrupt controller
        // driver on aarch64 is GICv3's.
        let features = match self.arch {
            Arch::Aarch64 => "  <features>\n    <gic version='3'/>\n  </features>\n",
            Arch::Loongarch64 => "",
        };
        let switch = self.pv.name();
        let cpu = match self.arch {
            Arch::Aarch64 => format!("host,kvm-steal-time={switch}"),
            Arch::Loongarch64 => format!("host,kvm-steal-time={switch},kvm-pv-ipi={switch}"),
        };
        let mut xml = String::new();
        xml.push_str("<!-- lodger, written by `cargo xtask libvirt`: virsh define THIS_FILE -->\n");
        let _ = writeln!(xml, "<domain type='kvm' xmlns:qemu='{QEMU_NS}'>");
        let _ = writeln!(xml, "  <name>{}</name>", escape(self.name));
        let _ = writeln!(
            xml,
            "  <memory unit='MiB'>{}</memory>",
            self.mem.mib_count()
        );
        let _ = writeln!(xml, "  <vcpu placement='static'>{}</vcpu>", self.smp);
        xml.push_str("  <os>\n");
        let _ = writeln!(
            xml,
            "    <type arch='{}' machine='virt'>hvm</type>",
            self.arch.name()
        );
        let _ = writeln!(
            xml,
            "    <kernel>{}</kernel>",
            escape(&self.kernel.to_string_lossy())
        );
        let _ = writeln!(xml, "    <cmdline>{}</cmdline>", escape(self.cmdline));
        xml.push_str("  </os>\n");
        xml.push_str(features);
        xml.push_str("  <cpu mode='host-passthrough' check='none'/>\n");
        xml.push_str("  <clock offset='utc'/>\n");
        // The guest powers off when its app ends; a reset is a failure.
        xml.push_str("  <on_poweroff>destroy</on_poweroff>\n");
        xml.push_str("  <on_reboot>destroy</on_reboot>\n");
        xml.push_str("  <on_crash>destroy</on_crash>\n");
        xml.push_str("  <devices>\n");
        xml.push_str("    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n");
        xml.push_str(
            "    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n",
        );
        // Nothing else: the guest drives only its serial port.
        xml.push_str("    <controller type='usb' model='none'/>\n");
        xml.push_str("    <memballoon model='none'/>\n");
        xml.push_str("  </devices>\n");
        xml.push_str(
            "  <!-- PV offered or not (xtask's pv option): libvirt cannot say steal time \
             on arm64 or LoongArch, QEMU takes the last cpu option -->\n",
        );
        xml.push_str("  <qemu:commandline>\n");
        xml.push_str("    <qemu:arg value='-cpu'/>\n");
        let _ = writeln!(xml, "    <qemu:arg value='{}'/>", escape(&cpu));
        xml.push_str("  </qemu:commandline>\n");
        xml.push_str("</domain>\n");
        xml
    }

    /// Writes [`Domain::xml`] to `path`, creating its directory.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, self.xml()).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Text for XML character data and attribute values (either quote).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The `cargo xtask test` step: the XML for each architecture, PV on and
/// off, validated by `virt-xml-validate` against the installed libvirt's
/// schema. The image need not be built: the schema only wants an absolute
/// path.
pub fn test_step() -> Result<(), String> {
    let dir = cmd::target_dir().join("libvirt").join("test");
    let cmdline = guest::bootargs(
        "lockstorm",
        "pv.lock=v2 x=<&'\">",
        &["kinds=tas,mcs", "ms=100"],
    )
    .map_err(|e| format!("{e:#}"))?;
    let mut failures = Vec::new();
    for arch in [Arch::Aarch64, Arch::Loongarch64] {
        for pv in [Pv::On, Pv::Off] {
            let kernel = arch.image();
            let domain = Domain {
                name: DEFAULT_NAME,
                arch,
                smp: 4,
                mem: qemu::GUEST_MEMORY,
                pv,
                kernel: &kernel,
                cmdline: &cmdline,
            };
            let path = dir.join(format!("lodger-{}-pv-{}.xml", arch.name(), pv.name()));
            let result = domain
                .write(&path)
                .map_err(|e| format!("{e:#}"))
                .and_then(|()| {
                    cmd::run(Command::new("virt-xml-validate").arg(&path).arg("domain"))
                        .map_err(|e| format!("{e:#}"))
                });
            if let Err(e) = result {
                failures.push(e);
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain<'a>(arch: Arch, pv: Pv, cmdline: &'a str) -> Domain<'a> {
        Domain {
            name: "lodger",
            arch,
            smp: 3,
            mem: MemSize::mib(768),
            pv,
            kernel: Path::new("/img/lod&ger"),
            cmdline,
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("app=x -- a=1"), "app=x -- a=1");
    }

    #[test]
    fn cmdline_and_kernel_are_escaped() {
        let cmdline = guest::bootargs("lockstorm", "x=<a&b>", &["k='1'", "ms=5"]).unwrap();
        let xml = domain(Arch::Aarch64, Pv::On, &cmdline).xml();
        assert!(
            xml.contains(
                "<cmdline>app=lockstorm x=&lt;a&amp;b&gt; -- k=&apos;1&apos; ms=5</cmdline>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<kernel>/img/lod&amp;ger</kernel>"), "{xml}");
        // No markup from the command line survives unescaped.
        assert!(!xml.contains("<a&b>"));
    }

    #[test]
    fn comments_never_hold_a_double_dash() {
        let cmdline = guest::bootargs("selftest", "", &["--x--"]).unwrap();
        for arch in [Arch::Aarch64, Arch::Loongarch64] {
            let xml = domain(arch, Pv::Off, &cmdline).xml();
            for comment in xml.split("<!--").skip(1) {
                let body = comment.split("-->").next().unwrap();
                assert!(!body.contains("--"), "comment {body:?}");
            }
        }
    }

    #[test]
    fn aarch64_domain() {
        let xml = domain(Arch::Aarch64, Pv::On, "app=selftest").xml();
        for part in [
            "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>",
            "<name>lodger</name>",
            "<memory unit='MiB'>768</memory>",
            "<vcpu placement='static'>3</vcpu>",
            "<type arch='aarch64' machine='virt'>hvm</type>",
            "<gic version='3'/>",
            "<cpu mode='host-passthrough' check='none'/>",
            "<qemu:arg value='-cpu'/>",
            "<qemu:arg value='host,kvm-steal-time=on'/>",
            "<serial type='pty'>",
            "<target type='serial' port='0'/>",
            "<on_reboot>destroy</on_reboot>",
        ] {
            assert!(xml.contains(part), "{part} missing from\n{xml}");
        }
        assert!(!xml.contains("kvm-pv-ipi"));
        let off = domain(Arch::Aarch64, Pv::Off, "app=selftest").xml();
        assert!(off.contains("<qemu:arg value='host,kvm-steal-time=off'/>"));
        assert!(!off.contains("=on"));
    }

    #[test]
    fn loongarch64_domain() {
        let xml = domain(Arch::Loongarch64, Pv::Off, "app=selftest").xml();
        assert!(xml.contains("<type arch='loongarch64' machine='virt'>hvm</type>"));
        assert!(xml.contains("<qemu:arg value='host,kvm-steal-time=off,kvm-pv-ipi=off'/>"));
        assert!(!xml.contains("<gic"));
    }

    #[test]
    fn names_and_paths() {
        assert!(check_name("lodger").is_ok());
        assert!(check_name("lodger-la.2").is_ok());
        for bad in ["", "a/b", "a b", "a\nb", "<x>"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(default_path(Arch::Aarch64, "lodger").ends_with("libvirt/lodger-aarch64.xml"));
    }
}
