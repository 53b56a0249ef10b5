//! Boot arguments from `/chosen/bootargs`:
//!
//! ```text
//! app=NAME [log=LEVEL] [pv=on|off] [pv.time=on|off] [pv.lock=off|v2|v3]
//!          [pv.sched=on|off] [pv.ipi=on|off] [lock.spin=auto|N]
//!          [lock.unqueued=auto|N] [lock.steals=auto|unbounded|N] [no-steal-acc] [-- APP-ARGUMENT ...]
//! ```
//!
//! Kernel arguments are `key=value` pairs from [`KEYS`] and the bare flags
//! of [`FLAGS`] (Linux's names); everything after a lone `--` belongs to
//! the app. Anything else is an error that names the offending token and
//! lists what is valid: the kernel never guesses.

use core::fmt;

use arch::pv::{LockChoice, PvSwitches};
use heapless::Vec;

/// The most arguments an app can be given.
pub const MAX_APP_ARGS: usize = 16;

/// The app run when the boot arguments name none.
pub const DEFAULT_APP: &str = "selftest";

/// Every kernel argument: key and a description of its values.
pub const KEYS: &[(&str, &str)] = &[
    ("app", "NAME of the app to run"),
    ("log", "error|warn|info|debug|trace"),
    ("pv", "on|off"),
    ("pv.time", "on|off"),
    ("pv.lock", LockChoice::VALUES),
    ("pv.sched", "on|off"),
    ("pv.ipi", "on|off"),
    (
        "lock.spin",
        "auto|N spins before a qspinlock waiter halts, 1..=1048576",
    ),
    (
        "lock.unqueued",
        "auto|N spins for a held qspinlock before queueing, 0..=1048576",
    ),
    (
        "lock.steals",
        "auto|unbounded|N qspinlock steals past a queue head before its turn, 0..=63",
    ),
];

/// Every bare flag: name and what it does.
pub const FLAGS: &[(&str, &str)] = &[(
    "no-steal-acc",
    "read the steal clock but keep steal in the scheduler's run time",
)];

/// The largest `lock.spin=N`: a halt is bounded by the tick anyway.
pub const MAX_LOCK_SPIN: u32 = 1 << 20;
/// The largest `lock.steals=N`: what the lock word counts.
pub const MAX_STEAL_BUDGET: u32 = crate::sync::qspinlock::STEALS_MAX;

const LOG_LEVELS: &[(&str, log::LevelFilter)] = &[
    ("error", log::LevelFilter::Error),
    ("warn", log::LevelFilter::Warn),
    ("info", log::LevelFilter::Info),
    ("debug", log::LevelFilter::Debug),
    ("trace", log::LevelFilter::Trace),
];

/// Parsed boot arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs<'a> {
    pub app: &'a str,
    pub app_args: Vec<&'a str, MAX_APP_ARGS>,
    pub log_level: log::LevelFilter,
    pub pv: PvSwitches,
    /// `lock.spin=N`; `None` (`auto`, the default): measured at boot.
    pub spin_limit: Option<u32>,
    /// `lock.unqueued=N`; `None` (`auto`): chosen at boot.
    pub unqueued_spins: Option<u32>,
    /// `lock.steals=N` (`Some(Some(N))`) or `unbounded` (`Some(None)`);
    /// `None` (`auto`): chosen at boot.
    pub steal_budget: Option<Option<u32>>,
    /// Whether the scheduler takes steal out of run time (Linux's steal
    /// accounting); `no-steal-acc` clears it.
    pub steal_acc: bool,
}

/// What was wrong with the boot arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootArgError<'a> {
    /// A token that is neither `key=value` nor a flag (before `--`).
    NotKeyValue(&'a str),
    /// A key lodger does not know.
    UnknownKey(&'a str),
    /// A key given twice.
    Repeated(&'a str),
    /// A known key with a value it does not take.
    BadValue { key: &'a str, value: &'a str },
    /// More than [`MAX_APP_ARGS`] app arguments.
    TooManyAppArgs,
}

impl fmt::Display for BootArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKeyValue(t) => write!(
                f,
                "malformed boot argument `{t}`: expected key=value or a flag (app arguments go after `--`)"
            )?,
            Self::UnknownKey(k) => write!(f, "unknown boot argument `{k}`")?,
            Self::Repeated(k) => write!(f, "boot argument `{k}` given twice")?,
            Self::BadValue { key, value } => {
                write!(f, "bad value `{value}` for boot argument `{key}`")?
            }
            Self::TooManyAppArgs => return write!(f, "more than {MAX_APP_ARGS} app arguments"),
        }
        write!(f, "; valid arguments:")?;
        for (key, values) in KEYS {
            write!(f, " {key}=<{values}>")?;
        }
        for (flag, _) in FLAGS {
            write!(f, " {flag}")?;
        }
        write!(f, ", then `-- APP-ARGUMENTS`")
    }
}

/// Parses a boot argument string.
pub fn parse(line: &str) -> Result<BootArgs<'_>, BootArgError<'_>> {
    let mut args = BootArgs {
        app: DEFAULT_APP,
        app_args: Vec::new(),
        log_level: log::LevelFilter::Info,
        pv: PvSwitches::default(),
        spin_limit: None,
        unqueued_spins: None,
        steal_budget: None,
        steal_acc: true,
    };
    let mut seen: Vec<&str, { KEYS.len() + FLAGS.len() }> = Vec::new();
    let mut tokens = line.split_ascii_whitespace();
    for token in tokens.by_ref() {
        if token == "--" {
            break;
        }
        if let Some((flag, _)) = FLAGS.iter().find(|(f, _)| *f == token) {
            if seen.contains(flag) {
                return Err(BootArgError::Repeated(flag));
            }
            let _ = seen.push(flag);
            match *flag {
                "no-steal-acc" => args.steal_acc = false,
                _ => unreachable!("every flag of FLAGS is handled"),
            }
            continue;
        }
        let (key, value) = token
            .split_once('=')
            .ok_or(BootArgError::NotKeyValue(token))?;
        if !KEYS.iter().any(|(k, _)| *k == key) {
            return Err(BootArgError::UnknownKey(token));
        }
        if seen.contains(&key) {
            return Err(BootArgError::Repeated(key));
        }
        let _ = seen.push(key); // Fewer keys exist than `seen` holds.
        let bad = || BootArgError::BadValue { key, value };
        let on_off = || match value {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(bad()),
        };
        match key {
            "app" if !value.is_empty() => args.app = value,
            "log" => {
                args.log_level = LOG_LEVELS
                    .iter()
                    .find(|(name, _)| *name == value)
                    .map(|(_, level)| *level)
                    .ok_or_else(bad)?;
            }
            "pv" => args.pv.enabled = on_off()?,
            "pv.time" => args.pv.time = on_off()?,
            "pv.sched" => args.pv.sched = on_off()?,
            "pv.ipi" => args.pv.ipi = on_off()?,
            "pv.lock" => args.pv.lock = LockChoice::from_arg(value).ok_or_else(bad)?,
            "lock.spin" => {
                args.spin_limit = match value {
                    "auto" => None,
                    n => Some(
                        n.parse()
                            .ok()
                            .filter(|n| (1..=MAX_LOCK_SPIN).contains(n))
                            .ok_or_else(bad)?,
                    ),
                }
            }
            "lock.unqueued" => {
                args.unqueued_spins = match value {
                    "auto" => None,
                    n => Some(
                        n.parse()
                            .ok()
                            .filter(|n| *n <= MAX_LOCK_SPIN)
                            .ok_or_else(bad)?,
                    ),
                }
            }
            "lock.steals" => {
                args.steal_budget = match value {
                    "auto" => None,
                    "unbounded" => Some(None),
                    n => Some(Some(
                        n.parse()
                            .ok()
                            .filter(|n| *n <= MAX_STEAL_BUDGET)
                            .ok_or_else(bad)?,
                    )),
                }
            }
            _ => return Err(bad()),
        }
    }
    for token in tokens {
        args.app_args
            .push(token)
            .map_err(|_| BootArgError::TooManyAppArgs)?;
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arch::pv::arm64::LockAbi;

    #[test]
    fn empty_line_selects_defaults() {
        let args = parse("").unwrap();
        assert_eq!(args.app, DEFAULT_APP);
        assert!(args.app_args.is_empty());
        assert_eq!(args.log_level, log::LevelFilter::Info);
    }

    #[test]
    fn app_log_and_app_arguments() {
        let args = parse("  app=panic log=debug -- cpu=1  x ").unwrap();
        assert_eq!(args.app, "panic");
        assert_eq!(args.log_level, log::LevelFilter::Debug);
        assert_eq!(args.app_args.as_slice(), ["cpu=1", "x"]);
    }

    #[test]
    fn app_arguments_may_look_like_kernel_arguments() {
        let args = parse("-- app=other --").unwrap();
        assert_eq!(args.app, DEFAULT_APP);
        assert_eq!(args.app_args.as_slice(), ["app=other", "--"]);
    }

    #[test]
    fn errors_name_the_token_and_list_valid_keys() {
        assert_eq!(parse("bogus=1"), Err(BootArgError::UnknownKey("bogus=1")));
        assert_eq!(
            parse("selftest"),
            Err(BootArgError::NotKeyValue("selftest"))
        );
        assert_eq!(parse("app=a app=b"), Err(BootArgError::Repeated("app")));
        assert_eq!(
            parse("log=loud"),
            Err(BootArgError::BadValue {
                key: "log",
                value: "loud"
            })
        );
        assert_eq!(
            parse("app="),
            Err(BootArgError::BadValue {
                key: "app",
                value: ""
            })
        );
        let msg = parse("bogus=1").unwrap_err().to_string();
        assert!(msg.contains("unknown boot argument `bogus=1`"), "{msg}");
        assert!(msg.contains("app=<") && msg.contains("log=<"), "{msg}");
    }

    #[test]
    fn pv_switches() {
        let args = parse("pv.time=off pv.lock=v3 pv.sched=off pv.ipi=off").unwrap();
        let expected = PvSwitches {
            enabled: true,
            time: false,
            lock: LockChoice::Named(LockAbi::V3),
            sched: false,
            ipi: false,
        };
        assert_eq!(args.pv, expected);
        assert_eq!(parse("").unwrap().pv, PvSwitches::default());
        assert!(!parse("pv=off").unwrap().pv.enabled);
        assert_eq!(parse("pv.lock=off").unwrap().pv.lock, LockChoice::Off);
        assert_eq!(
            parse("pv.lock=v2").unwrap().pv.lock,
            LockChoice::Named(LockAbi::V2)
        );
        assert_eq!(
            parse("pv.lock=on"),
            Err(BootArgError::BadValue {
                key: "pv.lock",
                value: "on"
            })
        );
        assert_eq!(
            parse("pv=maybe"),
            Err(BootArgError::BadValue {
                key: "pv",
                value: "maybe"
            })
        );
        let msg = parse("pv.time=no").unwrap_err().to_string();
        assert!(
            msg.contains("pv.time=<on|off>") && msg.contains("pv.lock=<off|v2|v3>"),
            "{msg}"
        );
    }

    #[test]
    fn steal_budget() {
        assert_eq!(parse("").unwrap().steal_budget, None);
        assert_eq!(parse("lock.steals=auto").unwrap().steal_budget, None);
        assert_eq!(
            parse("lock.steals=unbounded").unwrap().steal_budget,
            Some(None)
        );
        assert_eq!(parse("lock.steals=0").unwrap().steal_budget, Some(Some(0)));
        assert_eq!(
            parse("lock.steals=63").unwrap().steal_budget,
            Some(Some(63))
        );
        for bad in ["64", "-1", "x", ""] {
            assert!(
                parse(&std::format!("lock.steals={bad}")).is_err(),
                "lock.steals={bad}"
            );
        }
    }

    #[test]
    fn unqueued_spins() {
        assert_eq!(parse("").unwrap().unqueued_spins, None);
        assert_eq!(parse("lock.unqueued=auto").unwrap().unqueued_spins, None);
        assert_eq!(parse("lock.unqueued=0").unwrap().unqueued_spins, Some(0));
        assert_eq!(
            parse("lock.unqueued=1048576").unwrap().unqueued_spins,
            Some(1 << 20)
        );
        for bad in ["1048577", "-1", "lots", ""] {
            assert_eq!(
                parse(&std::format!("lock.unqueued={bad}")),
                Err(BootArgError::BadValue {
                    key: "lock.unqueued",
                    value: bad
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn spin_limit() {
        assert_eq!(parse("").unwrap().spin_limit, None);
        assert_eq!(parse("lock.spin=auto").unwrap().spin_limit, None);
        assert_eq!(parse("lock.spin=32768").unwrap().spin_limit, Some(32768));
        for bad in ["0", "1048577", "-1", "lots", ""] {
            assert_eq!(
                parse(&std::format!("lock.spin={bad}")),
                Err(BootArgError::BadValue {
                    key: "lock.spin",
                    value: bad
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn no_steal_acc_is_a_bare_flag() {
        assert!(parse("").unwrap().steal_acc);
        let args = parse("pv.ipi=off no-steal-acc -- no-steal-acc").unwrap();
        assert!(!args.steal_acc);
        // The PV switches are untouched: the steal clock is still read.
        assert_eq!(
            args.pv,
            PvSwitches {
                ipi: false,
                ..PvSwitches::default()
            }
        );
        assert_eq!(args.app_args.as_slice(), ["no-steal-acc"]);
        // After `--` it is the app's.
        assert!(parse("-- no-steal-acc").unwrap().steal_acc);
        assert_eq!(
            parse("no-steal-acc no-steal-acc"),
            Err(BootArgError::Repeated("no-steal-acc"))
        );
        assert_eq!(
            parse("no-steal-acc=1"),
            Err(BootArgError::UnknownKey("no-steal-acc=1"))
        );
        assert_eq!(
            parse("no-steal"),
            Err(BootArgError::NotKeyValue("no-steal"))
        );
        let msg = parse("bogus=1").unwrap_err().to_string();
        assert!(msg.contains(" no-steal-acc, then"), "{msg}");
    }

    #[test]
    fn too_many_app_arguments() {
        let line = std::format!("-- {}", "a ".repeat(MAX_APP_ARGS + 1));
        assert_eq!(parse(&line), Err(BootArgError::TooManyAppArgs));
        let line = std::format!("-- {}", "a ".repeat(MAX_APP_ARGS));
        assert_eq!(parse(&line).unwrap().app_args.len(), MAX_APP_ARGS);
    }
}
