//! pvhost's command line (QEMU `-append`, read from `/chosen/bootargs`):
//!
//! ```text
//! [pvhost.KEY=VALUE ...] [-- GUEST COMMAND LINE]
//! ```
//!
//! Everything after the first `--` word is the guest's own command line,
//! passed through verbatim to the guest's FDT (it may contain `--` itself:
//! lodger's app arguments). Before it every word must be a known
//! `pvhost.KEY=VALUE`; an unknown key, a repeated key or a bad value is an
//! error naming the word.

use core::fmt;

use crate::policy::{self, Steal};

/// The usage text.
pub const USAGE: &str = "pvhost.pv=on|off pvhost.time=on|off pvhost.lock=on|off \
pvhost.sched=on|off pvhost.steal=POLICY pvhost.fault=FAULT pvhost.elf=ADDR [-- GUEST ARGS], where POLICY is \
(none | periodic:PERIOD_US,SHARE_PCT[,PHASE_US] | random:SEED,MEAN_RUN_US,MEAN_STEAL_US)[@STOP_MS] and FAULT is \
none | drop-kicks | delay-kicks | stuck-preempted | garbage-features | \
(refuse-register | ipa-outside-ram | ipa-in-guest-ram | ipa-misaligned | steal-backwards | steal-jump):VCPU";

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args<'a> {
    /// Offer PV time (0xC500_0020/21).
    pub time: bool,
    /// Offer PV lock v2 (0xC600_0020/21).
    pub lock: bool,
    /// Offer PV sched (0xC500_0090..93).
    pub sched: bool,
    /// The preemption injector's policy.
    pub steal: Steal,
    /// A host fault to inject.
    pub fault: Fault,
    /// Physical address where QEMU's loader put the guest's ELF file
    /// (`-device loader,file=GUEST,addr=ADDR,force-raw=on`).
    pub elf_pa: Option<u64>,
    /// The guest's command line.
    pub guest: &'a str,
}

/// A host fault pvhost injects (`pvhost.fault=`), for the guest's
/// fallbacks to meet. The ones that name a vCPU hit that vCPU only, so the
/// guest must fall back there and keep PV on the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// PV sched's KICK_CPU answers success and wakes nobody: every halt of
    /// a lock waiter must end another way (the guest's tick).
    DropKicks,
    /// PV sched's KICK_CPU answers success and takes effect
    /// [`KICK_DELAY_NS`] later: the target's halts until then end another
    /// way, and its first halt after that ends at once, for nothing.
    DelayKicks,
    /// Every vCPU's preempted flags (PV lock, PV sched) read 1, always.
    StuckPreempted,
    /// The feature queries (SMCCC_ARCH_FEATURES of a PV function,
    /// PV_TIME/LOCK/SCHED_FEATURES) answer nonsense: neither 0 nor an
    /// SMCCC error code ([`garbage`]).
    GarbageFeatures,
    /// The vCPU's registrations fail: PV_TIME_ST and PV_LOCK_PREEMPTED
    /// answer NOT_SUPPORTED, PV_SCHED_IPA_INIT INVALID_PARAMETER.
    RefuseRegister(usize),
    /// PV_TIME_ST and PV_LOCK_PREEMPTED hand the vCPU [`IPA_OUTSIDE_RAM`]:
    /// aligned, below the ABI's IPA limit, and no memory at all.
    IpaOutsideRam(usize),
    /// PV_TIME_ST and PV_LOCK_PREEMPTED hand the vCPU an aligned IPA inside
    /// the guest's own RAM: memory the guest allocates, not the host's.
    IpaInGuestRam(usize),
    /// PV_TIME_ST and PV_LOCK_PREEMPTED hand the vCPU its record's IPA + 8.
    IpaMisaligned(usize),
    /// From the vCPU's second preemption after its PV_TIME_ST on (the
    /// guest has used the record by then), its stolen-time record goes back
    /// to half of what it held instead of forward.
    StealBackwards(usize),
    /// At each of the vCPU's preemptions after its PV_TIME_ST its
    /// stolen-time record jumps ahead by [`STEAL_JUMP_NS`] besides the
    /// steal (more than the guest can have run). Every one, not just one:
    /// one that fell between the call and the guest's first reading of the
    /// record would look like steal from before registration.
    StealJump(usize),
}

/// How late [`Fault::DelayKicks`] makes a kick.
pub const KICK_DELAY_NS: u64 = 50_000_000;
/// What [`Fault::StealJump`] adds to the record: three hours.
pub const STEAL_JUMP_NS: u64 = 3 * 3600 * 1_000_000_000;
/// What [`Fault::IpaOutsideRam`] hands out: 16 TiB, past every RAM and
/// device region of QEMU `virt` (and past what a 39-bit guest maps), yet
/// below `arch::abi::arm64::IPA_LIMIT`.
pub const IPA_OUTSIDE_RAM: u64 = 1 << 44;

const FAULT_FORMS: &str = "the fault must be none, drop-kicks, delay-kicks, stuck-preempted, \
garbage-features, or refuse-register, ipa-outside-ram, ipa-in-guest-ram, ipa-misaligned, \
steal-backwards or steal-jump followed by :VCPU (below 16)";

impl Fault {
    fn parse(value: &str) -> Option<Self> {
        let simple = match value {
            "none" => Some(Fault::None),
            "drop-kicks" => Some(Fault::DropKicks),
            "delay-kicks" => Some(Fault::DelayKicks),
            "stuck-preempted" => Some(Fault::StuckPreempted),
            "garbage-features" => Some(Fault::GarbageFeatures),
            _ => None,
        };
        if simple.is_some() {
            return simple;
        }
        let (name, vcpu) = value.split_once(':')?;
        let vcpu = usize::try_from(policy::parse_u64(vcpu)?)
            .ok()
            .filter(|&v| v < crate::MAX_VCPUS)?;
        Some(match name {
            "refuse-register" => Fault::RefuseRegister(vcpu),
            "ipa-outside-ram" => Fault::IpaOutsideRam(vcpu),
            "ipa-in-guest-ram" => Fault::IpaInGuestRam(vcpu),
            "ipa-misaligned" => Fault::IpaMisaligned(vcpu),
            "steal-backwards" => Fault::StealBackwards(vcpu),
            "steal-jump" => Fault::StealJump(vcpu),
            _ => return None,
        })
    }

    /// What vCPU `vcpu`'s stolen-time record holds after its `nth`
    /// preemption since its PV_TIME_ST (1, 2, ...; 0 before the call) took
    /// `stolen_ns`, the record holding `record` before it: `record +
    /// stolen_ns`, unless this fault says otherwise.
    pub fn steal_record(self, vcpu: usize, nth: u64, record: u64, stolen_ns: u64) -> u64 {
        match self {
            Fault::StealBackwards(v) if v == vcpu && nth >= 2 => record / 2,
            Fault::StealJump(v) if v == vcpu && nth >= 1 => record + stolen_ns + STEAL_JUMP_NS,
            _ => record + stolen_ns,
        }
    }
}

/// [`Fault::GarbageFeatures`]' answer to `function(arg)`: the same every
/// time for the same question, and never 0 nor -1, -2 or -3, so that no
/// reading of it as an SMCCC status is right. Random in sign and size.
pub fn garbage(function: u32, arg: u64) -> u64 {
    let mut rng = policy::SplitMix64::new(u64::from(function) << 32 ^ arg);
    let mut value = rng.next_u64();
    // Small values, negative ones too, now and then: they look most like
    // real answers.
    if value & 3 == 0 {
        value = ((value >> 8) as i64 % 1000) as u64;
    }
    if matches!(value as i64, -3..=0) {
        value = 0x5eed_0000 | value & 0xff;
    }
    value
}

/// A word pvhost could not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgError<'a> {
    pub word: &'a str,
    pub why: &'static str,
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad argument `{}`: {}", self.word, self.why)
    }
}

fn on_off(value: &str) -> Option<bool> {
    match value {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// A hexadecimal (`0x...`) or decimal address.
pub fn parse_addr(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None => policy::parse_u64(s),
    }
}

/// Splits `line` at its first `--` word: (pvhost's part, the guest's line).
fn split_guest(line: &str) -> (&str, &str) {
    let mut rest = line;
    let mut offset = 0;
    while let Some(word_start) = rest.find(|c: char| !c.is_whitespace()) {
        let from = &rest[word_start..];
        let len = from.find(char::is_whitespace).unwrap_or(from.len());
        if &from[..len] == "--" {
            let host = &line[..offset + word_start];
            let guest = from[len..].trim_start();
            return (host, guest);
        }
        offset += word_start + len;
        rest = &from[len..];
    }
    (line, "")
}

impl<'a> Args<'a> {
    pub fn parse(line: &'a str) -> Result<Args<'a>, ArgError<'a>> {
        let (host, guest) = split_guest(line);
        let mut pv = None;
        let mut switches: [Option<bool>; 3] = [None; 3];
        let mut steal = None;
        let mut elf_pa = None;
        let mut fault = None;
        for word in host.split_whitespace() {
            let err = |why| ArgError { word, why };
            let (key, value) = word.split_once('=').ok_or(err(
                "not KEY=VALUE (pvhost's own arguments come before `--`)",
            ))?;
            let slot = match key {
                "pvhost.pv" => &mut pv,
                "pvhost.time" => &mut switches[0],
                "pvhost.lock" => &mut switches[1],
                "pvhost.sched" => &mut switches[2],
                "pvhost.steal" => {
                    if steal.is_some() {
                        return Err(err("repeated"));
                    }
                    steal = Some(Steal::parse(value).map_err(|e| err(e.0))?);
                    continue;
                }
                "pvhost.fault" => {
                    if fault.is_some() {
                        return Err(err("repeated"));
                    }
                    fault = Some(Fault::parse(value).ok_or(err(FAULT_FORMS))?);
                    continue;
                }
                "pvhost.elf" => {
                    if elf_pa.is_some() {
                        return Err(err("repeated"));
                    }
                    elf_pa = Some(parse_addr(value).ok_or(err("not an address"))?);
                    continue;
                }
                _ => return Err(err("unknown key")),
            };
            if slot.is_some() {
                return Err(err("repeated"));
            }
            *slot = Some(on_off(value).ok_or(err("the value must be on or off"))?);
        }
        let default = pv.unwrap_or(true);
        Ok(Args {
            time: switches[0].unwrap_or(default),
            lock: switches[1].unwrap_or(default),
            sched: switches[2].unwrap_or(default),
            steal: steal.unwrap_or(Steal::NONE),
            fault: fault.unwrap_or(Fault::None),
            elf_pa,
            guest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn faults_by_name() {
        assert_eq!(Args::parse("").unwrap().fault, Fault::None);
        let a = Args::parse("pvhost.fault=drop-kicks -- app=x").unwrap();
        assert_eq!(a.fault, Fault::DropKicks);
        let a = Args::parse("pvhost.fault=stuck-preempted").unwrap();
        assert_eq!(a.fault, Fault::StuckPreempted);
        for (word, fault) in [
            ("delay-kicks", Fault::DelayKicks),
            ("garbage-features", Fault::GarbageFeatures),
            ("refuse-register:1", Fault::RefuseRegister(1)),
            ("ipa-outside-ram:0", Fault::IpaOutsideRam(0)),
            ("ipa-in-guest-ram:3", Fault::IpaInGuestRam(3)),
            ("ipa-misaligned:2", Fault::IpaMisaligned(2)),
            ("steal-backwards:15", Fault::StealBackwards(15)),
            ("steal-jump:1", Fault::StealJump(1)),
        ] {
            let line = format!("pvhost.fault={word}");
            assert_eq!(Args::parse(&line).unwrap().fault, fault, "{word}");
        }
        for bad in [
            "lose",
            "refuse-register",
            "refuse-register:",
            "refuse-register:16",
            "refuse-register:x",
            "drop-kicks:1",
            "steal-jump:-1",
        ] {
            let line = format!("pvhost.fault={bad}");
            assert_eq!(Args::parse(&line).unwrap_err().why, FAULT_FORMS, "{bad}");
        }
        assert_eq!(
            Args::parse("pvhost.fault=none pvhost.fault=none")
                .unwrap_err()
                .why,
            "repeated"
        );
    }

    #[test]
    fn faulty_steal_records() {
        let ok = Fault::None;
        assert_eq!(ok.steal_record(1, 2, 100, 10), 110);
        let back = Fault::StealBackwards(1);
        assert_eq!(back.steal_record(1, 1, 0, 10), 10);
        assert_eq!(back.steal_record(1, 2, 10, 10), 5);
        assert_eq!(back.steal_record(1, 3, 5, 10), 2);
        assert_eq!(back.steal_record(0, 2, 10, 10), 20, "other vCPUs count on");
        let jump = Fault::StealJump(1);
        assert_eq!(jump.steal_record(1, 0, 0, 10), 10, "before PV_TIME_ST");
        assert_eq!(jump.steal_record(1, 1, 0, 10), 10 + STEAL_JUMP_NS);
        assert_eq!(jump.steal_record(1, 2, 10, 10), 20 + STEAL_JUMP_NS);
        assert_eq!(jump.steal_record(2, 2, 10, 10), 20);
    }

    #[test]
    fn garbage_is_never_an_smccc_status_and_always_the_same() {
        let mut small = 0;
        let mut negative = 0;
        for function in [0x8000_0001u32, 0xC500_0020, 0xC600_0020, 0xC500_0090] {
            for arg in 0..2000u64 {
                let g = garbage(function, arg);
                assert!(!matches!(g as i64, -3..=0), "{function:#x}({arg}) = {g:#x}");
                assert_eq!(g, garbage(function, arg));
                small += u32::from((g as i64).unsigned_abs() < 1000);
                negative += u32::from((g as i64) < 0);
            }
        }
        assert!(
            small > 100 && negative > 100,
            "{small} small, {negative} negative"
        );
    }

    #[test]
    fn defaults_offer_everything_and_never_preempt() {
        let a = Args::parse("").unwrap();
        assert!(a.time && a.lock && a.sched);
        assert_eq!(a.steal, Steal::NONE);
        assert_eq!(a.elf_pa, None);
        assert_eq!(a.guest, "");
    }

    #[test]
    fn guest_line_is_everything_after_the_first_double_dash() {
        let a = Args::parse("pvhost.lock=off -- app=selftest pv=off -- ms=5").unwrap();
        assert!(!a.lock && a.time && a.sched);
        assert_eq!(a.guest, "app=selftest pv=off -- ms=5");
        assert_eq!(Args::parse("--").unwrap().guest, "");
        assert_eq!(Args::parse("  --   app=x ").unwrap().guest, "app=x ");
        // `--x` is not the separator.
        assert!(Args::parse("--x").is_err());
    }

    #[test]
    fn switches_and_pv_default() {
        let a = Args::parse("pvhost.pv=off pvhost.sched=on").unwrap();
        assert!(!a.time && !a.lock && a.sched);
        let a = Args::parse("pvhost.time=off").unwrap();
        assert!(!a.time && a.lock && a.sched);
    }

    #[test]
    fn steal_and_elf() {
        let a = Args::parse("pvhost.steal=periodic:1000,50@9 pvhost.elf=0x58000000").unwrap();
        assert_eq!(
            a.steal,
            Steal {
                policy: Policy::Periodic {
                    period_us: 1000,
                    share_pct: 50,
                    phase_us: 0
                },
                stop_ms: Some(9)
            }
        );
        assert_eq!(a.elf_pa, Some(0x5800_0000));
        assert_eq!(
            Args::parse("pvhost.elf=1476395008").unwrap().elf_pa,
            Some(0x5800_0000)
        );
    }

    #[test]
    fn errors_name_the_word() {
        for (line, word) in [
            ("app=selftest", "app=selftest"),
            ("pvhost.time=maybe", "pvhost.time=maybe"),
            ("pvhost.time=on pvhost.time=off", "pvhost.time=off"),
            ("pvhost.steal=periodic:0,5", "pvhost.steal=periodic:0,5"),
            ("pvhost.steal=none pvhost.steal=none", "pvhost.steal=none"),
            ("pvhost.elf=0x", "pvhost.elf=0x"),
            ("pvhost.elf=0xZZ", "pvhost.elf=0xZZ"),
            ("pvhost.nope=1 -- app=x", "pvhost.nope=1"),
            ("selftest -- app=x", "selftest"),
        ] {
            let e = Args::parse(line).unwrap_err();
            assert_eq!(e.word, word, "{line:?}: {e}");
        }
    }
}
