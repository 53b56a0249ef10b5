//! lodger's apps, chosen at boot with `app=NAME`.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod args;
mod fairshare;
mod fault;
mod histogram;
mod hvcfuzz;
mod lockstorm;
mod panic;
mod selftest;
mod shootdown;
mod stealwatch;

use kernel::app::App;

/// Every app, in the order `unknown app` errors list them.
pub static ALL: &[App] = &[
    App {
        name: "selftest",
        about: "in-guest tests of the kernel on all CPUs",
        main: selftest::main,
    },
    App {
        name: "stealwatch",
        about: "keeps every CPU busy and samples its steal clock: -- ms=N expect=steal|zero",
        main: stealwatch::main,
    },
    App {
        name: "lockstorm",
        about: "lock contention per lock kind (spinlocks, the sleeping mutex): throughput, fairness, latency; -- kinds= ms=|acq= cs= out= cpus= slowpath= mutex= threads=",
        main: lockstorm::main,
    },
    App {
        name: "shootdown",
        about: "TLB shootdowns while readers on every other CPU use the pages, checked for stale entries: latency, cost per shootdown; -- ms=|rounds= cpus= mode=remap|protect-fault",
        main: shootdown::main,
    },
    App {
        name: "fairshare",
        about: "CPU-bound threads pinned per CPU: accounted run time vs real progress; -- ms= per_cpu= expect=accurate|steal-match|any",
        main: fairshare::main,
    },
    App {
        name: "hvcfuzz",
        about: "random hypercalls on every CPU, each answer checked against the ABI: -- calls=N seed=N offer=probe|all|none",
        main: hvcfuzz::main,
    },
    App {
        name: "fault",
        about: "reads an unmapped address on CPU cpu=N (default 0): must end in a fault report",
        main: fault::main,
    },
    App {
        name: "panic",
        about: "panics on CPU cpu=N (default 0): must end the run with a failing status",
        main: panic::main,
    },
];
