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
pvhost.sched=on|off pvhost.steal=POLICY pvhost.fault=none|drop-kicks|stuck-preempted pvhost.elf=ADDR [-- GUEST ARGS], where POLICY is \
(none | periodic:PERIOD_US,SHARE_PCT[,PHASE_US] | random:SEED,MEAN_RUN_US,MEAN_STEAL_US)[@STOP_MS]";

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
/// fallbacks to meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// PV sched's KICK_CPU answers success and wakes nobody: every halt of
    /// a lock waiter must end another way (the guest's tick).
    DropKicks,
    /// Every vCPU's preempted flags (PV lock, PV sched) read 1, always.
    StuckPreempted,
}

impl Fault {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Fault::None),
            "drop-kicks" => Some(Fault::DropKicks),
            "stuck-preempted" => Some(Fault::StuckPreempted),
            _ => None,
        }
    }
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
                    fault = Some(
                        Fault::parse(value)
                            .ok_or(err("the fault must be none, drop-kicks or stuck-preempted"))?,
                    );
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
        let e = Args::parse("pvhost.fault=lose").unwrap_err();
        assert_eq!(
            e.why,
            "the fault must be none, drop-kicks or stuck-preempted"
        );
        assert_eq!(
            Args::parse("pvhost.fault=none pvhost.fault=none")
                .unwrap_err()
                .why,
            "repeated"
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
