//! `--arch loongarch64 --host pvhost`: the guest under a patched QEMU that
//! models the KVM guest interface of upstream Linux's `arch/loongarch/kvm/`
//! under TCG (`host/qemu-loongarch-kvm-pv.patch`, GPL-2.0-or-later like
//! QEMU itself; its header says what each file gets).
//!
//! The binary is built on demand and cached under
//! `target/qemu-pv/<patch hash>/`; a changed patch builds a new one:
//!
//! 1. the source: Debian's `qemu_10.0.2+ds.orig.tar.xz`, fetched once into
//!    `target/qemu-pv/` by `apt-get source --download-only --tar-only` with a
//!    private apt setup (a `deb-src` entry for bookworm-backports on the
//!    mirror the machine's apt sources already use; the system's sources are
//!    not changed), apt checking it against the archive's index;
//! 2. unpack, `patch -p1`, `configure` (loongarch64-softmmu, TCG only),
//!    `ninja qemu-system-loongarch64`;
//! 3. the binary moves to `target/qemu-pv/<hash>/`, the tree is removed.
//!
//! The QEMU command is the TCG one plus the model's CPU properties
//! (`-global la464-loongarch-cpu.pvhost=on`, the offered features, each on
//! or off as [`Settings::offers`] says, the injector's policy). At exit the
//! model prints its ground truth after the guest's exit marker, one line per
//! vCPU:
//! `pvhost: cpu=N hw_id=H preemptions=K stolen_ns=S held_ns=A pv_calls=C
//! last_end_ns=E record_updates=U hvcl_ipi=I hvcl_notify=M hvcl_other=O
//! hvcl_unadvertised=X ipis_pv=P ipis_iocsr=Q steal_faults=F st_registers=R
//! st_unregisters=D st_registered=0|1` ([`crate::steal`] reads it as it reads
//! aarch64 pvhost's).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::progress::{self, Step};
use crate::pvhost::{Feature, Settings};
use crate::qemu::Boot;

/// The patch, relative to the workspace root.
pub const PATCH: &str = "host/qemu-loongarch-kvm-pv.patch";
/// The QEMU release the patch is for, and Debian's tarball of it.
const UPSTREAM: &str = "10.0.2";
const TARBALL: &str = "qemu_10.0.2+ds.orig.tar.xz";
/// The Debian package whose installed version names the source package's.
const VERSION_OF: &str = "qemu-system-misc";
const BINARY: &str = "qemu-system-loongarch64";
/// The CPU type whose properties the model adds.
const CPU_TYPE: &str = "la464-loongarch-cpu";

/// FNV-1a, 64 bits: a stable key for the patch's contents.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn cache_dir() -> PathBuf {
    cmd::target_dir().join("qemu-pv")
}

/// The patched QEMU, built first if the cache has none for this patch.
pub fn ensure() -> Result<PathBuf> {
    let patch = cmd::workspace_root().join(PATCH);
    let bytes = std::fs::read(&patch).with_context(|| format!("reading {PATCH}"))?;
    let dir = cache_dir().join(format!("{:016x}", fnv1a(&bytes)));
    let binary = dir.join(BINARY);
    if binary.is_file() {
        return Ok(binary);
    }
    // Its phases and ninja's `[N/M]` on a live line, or a line each
    // (ninja's: every 10% or 30 s), [`progress`].
    let mut step = Step::new("xtask: LoongArch PV QEMU");
    step.phase("building it (once per patch: a few minutes)");
    let tarball = fetch_source(&mut step)?;
    let work = dir.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    cmd::run(
        Command::new("tar")
            .arg("xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(&work),
    )?;
    let src = work.join(format!("qemu-{UPSTREAM}"));
    step.phase("unpacked; patching");
    cmd::run_redirected(
        Command::new("patch")
            .args(["-p1", "--quiet"])
            .current_dir(&src),
        &patch,
        &work.join("patch.log"),
    )?;
    let build = work.join("build");
    std::fs::create_dir_all(&build)?;
    step.phase("configuring");
    cmd::run_redirected(
        Command::new(src.join("configure"))
            .args([
                "--python=/usr/bin/python3",
                "--target-list=loongarch64-softmmu",
                "--without-default-features",
                "--enable-tcg",
                "--enable-fdt=system",
                "--disable-docs",
                "--disable-tools",
                "--disable-install-blobs",
            ])
            .current_dir(&build),
        Path::new("/dev/null"),
        &work.join("configure.log"),
    )
    .context("configure failed (its output: target/qemu-pv/*/work/configure.log; ./run.sh install installs what it needs)")?;
    step.phase("compiling (ninja -j2)");
    step.run(
        Command::new("ninja")
            .args(["-j2", BINARY])
            .current_dir(&build),
        Some(&work.join("ninja.log")),
        |line| progress::ninja_count(line).map(|(done, total)| (done, Some(total))),
    )
    .context("the build failed (its output: target/qemu-pv/*/work/ninja.log)")?;
    std::fs::rename(build.join(BINARY), &binary)?;
    std::fs::remove_dir_all(&work)?;
    step.done(&format!("built {}", binary.display()));
    Ok(binary)
}

/// The `deb` URI and keyring of the machine's bookworm(-backports) source.
fn bookworm_mirror() -> Result<(String, Option<String>)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let name = file.to_string_lossy();
        if name.ends_with(".sources") {
            if let Some(found) = deb822_mirror(&text) {
                return Ok(found);
            }
        } else if name.ends_with(".list") {
            if let Some(found) = one_line_mirror(&text) {
                return Ok(found);
            }
        }
    }
    bail!("found no apt source for bookworm to fetch QEMU's source from (./run.sh install sets one up)")
}

/// A deb822 stanza of type `deb` for suite `bookworm` or `bookworm-backports`.
fn deb822_mirror(text: &str) -> Option<(String, Option<String>)> {
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        let deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let suite = field("Suites").is_some_and(|s| {
            s.split_whitespace()
                .any(|s| s == "bookworm" || s == "bookworm-backports")
        });
        if let (true, true, Some(uri)) = (deb, suite, field("URIs")) {
            let uri = uri.split_whitespace().next()?.to_owned();
            return Some((uri, field("Signed-By").map(str::to_owned)));
        }
    }
    None
}

/// A one-line `deb [opts] URI bookworm[-backports] ...` entry.
fn one_line_mirror(text: &str) -> Option<(String, Option<String>)> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("deb ")?;
        let (opts, rest) = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']')?,
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        let suite = words.next()?;
        (suite == "bookworm" || suite == "bookworm-backports").then(|| {
            let key = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(str::to_owned);
            (uri.to_owned(), key)
        })
    })
}

/// Debian's orig tarball, downloaded once with a private apt setup.
fn fetch_source(step: &mut Step) -> Result<PathBuf> {
    let dir = cache_dir();
    let tarball = dir.join(TARBALL);
    if tarball.is_file() {
        return Ok(tarball);
    }
    let version = cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", VERSION_OF]))
        .with_context(|| format!("{VERSION_OF} is not installed (./run.sh install)"))?;
    let version = version.trim();
    let upstream = version
        .split_once(':')
        .map_or(version, |(_, v)| v)
        .split('+')
        .next()
        .unwrap_or_default();
    if upstream != UPSTREAM {
        bail!("{VERSION_OF} {version} is installed; {PATCH} is for QEMU {UPSTREAM}");
    }
    step.phase("fetching the source");
    let (uri, key) = bookworm_mirror()?;
    let apt = dir.join("apt");
    for sub in ["lists/partial", "parts", "archives/partial"] {
        std::fs::create_dir_all(apt.join(sub))?;
    }
    let signed = key.map(|k| format!(" [signed-by={k}]")).unwrap_or_default();
    std::fs::write(
        apt.join("sources.list"),
        format!("deb-src{signed} {uri} bookworm-backports main\n"),
    )?;
    let apt_get = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        for (key, sub) in [
            ("Dir::Etc::sourcelist", "sources.list"),
            ("Dir::Etc::sourceparts", "parts"),
            ("Dir::State::Lists", "lists"),
            ("Dir::Cache::archives", "archives"),
        ] {
            c.arg("-o")
                .arg(format!("{key}={}", apt.join(sub).display()));
        }
        c.args(["-q", "-o", "APT::Sandbox::User=root"])
            .args(args)
            .current_dir(&dir);
        c
    };
    // apt's `Get:N`, `Hit:N` lines: the indexes and the tarball fetched.
    let mut fetched = 0;
    let mut apt_counts = |line: &str| {
        progress::apt_fetch(line).then(|| {
            fetched += 1;
            (fetched, None)
        })
    };
    step.run(&mut apt_get(&["update"]), None, &mut apt_counts)?;
    step.run(
        &mut apt_get(&[
            "source",
            "--download-only",
            "--tar-only",
            &format!("qemu={version}"),
        ]),
        None,
        &mut apt_counts,
    )?;
    if !tarball.is_file() {
        bail!("apt-get source did not bring {TARBALL}");
    }
    Ok(tarball)
}

/// The QEMU that boots `boot` under the LoongArch PV model at `qemu`: the
/// TCG command with the model's CPU properties.
pub fn command(boot: &Boot, settings: Settings, qemu: &Path) -> Result<Command> {
    if !fault_modelled(settings.fault) {
        anyhow::bail!(
            "pvhost fault `{}`: the LoongArch model injects only {LOONGARCH_FAULTS}",
            settings.fault
        );
    }
    let globals: Vec<String> = properties(settings)
        .into_iter()
        .flat_map(|p| ["-global".to_owned(), format!("{CPU_TYPE}.{p}")])
        .collect();
    boot.tcg_with(qemu.as_os_str(), &globals)
}

/// The host faults the model injects (`pvhost-fault=`), as aarch64
/// pvhost's of the same names.
const LOONGARCH_FAULTS: &str = "none, stuck-preempted, refuse-register:V, garbage-notify:V, \
                                steal-backwards:V and steal-jump:V";

fn fault_modelled(fault: &str) -> bool {
    let vcpu = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    ["none", "stuck-preempted"].contains(&fault)
        || [
            "refuse-register:",
            "garbage-notify:",
            "steal-backwards:",
            "steal-jump:",
        ]
        .iter()
        .any(|p| fault.strip_prefix(p).is_some_and(vcpu))
}

/// The model's CPU properties for `settings`: each feature `settings`
/// offers on, the others off (`--pv off`: all; the hypervisor and its
/// signature stay); a fault only when there is one.
fn properties(settings: Settings) -> Vec<String> {
    let mut out = vec!["pvhost=on".to_owned()];
    for (feature, property) in [
        (Feature::Ipi, "ipi"),
        (Feature::Time, "steal-time"),
        (Feature::Preempt, "preempt"),
    ] {
        let on = if settings.offers(feature) {
            "on"
        } else {
            "off"
        };
        out.push(format!("pvhost-{property}={on}"));
    }
    out.push(format!("pvhost-steal={}", settings.steal));
    if settings.fault != "none" {
        out.push(format!("pvhost-fault={}", settings.fault));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Pv;

    #[test]
    fn mirrors_from_both_source_formats() {
        let deb822 =
            "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\nSigned-By: /k.gpg\n\nTypes: deb\nURIs: http://s.example\n\
                      Suites: bookworm-security\n";
        assert_eq!(
            deb822_mirror(deb822),
            Some(("http://m.example/debian".into(), Some("/k.gpg".into())))
        );
        assert_eq!(
            deb822_mirror("Types: deb-src\nURIs: x\nSuites: bookworm\n"),
            None
        );
        let list = "# c\ndeb [arch=amd64 signed-by=/k] http://m.example/d bookworm main\n";
        assert_eq!(
            one_line_mirror(list),
            Some(("http://m.example/d".into(), Some("/k".into())))
        );
        assert_eq!(
            one_line_mirror("deb http://m.example/d bookworm-backports main"),
            Some(("http://m.example/d".into(), None))
        );
        assert_eq!(one_line_mirror("deb http://x trixie main"), None);
    }

    #[test]
    fn properties_offer_each_feature() {
        let on = properties(Settings {
            pv: Pv::On,
            offer: crate::pvhost::Offer::ALL,
            steal: "periodic:1000,50",
            fault: "none",
        });
        assert_eq!(
            on,
            [
                "pvhost=on",
                "pvhost-ipi=on",
                "pvhost-steal-time=on",
                "pvhost-preempt=on",
                "pvhost-steal=periodic:1000,50"
            ]
        );
        let off = properties(Settings {
            pv: Pv::Off,
            offer: crate::pvhost::Offer::ALL,
            steal: "none",
            fault: "none",
        });
        assert!(off.contains(&"pvhost-ipi=off".to_owned()), "{off:?}");
        let time = properties(Settings {
            offer: crate::pvhost::Offer::only(&[Feature::Time]),
            ..Settings::DEFAULT
        });
        assert_eq!(
            time[1..4],
            [
                "pvhost-ipi=off",
                "pvhost-steal-time=on",
                "pvhost-preempt=off"
            ]
        );
    }

    #[test]
    fn faults_the_model_injects() {
        for ok in [
            "none",
            "stuck-preempted",
            "refuse-register:1",
            "garbage-notify:2",
            "steal-backwards:0",
            "steal-jump:3",
        ] {
            assert!(fault_modelled(ok), "{ok}");
        }
        for bad in [
            "drop-kicks",
            "stuck-preempted:1",
            "garbage-notify:",
            "steal-jump:",
            "steal-jump:x",
            "ipa-misaligned:1",
        ] {
            assert!(!fault_modelled(bad), "{bad}");
        }
        let p = properties(Settings {
            pv: Pv::On,
            offer: crate::pvhost::Offer::ALL,
            steal: "none",
            fault: "steal-jump:1",
        });
        assert_eq!(
            p.last().map(String::as_str),
            Some("pvhost-fault=steal-jump:1")
        );
    }

    #[test]
    fn the_patch_carries_qemus_licence_and_one_abi_header() {
        let patch = std::fs::read_to_string(cmd::workspace_root().join(PATCH)).unwrap();
        assert!(patch.contains("SPDX-License-Identifier: GPL-2.0-or-later"));
        assert!(patch.contains("+++ b/target/loongarch/pvhost.h"));
        // The ABI's numbers appear once, in the header.
        for constant in [
            "0x004D564B",
            "0x40000000ULL",
            "KVM_HCALL_SERVICE            0x100",
        ] {
            assert_eq!(patch.matches(constant).count(), 1, "{constant}");
        }
    }
}
