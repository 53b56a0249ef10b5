//! Starting secondary CPUs through the IOCSR mailboxes.
//!
//! QEMU's firmware parks each secondary in a loop at 0x1c00_0000: `idle`
//! until an IPI, then read its mailbox 0 (IOCSR 0x1020, 32 bits); once that is
//! non-zero, read it as 64 bits and jump there in direct-address mode.
//! A mailbox is 64 bits made of two 32-bit boxes, written in another CPU's
//! IOCSR block through MAIL_SEND one box at a time (the `loongArch64` crate's
//! `csr_mail_send` writes the high box, then the low one).
//!
//! | IOCSR | mailbox | holds |
//! |---|---|---|
//! | 0x1020 | 0 | entry address, polled by the firmware: written last |
//! | 0x1028 | 1 | stack top ([`IOCSR_MAILBOX_STACK`]) |
//! | 0x1030 | 2 | logical CPU id ([`IOCSR_MAILBOX_CPU`]) |
//!
//! The secondary reads mailboxes 1 and 2 from its own IOCSR block, so it
//! needs nothing from memory before its DMW windows and paging are set.
//!
//! The start can be lost: QEMU runs each vCPU in its own thread, and a
//! secondary that has not yet run the firmware's first instructions clears
//! its mailbox after our write, or enables its IPIs after our IPI (which then
//! never wakes its `idle`). So [`start`] repeats the mails and the IPI until
//! the CPU reports arrival ([`arrived`], first thing in Rust) or
//! [`START_TIMEOUT_MS`] pass. The repeats use their own IPI vector,
//! [`IPI_START`](super::irq::IPI_START), which `irq::init_cpu` leaves
//! disabled: one that lands after the CPU took off is never delivered.

use core::sync::atomic::{AtomicBool, Ordering};

use loongArch64::consts::{LOONGARCH_CSR_MAIL_BUF1, LOONGARCH_CSR_MAIL_BUF2};
use loongArch64::ipi::csr_mail_send;

use crate::MAX_CPUS;

use super::timer;

/// Mailbox index of the entry address the firmware polls.
const MAILBOX_ENTRY: usize = 0;
const MAILBOX_STACK: usize = 1;
const MAILBOX_CPU: usize = 2;
/// IOCSR addresses of mailboxes 1 and 2, read by `_secondary_start`.
pub(super) const IOCSR_MAILBOX_STACK: usize = LOONGARCH_CSR_MAIL_BUF1;
pub(super) const IOCSR_MAILBOX_CPU: usize = LOONGARCH_CSR_MAIL_BUF2;

/// How long [`start`] repeats the start before giving up, and how often.
const START_TIMEOUT_MS: u64 = 500;
const START_RESEND_MS: u64 = 1;

/// Set by each secondary on arrival in Rust.
static ARRIVED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Called by logical CPU `cpu` first thing in Rust: stops [`start`]'s repeats.
pub(super) fn arrived(cpu: usize) {
    // Release: pairs with the Acquire in `start` (nothing is published by
    // it yet, but the CPU is past reading its mailboxes).
    ARRIVED[cpu].store(true, Ordering::Release);
}

/// Starts the CPU with physical id `hw_id` as logical CPU `cpu` on
/// `stack_top`, at `_secondary_start`; returns once it runs Rust code.
pub(super) fn start(hw_id: u64, cpu: usize, stack_top: usize) -> Result<(), &'static str> {
    let per_ms = timer::ticks_per_sec() / 1000;
    let deadline = timer::ticks() + START_TIMEOUT_MS * per_ms;
    let mut sends = 0;
    loop {
        send_start(hw_id as usize, cpu, stack_top);
        sends += 1;
        let next = timer::ticks() + START_RESEND_MS * per_ms;
        while timer::ticks() < next {
            // Acquire: pairs with the Release in `arrived`.
            if ARRIVED[cpu].load(Ordering::Acquire) {
                if sends > 1 {
                    log::debug!("CPU {cpu} (hw id {hw_id:#x}) needed {sends} start IPIs");
                }
                return Ok(());
            }
            core::hint::spin_loop();
        }
        if timer::ticks() > deadline {
            return Err("no answer to the mailbox start IPI");
        }
    }
}

fn send_start(hw_id: usize, cpu: usize, stack_top: usize) {
    csr_mail_send(stack_top as u64, hw_id, MAILBOX_STACK);
    csr_mail_send(cpu as u64, hw_id, MAILBOX_CPU);
    // Last: the firmware jumps as soon as this box is non-zero.
    csr_mail_send(super::start::secondary_entry() as u64, hw_id, MAILBOX_ENTRY);
    // Wake it from `idle`; the firmware clears every vector before jumping.
    super::irq::send(hw_id as u64, super::irq::IPI_START);
}
