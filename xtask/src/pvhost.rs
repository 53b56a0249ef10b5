//! `--host pvhost`: the guest under pvhost (`host/`), lodger's own EL2
//! host, on QEMU TCG with `virtualization=on`:
//!
//! ```text
//! qemu-system-aarch64 -M virt,gic-version=3,virtualization=on -cpu max -m 512M
//!  └─ pvhost at EL2 (-kernel), linked at 0x5000_0000
//!      └─ the guest at EL1: its ELF staged by QEMU's loader at 0x5800_0000,
//!         copied by pvhost into [0x4000_0000, 0x5000_0000)
//! ```
//!
//! | RAM | what |
//! |---|---|
//! | `[0x4000_0000, 0x5000_0000)` | the guest's 256 MiB ([`crate::qemu::GUEST_MEMORY`], as on every host); its FDT at the start |
//! | `[0x5000_0000, 0x5800_0000)` | pvhost: image, stacks, the PV time and PV lock records |
//! | `[0x5800_0000, 0x6000_0000)` | the guest's ELF file as QEMU's generic loader put it (`force-raw=on`) |
//!
//! The command line (`-append`) is pvhost's: `pvhost.elf=ADDR pvhost.pv=on|off
//! pvhost.steal=POLICY -- GUEST ARGS`; pvhost hands everything after `--`
//! to the guest in its FDT. At the guest's SYSTEM_OFF pvhost prints its
//! ground truth after the guest's exit marker, one line per vCPU:
//! `pvhost: cpu=N preemptions=K stolen_ns=S pv_calls=C last_end_ns=E`
//! ([`crate::steal`] compares it with the guest's reading).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Result};

use crate::arch::Arch;
use crate::cmd;
use crate::host::Pv;
use crate::qemu::Boot;

/// QEMU's RAM: the guest's 256 MiB, then pvhost's (see the table above and
/// `host/link.ld`).
const MACHINE_MEMORY: &str = "512M";
/// Where QEMU's loader stages the guest's ELF file.
const GUEST_ELF_PA: u64 = 0x5800_0000;
/// The end of QEMU's RAM at [`MACHINE_MEMORY`].
const RAM_END: u64 = 0x6000_0000;

const PACKAGE: &str = "host";
const BINARY: &str = "pvhost";

/// A PV feature pvhost offers, by the name the guest's `pv:` line gives it:
/// aarch64 has `time`, `lock`, `sched`; loongarch64 `time` (STEAL_TIME),
/// `ipi`, `preempt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    Time = 0,
    Lock = 1,
    Sched = 2,
    Ipi = 3,
    Preempt = 4,
}

impl Feature {
    const EVERY: [Feature; 5] = [
        Feature::Time,
        Feature::Lock,
        Feature::Sched,
        Feature::Ipi,
        Feature::Preempt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Time => "time",
            Feature::Lock => "lock",
            Feature::Sched => "sched",
            Feature::Ipi => "ipi",
            Feature::Preempt => "preempt",
        }
    }

    /// The features pvhost has for `arch`, in the `pv:` line's order.
    pub fn of(arch: Arch) -> &'static [Feature] {
        match arch {
            Arch::Aarch64 => &[Feature::Time, Feature::Lock, Feature::Sched],
            Arch::Loongarch64 => &[Feature::Time, Feature::Ipi, Feature::Preempt],
        }
    }
}

/// `--offer`: which features pvhost offers when PV is on (`--pv off` offers
/// none): `all`, `none`, or a list such as `time,ipi`. aarch64 pvhost gets
/// `pvhost.time/lock/sched=off` for those left out, the LoongArch model
/// `pvhost-steal-time/ipi/preempt=off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer(u8);

impl Offer {
    pub const ALL: Offer = Offer(0x1f);
    pub const NONE: Offer = Offer(0);

    /// Only `features`.
    pub const fn only(features: &[Feature]) -> Offer {
        let mut bits = 0;
        let mut i = 0;
        while i < features.len() {
            bits |= 1 << features[i] as u8;
            i += 1;
        }
        Offer(bits)
    }

    pub fn has(self, feature: Feature) -> bool {
        self.0 & 1 << feature as u8 != 0
    }

    /// `all`, `none` or `FEATURE[,FEATURE...]` (any arch's names; [`Offer::check`]
    /// says whether they fit the guest's).
    pub fn parse(text: &str) -> Result<Offer> {
        match text {
            "all" => return Ok(Offer::ALL),
            "none" => return Ok(Offer::NONE),
            _ => {}
        }
        let mut bits = 0;
        for word in text.split(',') {
            let feature = Feature::EVERY
                .into_iter()
                .find(|f| f.name() == word)
                .ok_or_else(|| {
                    anyhow!(
                        "--offer {text:?}: unknown feature {word:?}; expected all, none or a list \
                         of time, lock, sched (aarch64) or time, ipi, preempt (loongarch64)"
                    )
                })?;
            bits |= 1 << feature as u8;
        }
        Ok(Offer(bits))
    }

    /// Fails if a feature listed is not one `arch`'s pvhost has.
    pub fn check(self, arch: Arch) -> Result<()> {
        if self == Offer::ALL {
            return Ok(());
        }
        let own = Feature::of(arch);
        if let Some(f) = Feature::EVERY
            .into_iter()
            .find(|&f| self.has(f) && !own.contains(&f))
        {
            let names: Vec<&str> = own.iter().map(|f| f.name()).collect();
            bail!(
                "--offer: {} guests' pvhost has no `{}`; its features: {}",
                arch.name(),
                f.name(),
                names.join(", ")
            );
        }
        Ok(())
    }
}

/// The settings of a pvhost host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `pvhost.pv=`: offer PV time, PV lock v2 and PV sched (LoongArch:
    /// IPI, STEAL_TIME, PREEMPT), or none of them.
    pub pv: Pv,
    /// With `pv` on, the features offered ([`Offer::ALL`]: every one).
    pub offer: Offer,
    /// `pvhost.steal=`: the preemption injector's policy.
    pub steal: &'static str,
    /// `pvhost.fault=`: a host fault to inject (`none`, `drop-kicks`).
    pub fault: &'static str,
}

impl Settings {
    /// Whether `feature` is offered.
    pub fn offers(&self, feature: Feature) -> bool {
        self.pv == Pv::On && self.offer.has(feature)
    }
}

impl Settings {
    pub const DEFAULT: Settings = Settings {
        pv: Pv::On,
        offer: Offer::ALL,
        steal: "none",
        fault: "none",
    };
}

/// The `--steal` forms, for the message about a bad one.
pub const STEAL_FORMS: &str = "none; periodic:PERIOD,SHARE[,PHASE] (periodic:10ms,50%,2.5ms, \
     or periodic:period=10ms,share=50%,phase=2.5ms, or periodic:PERIOD_US,SHARE_PCT[,PHASE_US] \
     as in periodic:10000,50,2500); random:SEED,MEAN_RUN,MEAN_STEAL (random:seed=7,run=3ms,steal=2ms, \
     or random:SEED,MEAN_RUN_US,MEAN_STEAL_US as in random:7,3000,2000); any of them followed by \
     @STOP (@2s, @500ms, or @STOP_MS as in @2000): no preemption from then on. \
     Times take us, ms or s (a bare number: us, and ms after @); a share takes % (bare: per cent)";

/// `--steal` as people write it, in the form pvhost parses
/// (`host/src/policy.rs`: `periodic:PERIOD_US,SHARE_PCT[,PHASE_US]`,
/// `random:SEED,MEAN_RUN_US,MEAN_STEAL_US`, `@STOP_MS`): units (`10ms`,
/// `2.5ms`, `50%`, `@2s`) and the keyed forms become those numbers; the
/// old forms pass unchanged. An error names the valid forms.
pub fn normalize_steal(steal: &str) -> Result<String> {
    normalize(steal.trim())
        .map_err(|why| anyhow!("--steal {steal:?}: {why}; expected {STEAL_FORMS}"))
}

fn normalize(steal: &str) -> Result<String, String> {
    let (policy, stop) = match steal.split_once('@') {
        Some((policy, stop)) => (policy, Some(stop)),
        None => (steal, None),
    };
    let mut out = if policy == "none" {
        policy.to_owned()
    } else if let Some(rest) = policy.strip_prefix("periodic:") {
        let [period, share, phase] = fields(rest, &["period", "share", "phase"], 2)?;
        let period = duration(period.unwrap_or_default(), Unit::Us, "PERIOD")?;
        let share = percent(share.unwrap_or_default())?;
        if period == 0 {
            return Err("the period must be at least 1 us".into());
        }
        match phase {
            Some(phase) => format!(
                "periodic:{period},{share},{}",
                duration(phase, Unit::Us, "PHASE")?
            ),
            None => format!("periodic:{period},{share}"),
        }
    } else if let Some(rest) = policy.strip_prefix("random:") {
        let [seed, run, stolen] = fields(rest, &["seed", "run", "steal"], 3)?;
        let seed = seed.unwrap_or_default();
        let seed: u64 = digits(seed)
            .then(|| seed.parse().ok())
            .flatten()
            .ok_or_else(|| format!("the seed {seed:?} is not a decimal number"))?;
        let run = duration(run.unwrap_or_default(), Unit::Us, "MEAN_RUN")?;
        let stolen = duration(stolen.unwrap_or_default(), Unit::Us, "MEAN_STEAL")?;
        if run == 0 || stolen == 0 {
            return Err("the means must be at least 1 us".into());
        }
        format!("random:{seed},{run},{stolen}")
    } else {
        return Err(format!("unknown policy {policy:?}"));
    };
    if let Some(stop) = stop {
        out.push_str(&format!("@{}", duration(stop, Unit::Ms, "STOP")?));
    }
    Ok(out)
}

/// The unit of a time: what a bare number means, and what the result is in.
#[derive(Clone, Copy)]
enum Unit {
    Us,
    Ms,
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `N` comma-separated values, positional (`a,b,c`) or keyed (`k=a,...`,
/// any order), at least `least` of them.
fn fields<'a, const N: usize>(
    text: &'a str,
    keys: &[&str; N],
    least: usize,
) -> Result<[Option<&'a str>; N], String> {
    let parts: Vec<&str> = text.split(',').collect();
    let mut out = [None; N];
    if parts.len() > N {
        return Err(format!("{} values, at most {N}", parts.len()));
    }
    let keyed = parts.iter().any(|p| p.contains('='));
    for (i, part) in parts.iter().enumerate() {
        let (slot, value) = if keyed {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: name every value (KEY=VALUE) or none"))?;
            let slot = keys
                .iter()
                .position(|k| *k == key)
                .ok_or_else(|| format!("unknown key {key:?} (keys: {})", keys.join(", ")))?;
            (slot, value)
        } else {
            (i, *part)
        };
        if out[slot].replace(value).is_some() {
            return Err(format!("{} given twice", keys[slot]));
        }
    }
    if let Some(missing) = (0..least).find(|&i| out[i].is_none()) {
        return Err(format!("no {}", keys[missing]));
    }
    Ok(out)
}

/// A time in `unit`: `2500` (bare: in `unit`), `2.5ms`, `10us`, `2s`;
/// whole units only.
fn duration(text: &str, unit: Unit, what: &str) -> Result<u64, String> {
    let (number, ns_per) = [("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9)]
        .into_iter()
        .find_map(|(suffix, ns)| text.strip_suffix(suffix).map(|n| (n, ns)))
        .unwrap_or((
            text,
            match unit {
                Unit::Us => 1e3,
                Unit::Ms => 1e6,
            },
        ));
    let unit_ns = match unit {
        Unit::Us => 1e3,
        Unit::Ms => 1e6,
    };
    let value = decimal(number).ok_or_else(|| format!("{what} {text:?} is not a time"))?;
    let units = value * ns_per / unit_ns;
    if units.fract().abs() > 1e-9 || units > 1e15 {
        let name = match unit {
            Unit::Us => "us",
            Unit::Ms => "ms",
        };
        return Err(format!("{what} {text:?} is not a whole number of {name}"));
    }
    Ok(units.round() as u64)
}

/// A share: `50%` or `50`, a whole per cent from 1 to 99.
fn percent(text: &str) -> Result<u64, String> {
    let number = text.strip_suffix('%').unwrap_or(text);
    match number.parse::<u64>() {
        Ok(pct) if digits(number) && (1..=99).contains(&pct) => Ok(pct),
        _ => Err(format!(
            "SHARE {text:?} is not a whole per cent from 1 to 99"
        )),
    }
}

/// `12`, `2.5`: digits with at most one point inside.
fn decimal(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    (digits(whole) && digits(fraction)).then(|| text.parse().ok())?
}

/// `cargo SUBCOMMAND -p host --release --target aarch64-unknown-none`.
fn cargo_host(subcommand: &str) -> Command {
    let mut cargo = cmd::cargo();
    cargo
        .args([subcommand, "-p", PACKAGE, "--release", "--target"])
        .arg(Arch::Aarch64.triple());
    cargo
}

/// Builds pvhost and returns its ELF.
pub fn build() -> Result<PathBuf> {
    cmd::run(&mut cargo_host("build"))?;
    let elf = cmd::target_dir()
        .join(Arch::Aarch64.triple())
        .join("release")
        .join(BINARY);
    if !elf.is_file() {
        bail!("the build succeeded but {} is missing", elf.display());
    }
    Ok(elf)
}

/// The lint step of `cargo xtask test` for pvhost's EL2 code (the
/// workspace's host-side clippy sees only its logic and a stub).
pub fn clippy() -> Command {
    let mut clippy = cargo_host("clippy");
    clippy.args(["--", "-D", "warnings"]);
    clippy
}

/// pvhost's command line: its own arguments, then the guest's.
pub fn append(settings: Settings, bootargs: &str) -> String {
    // The fault only when there is one: the command line stays as it was.
    let fault = match settings.fault {
        "none" => String::new(),
        fault => format!(" pvhost.fault={fault}"),
    };
    // Only the features left out, after pvhost.pv: the default line stays.
    let off: String = Feature::of(Arch::Aarch64)
        .iter()
        .filter(|&&f| settings.pv == Pv::On && !settings.offer.has(f))
        .map(|f| format!(" pvhost.{}=off", f.name()))
        .collect();
    format!(
        "pvhost.elf={GUEST_ELF_PA:#x} pvhost.pv={}{off} pvhost.steal={}{fault} -- {bootargs}",
        settings.pv.name(),
        settings.steal
    )
}

/// The QEMU that boots `boot` under the pvhost at `pvhost`.
pub fn command(boot: &Boot, settings: Settings, pvhost: &Path) -> Result<Command> {
    let size = std::fs::metadata(&boot.image)?.len();
    if size > RAM_END - GUEST_ELF_PA {
        bail!(
            "the guest image {} is {size} bytes: pvhost stages at most {} MiB",
            boot.image.display(),
            (RAM_END - GUEST_ELF_PA) >> 20
        );
    }
    let mut command = Command::new(Arch::Aarch64.qemu());
    command
        .args(Arch::Aarch64.machine_args(true)?)
        .arg("-smp")
        .arg(boot.smp.to_string())
        .args(["-m", MACHINE_MEMORY])
        .args(["-nodefaults", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(pvhost)
        .arg("-device")
        .arg(format!(
            "loader,file={},addr={GUEST_ELF_PA:#x},force-raw=on",
            boot.image.display()
        ))
        .arg("-append")
        .arg(append(settings, &boot.bootargs));
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(steal: &str) -> String {
        normalize_steal(steal).unwrap_or_else(|e| panic!("{steal}: {e:#}"))
    }

    #[test]
    fn the_old_forms_pass_unchanged() {
        for old in [
            "none",
            "periodic:1000,50",
            "periodic:1000,50,250",
            "random:1,500,100",
            "periodic:1000,50@2000",
            "none@0",
            "periodic:10000,50,2500",
        ] {
            assert_eq!(normal(old), old);
        }
    }

    #[test]
    fn periodic_takes_units() {
        assert_eq!(normal("periodic:10ms,50%"), "periodic:10000,50");
        assert_eq!(normal("periodic:10ms,50%,2.5ms"), "periodic:10000,50,2500");
        assert_eq!(
            normal("periodic:10000us,50,2500µs"),
            "periodic:10000,50,2500"
        );
        assert_eq!(normal("periodic:1s,25%"), "periodic:1000000,25");
        assert_eq!(
            normal("periodic:share=50%,period=10ms,phase=2.5ms"),
            "periodic:10000,50,2500"
        );
        assert_eq!(normal("periodic:period=10ms,share=50"), "periodic:10000,50");
    }

    #[test]
    fn random_takes_keys_and_units() {
        assert_eq!(
            normal("random:seed=7,run=3ms,steal=2ms"),
            "random:7,3000,2000"
        );
        assert_eq!(
            normal("random:steal=500,seed=1,run=1.5ms"),
            "random:1,1500,500"
        );
        assert_eq!(normal("random:7,3ms,2ms"), "random:7,3000,2000");
    }

    #[test]
    fn stop_takes_units() {
        assert_eq!(normal("periodic:10ms,50%@2s"), "periodic:10000,50@2000");
        assert_eq!(
            normal("random:seed=7,run=3ms,steal=2ms@1.5s"),
            "random:7,3000,2000@1500"
        );
        assert_eq!(normal("none@500ms"), "none@500");
        assert_eq!(normal("periodic:1000,50@2000"), "periodic:1000,50@2000");
    }

    #[test]
    fn bad_policies_name_the_valid_forms() {
        for bad in [
            "",
            "periodic:1000",
            "periodic:1000,50,1,1",
            "periodic:10,x",
            "periodic:10ms,0%",
            "periodic:10ms,100%",
            "periodic:0,50",
            "periodic:10ms,50%,2.5us",
            "periodic:period=10ms,50%",
            "periodic:period=10ms,period=5ms,share=5",
            "periodic:length=10ms,share=5",
            "random:1,2",
            "random:1,,2",
            "random:seed=7,run=3ms",
            "random:seed=x,run=3ms,steal=2ms",
            "random:1,0,5",
            "sometimes",
            "periodic:1000,50@",
            "periodic:1000,50@2@3",
            "periodic:1000,50@1.5ms",
            "periodic:10mins,50",
            "periodic:-10,50",
            "@5",
        ] {
            let err = normalize_steal(bad).unwrap_err().to_string();
            assert!(err.contains("periodic:10ms,50%,2.5ms"), "{bad}: {err}");
            assert!(
                err.contains("random:seed=7,run=3ms,steal=2ms"),
                "{bad}: {err}"
            );
            assert!(err.contains("@STOP_MS"), "{bad}: {err}");
        }
        let err = normalize_steal("random:seed=7,run=3ms").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--steal \"random:seed=7,run=3ms\": no steal;"),
            "{err}"
        );
    }

    #[test]
    fn command_line_puts_the_guest_after_the_separator() {
        let s = Settings {
            pv: Pv::Off,
            steal: "periodic:1000,50",
            ..Settings::DEFAULT
        };
        assert_eq!(
            append(s, "app=x -- a"),
            "pvhost.elf=0x58000000 pvhost.pv=off pvhost.steal=periodic:1000,50 -- app=x -- a"
        );
    }

    #[test]
    fn offers_name_each_arch_own_features() {
        let time_only = Settings {
            offer: Offer::parse("time").unwrap(),
            ..Settings::DEFAULT
        };
        assert_eq!(
            append(time_only, "app=x"),
            "pvhost.elf=0x58000000 pvhost.pv=on pvhost.lock=off pvhost.sched=off \
             pvhost.steal=none -- app=x"
        );
        assert!(time_only.offers(Feature::Time) && !time_only.offers(Feature::Lock));
        let off = Settings {
            pv: Pv::Off,
            ..time_only
        };
        assert!(!off.offers(Feature::Time));
        assert_eq!(Offer::parse("all").unwrap(), Offer::ALL);
        assert_eq!(Offer::parse("none").unwrap(), Offer::NONE);
        assert_eq!(
            Offer::parse("ipi,preempt").unwrap(),
            Offer::only(&[Feature::Ipi, Feature::Preempt])
        );
        let err = Offer::parse("time,steal").unwrap_err().to_string();
        assert!(err.contains("unknown feature \"steal\""), "{err}");
        let ipi = Offer::only(&[Feature::Ipi]);
        assert!(ipi.check(Arch::Loongarch64).is_ok());
        let err = ipi.check(Arch::Aarch64).unwrap_err().to_string();
        assert!(
            err.contains("has no `ipi`; its features: time, lock, sched"),
            "{err}"
        );
        assert!(Offer::only(&[Feature::Lock])
            .check(Arch::Loongarch64)
            .is_err());
        assert!(Offer::ALL.check(Arch::Aarch64).is_ok());
    }

    #[test]
    fn the_staging_address_is_above_pvhost() {
        let link = std::fs::read_to_string(cmd::workspace_root().join("host/link.ld")).unwrap();
        assert!(
            link.contains(". = 0x50000000;"),
            "pvhost's link address moved"
        );
        // 256 MiB of guest RAM below pvhost, as on every other host.
        assert_eq!(crate::qemu::GUEST_MEMORY.to_string(), "256M");
        const { assert!(GUEST_ELF_PA > 0x5000_0000 + (16 << 20)) };
    }
}
