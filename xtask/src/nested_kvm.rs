//! `--host nested-kvm`: the guest under real QEMU+KVM, on this x86_64
//! machine (the recipe and its costs: `docs/hosts/nested-kvm.md`):
//!
//! ```text
//! L0  qemu-system-aarch64 (TCG) -M virt,virtualization=on,gic-version=3 -cpu max
//!  └─ L1  Debian's arm64 cloud kernel at EL2 (KVM built in), this module's /init
//!      └─ Debian's arm64 qemu-system-aarch64 -accel kvm -cpu host,kvm-steal-time=on|off
//!          └─ L2  the guest
//! ```
//!
//! The L2 QEMU's command line is [`crate::kvm::command_line`]'s, the one
//! `--host kvm` runs on a real arm64 KVM machine: xtask builds it, checks
//! the QEMU it goes into against [`crate::kvm::check_qemu`], and hands it
//! to L1 in `/lodger/params`.
//!
//! L1 comes from Debian packages only, fetched with apt from the mirror the
//! machine already uses ([`crate::debian`]), and is cached under
//! `target/nested-kvm/`:
//!
//! | file | what |
//! |---|---|
//! | `Image` | L1's kernel, from the package `linux-image-cloud-arm64` currently depends on |
//! | `base.cpio` | L1's initramfs: busybox (static), QEMU and its 50 libraries, [`INIT`] |
//! | `stamp` | what those were made from: [`RECIPE`], a hash of [`INIT`], and each root package's name and version |
//! | `debs/` | the downloaded .debs, reused when the cache is rebuilt |
//!
//! Every run resolves the kernel's name and the versions again (apt's local
//! lists, no network) and rebuilds the cache when the stamp differs. A run
//! then appends a small archive of its own to `base.cpio` (Linux unpacks
//! concatenated archives): the guest as `/lodger/guest` and its settings
//! and the L2 QEMU's command line in `/lodger/params`, which [`INIT`] reads.
//!
//! The guest's console reaches xtask through L1's console (the L2 QEMU's
//! `-serial stdio` is L1's `/dev/console`), so the exit marker works as on
//! TCG. A problem in L1 is reported on a line starting `nested-kvm:`, after
//! which L1 powers off: xtask then finds no marker and exits 125.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::cmd::{self, ScratchDir};
use crate::cpio::{self, Entry, Tree};
use crate::debian::{self, Fetcher, PackageInfo};
use crate::host::Pv;
use crate::kvm::{self, QemuVersion};
use crate::progress::{self, Step};
use crate::qemu::{Boot, Launch};

/// Bump when what goes into the cache changes in a way the stamp does not
/// see otherwise (the package choice, the archive layout).
pub const RECIPE: u32 = 1;

/// Debian's name for the architecture of L1.
const ARCH: &str = "arm64";
/// The metapackage whose dependency names the current cloud kernel.
const KERNEL_META: &str = "linux-image-cloud-arm64";
const KERNEL_PREFIX: &str = "linux-image-";
const KERNEL_SUFFIX: &str = "-cloud-arm64";
/// QEMU inside L1: bookworm's 7.2 does all the guest needs.
const QEMU_PACKAGE: &str = "qemu-system-arm";
const QEMU_BINARY: &str = "usr/bin/qemu-system-aarch64";
/// Where the run's archive puts the guest in L1.
const GUEST_IN_L1: &str = "/lodger/guest";
/// The only shell and tools of L1.
const BUSYBOX_PACKAGE: &str = "busybox-static";
const BUSYBOX_BINARY: &str = "bin/busybox";
/// The program interpreter of Debian's arm64 binaries.
const DYNAMIC_LOADER: &str = "ld-linux-aarch64.so.1";
/// Where the libraries go in L1 (glibc's default search path on Debian).
const LIB_DIR: &str = "lib/aarch64-linux-gnu";

/// L1's machine: 2 CPUs (this machine's cores) and room for the initramfs
/// (unpacked in RAM), QEMU and the guest.
pub const L1_CPUS: u16 = 2;
const L1_MEMORY: &str = "2G";
/// L1's scheduler slice (CFS minimum granularity; latency twice that).
/// Under TCG each KVM world switch costs about half a millisecond
/// (microseconds on hardware): host time spent on the vCPU's behalf that
/// KVM cannot report as steal, once per preemption, so a preempted guest's
/// accounted run time grows with the number of preemptions. Long slices
/// keep them few enough for `fairshare`'s 5% (the figures per slice:
/// `docs/hosts/nested-kvm.md`).
pub const L1_SLICE_MS: u32 = 100;
/// `panic=-1`: a panic in L1 reboots it, which `-no-reboot` makes an exit.
const L1_CMDLINE: &str = "console=ttyAMA0 panic=-1 quiet";

/// The settings of a nested-KVM host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `-cpu host,kvm-steal-time=on|off` for the guest: PV stolen time.
    pub pv: Pv,
    /// Busy loops started in L1 before the guest, so that KVM's vCPU
    /// threads are really preempted and the guest sees steal.
    pub l1_load: u8,
}

impl Settings {
    pub const DEFAULT: Settings = Settings {
        pv: Pv::On,
        l1_load: 0,
    };
}

/// L1's `/init` (busybox sh). Its settings come from `/lodger/params`
/// ([`params`]), so one base archive serves every run.
pub const INIT: &str = r#"#!/bin/busybox sh
# L1's /init for `cargo xtask run --host nested-kvm`, written by xtask
# (xtask/src/nested_kvm.rs): start the L1 load, boot the guest under
# QEMU+KVM, power L1 off as soon as that QEMU exits. A problem is reported
# on a line starting with "nested-kvm:" before L1 powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The kernel opened the console before /dev was mounted: open it again.
exec </dev/console >/dev/console 2>&1

off() {
    poweroff -f
    # Should that return, SysRq powers off.
    echo o >/proc/sysrq-trigger
    sleep 10
}

fail() {
    echo "nested-kvm: $*"
    off
}

[ -r /lodger/params ] || fail "no /lodger/params: the run's archive is missing"
. /lodger/params
[ -c /dev/kvm ] || fail "L1 has no /dev/kvm: KVM did not start in L1 (does L0 run with virtualization=on?)"

# Long slices for the vCPU threads and the load (see L1_SLICE_MS).
mount -t debugfs debugfs /sys/kernel/debug
echo $((L1_SLICE_MS * 1000000)) >/sys/kernel/debug/sched/min_granularity_ns &&
    echo $((L1_SLICE_MS * 2000000)) >/sys/kernel/debug/sched/latency_ns ||
    echo "nested-kvm: warning: L1's scheduler slice stays at the kernel's default"

i=0
while [ "$i" -lt "$L1_LOAD" ]; do
    (while :; do :; done) &
    i=$((i + 1))
done

echo "nested-kvm: L1 up after $(cut -d' ' -f1 /proc/uptime) s; guest: $SMP vCPUs, kvm-steal-time=$PV, $L1_LOAD busy loops in L1"
# The guest's QEMU: the command line xtask built (xtask/src/kvm.rs), the
# same one `--host kvm` runs, its words quoted for the shell.
eval "$QEMU" </dev/null
status=$?
[ "$status" -eq 0 ] || fail "the guest's QEMU (in L1) exited with status $status"
off
"#;

/// `/lodger/params`: the run's settings as shell assignments for [`INIT`],
/// with `qemu`, the guest's QEMU command line, in `QEMU` as one string that
/// `eval` splits back into its words.
pub fn params(settings: Settings, smp: u16, qemu: &[String]) -> String {
    let quoted = cmd::quote(&[cmd::quote(qemu)]);
    format!(
        "SMP={smp}\nPV={}\nL1_LOAD={}\nL1_SLICE_MS={L1_SLICE_MS}\nQEMU={quoted}\n",
        settings.pv.name(),
        settings.l1_load
    )
}

/// A prepared L1: its kernel and the base of its initramfs.
#[derive(Debug)]
pub struct L1 {
    dir: PathBuf,
    kernel: PathBuf,
    base: PathBuf,
    /// The Debian version of the QEMU in it ([`QEMU_PACKAGE`]).
    qemu_version: String,
}

impl L1 {
    fn at(dir: PathBuf) -> L1 {
        L1 {
            kernel: dir.join("Image"),
            base: dir.join("base.cpio"),
            dir,
            qemu_version: String::new(),
        }
    }

    /// The cached L1, made first if the cache is missing or stale.
    pub fn prepare() -> Result<L1> {
        let mut l1 = L1::at(cmd::target_dir().join("nested-kvm"));
        // One apt-cache call when all is in place: it can take a second
        // (on machines where apt keeps no binary cache of its lists).
        let wanted = [KERNEL_META, QEMU_PACKAGE, BUSYBOX_PACKAGE].map(String::from);
        let mut infos = debian::show(&wanted, ARCH).or_else(|_| {
            debian::ensure_architecture(ARCH, KERNEL_META)?;
            debian::show(&wanted, ARCH)
        })?;
        let mut updated = false;
        loop {
            let meta = infos
                .iter()
                .find(|i| i.name == KERNEL_META)
                .context("apt-cache show left out the kernel's metapackage")?;
            let kernel = debian::dependency_matching(meta, KERNEL_PREFIX, KERNEL_SUFFIX)?;
            // The stamp holds this version: the cached QEMU is this one.
            l1.qemu_version = infos
                .iter()
                .find(|i| i.name == QEMU_PACKAGE)
                .context("apt-cache show left out QEMU's package")?
                .version
                .clone();
            let stamp = stamp(&kernel, &infos);
            if l1.is_built_from(&stamp) {
                progress::say(&format!(
                    "nested-kvm: L1 from the cache in {} ({kernel}, {})",
                    l1.dir.display(),
                    packages_summary(&infos)
                ));
                return Ok(l1);
            }
            match l1.build(&kernel, &stamp) {
                // The lists name versions the mirror no longer has: update
                // them once (the kernel's name may change too) and retry.
                Err(e) if !updated && debian::is_root() && e.is::<debian::DownloadFailed>() => {
                    progress::say(&format!(
                        "nested-kvm: {e}; updating apt's package lists and retrying"
                    ));
                    debian::update()?;
                    updated = true;
                    infos = debian::show(&wanted, ARCH)?;
                }
                result => return result.map(|()| l1),
            }
        }
    }

    fn is_built_from(&self, stamp: &str) -> bool {
        fs::read_to_string(self.dir.join("stamp")).is_ok_and(|s| s == stamp)
            && self.kernel.is_file()
            && self.base.is_file()
    }

    /// Fetches the packages and makes `Image`, `base.cpio` and `stamp`.
    fn build(&self, kernel_package: &str, stamp: &str) -> Result<()> {
        let start = Instant::now();
        progress::say(&format!(
            "nested-kvm: preparing L1 in {} from Debian's {ARCH} packages \
             (the first time: about 45 MB to download, a minute or less)",
            self.dir.display()
        ));
        fs::create_dir_all(&self.dir)?;
        // No stamp while the files change: an interrupted build is redone.
        remove_file_if_present(&self.dir.join("stamp"))?;
        let work = self.dir.join("work");
        if work.exists() {
            fs::remove_dir_all(&work)?;
        }
        // On a terminal, a live line through the phases (the downloads a
        // second line under it); plain, the commands as they run.
        let step = Step::new("nested-kvm: L1");
        let mut fetcher = Fetcher::new(ARCH, self.dir.join("debs"), work.join("packages"))?;
        let roots = [kernel_package, QEMU_PACKAGE, BUSYBOX_PACKAGE].map(String::from);
        step.message("the kernel, QEMU and busybox");
        let infos = fetcher.fetch(&roots)?;

        let kernel = find_kernel(&fetcher.dir(kernel_package))?;
        let qemu = fetcher.dir(QEMU_PACKAGE).join(QEMU_BINARY);
        step.message("the libraries QEMU needs");
        let libs = debian::library_closure(&mut fetcher, QEMU_PACKAGE, &qemu)?;
        let busybox = fetcher.dir(BUSYBOX_PACKAGE).join(BUSYBOX_BINARY);
        let tree = base_tree(&busybox, &qemu, &libs)?;
        let base_tmp = self.dir.join("base.cpio.tmp");
        step.message("packing base.cpio");
        tree.archive(&work.join("root"), &base_tmp)?;
        let kernel_tmp = self.dir.join("Image.tmp");
        fs::copy(&kernel, &kernel_tmp).with_context(|| format!("copying {}", kernel.display()))?;
        fs::rename(&base_tmp, &self.base)?;
        fs::rename(&kernel_tmp, &self.kernel)?;
        fs::write(self.dir.join("stamp"), stamp)?;

        fetcher.prune_downloads()?;
        let packages = fetcher.packages().len();
        fs::remove_dir_all(&work)?;
        drop(step);
        progress::say(&format!(
            "nested-kvm: L1 ready after {:.1} s: {}, {} libraries from {} packages, base.cpio {} MB",
            start.elapsed().as_secs_f64(),
            packages_summary(&infos),
            libs.len(),
            packages - roots.len(),
            fs::metadata(&self.base)?.len() >> 20
        ));
        Ok(())
    }
}

/// What the cache is made from; any change rebuilds it. `infos` are the
/// root packages, with the kernel's metapackage (its version is the
/// kernel's).
fn stamp(kernel: &str, infos: &[PackageInfo]) -> String {
    let mut stamp = format!(
        "lodger nested-kvm L1, recipe {RECIPE}\ninit {:016x}\nkernel {kernel}\n",
        fnv1a(INIT.as_bytes())
    );
    let mut infos: Vec<&PackageInfo> = infos.iter().collect();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    for info in infos {
        let _ = writeln!(stamp, "{} {}", info.name, info.version);
    }
    stamp
}

/// The 64-bit FNV-1a hash: stable across Rust versions, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn packages_summary(infos: &[PackageInfo]) -> String {
    infos
        .iter()
        .map(|i| format!("{} {}", i.name, i.version))
        .collect::<Vec<_>>()
        .join(", ")
}

fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The kernel package's `boot/vmlinuz-*`, checked to be an uncompressed
/// arm64 Image (what QEMU's `-kernel` boots as is).
fn find_kernel(package: &Path) -> Result<PathBuf> {
    let boot = package.join("boot");
    let mut found = Vec::new();
    for entry in fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        {
            found.push(path);
        }
    }
    let [kernel] = found.as_slice() else {
        bail!("expected one boot/vmlinuz-* in the kernel package, found {found:?}");
    };
    let head = fs::read(kernel)?;
    // The arm64 Image header's magic, "ARM\x64" at offset 0x38.
    if head.get(0x38..0x3c) != Some(b"ARM\x64") {
        bail!("{} is not an uncompressed arm64 Image", kernel.display());
    }
    Ok(kernel.clone())
}

/// The base initramfs: busybox, QEMU, its libraries, the loader link, /init
/// and the mount points.
fn base_tree(
    busybox: &Path,
    qemu: &Path,
    libs: &std::collections::BTreeMap<String, PathBuf>,
) -> Result<Tree> {
    if !libs.contains_key(DYNAMIC_LOADER) {
        bail!("QEMU's libraries lack the dynamic loader {DYNAMIC_LOADER}");
    }
    let mut tree = Tree::default();
    tree.add(
        "init",
        Entry::Text {
            content: INIT.to_owned(),
            executable: true,
        },
    )?;
    tree.add(BUSYBOX_BINARY, Entry::Copy(busybox.to_owned()))?;
    tree.add(QEMU_BINARY, Entry::Copy(qemu.to_owned()))?;
    for (name, file) in libs {
        tree.add(&format!("{LIB_DIR}/{name}"), Entry::Copy(file.clone()))?;
    }
    // The program interpreter named in Debian's arm64 binaries.
    tree.add(
        &format!("lib/{DYNAMIC_LOADER}"),
        Entry::Symlink(format!("aarch64-linux-gnu/{DYNAMIC_LOADER}")),
    )?;
    for dir in ["dev", "proc", "sys", "tmp"] {
        tree.add(dir, Entry::Dir)?;
    }
    Ok(tree)
}

/// The guest's QEMU in L1, whose Debian version is `qemu_version`: the
/// command line of `--host kvm`, checked against that QEMU.
fn l2_command_line(boot: &Boot, settings: Settings, qemu_version: &str) -> Result<Vec<String>> {
    let version = QemuVersion::from_debian(qemu_version)
        .with_context(|| format!("cannot read a QEMU version in {QEMU_PACKAGE} {qemu_version}"))?;
    kvm::check_qemu(Arch::Aarch64, &format!("L1's {QEMU_PACKAGE}"), version)?;
    Ok(kvm::command_line(boot, settings.pv, GUEST_IN_L1))
}

/// The run's own archive: the guest and its settings with `qemu`, the
/// guest's QEMU command line.
fn run_tree(boot: &Boot, settings: Settings, qemu: &[String]) -> Result<Tree> {
    let mut tree = Tree::default();
    tree.add(
        GUEST_IN_L1.trim_start_matches('/'),
        Entry::Copy(boot.image.clone()),
    )?;
    tree.add(
        "lodger/params",
        Entry::Text {
            content: params(settings, boot.smp, qemu),
            executable: false,
        },
    )?;
    Ok(tree)
}

/// The L0 QEMU for one boot of the guest in `l1`, with its initramfs in a
/// scratch directory that lives as long as the [`Launch`].
pub fn launch(boot: &Boot, settings: Settings, l1: &L1) -> Result<Launch> {
    let qemu = l2_command_line(boot, settings, &l1.qemu_version)?;
    progress::announce(&format!("nested-kvm: in L1: $ {}", cmd::quote(&qemu)));
    let scratch = ScratchDir::new(l1.dir.join("runs").join(std::process::id().to_string()))?;
    let run_cpio = scratch.path().join("run.cpio");
    run_tree(boot, settings, &qemu)?.archive(&scratch.path().join("root"), &run_cpio)?;
    let initrd = scratch.path().join("initrd.cpio");
    cpio::concatenate(&[&l1.base, &run_cpio], &initrd)?;

    let mut command = Command::new(Arch::Aarch64.qemu());
    command
        .args(Arch::Aarch64.machine_args(true)?)
        .arg("-smp")
        .arg(L1_CPUS.to_string())
        .args(["-m", L1_MEMORY])
        .args(["-nodefaults", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&l1.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", L1_CMDLINE]);
    Ok(Launch {
        command,
        scratch: Some(scratch),
        grace: boot.host.power_off_grace(),
    })
}

#[cfg(test)]
mod tests;
