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
//! never wakes its `idle`). So the mails and the IPI are repeated
//! ([`poll`], while the kernel waits for its CPUs to come online) until the
//! CPU reports arrival ([`arrived`], first thing in Rust) or
//! [`START_TIMEOUT_MS`] pass. [`start`] only sends the first mails: all
//! secondaries start at once, not one after another. The repeats use their own IPI vector,
//! [`IPI_START`](super::irq::IPI_START), which `irq::init_cpu` leaves
//! disabled: one that lands after the CPU took off is never delivered.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// How long the start is repeated before giving up, and how soon the first
/// repeat comes; each later one waits twice as long as the one before (with
/// 255 CPUs starting at once on an overcommitted host, repeats every 1 ms
/// flooded the IPI device and tripled the time to bring them up).
const START_TIMEOUT_MS: u64 = 500;
const START_RESEND_MS: u64 = 1;

/// Set by each secondary on arrival in Rust.
static ARRIVED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// A start in progress: what to send again. Only the boot CPU starts CPUs.
struct Starting {
    hw_id: u64,
    stack_top: usize,
    first_sent: u64,
    next_send: u64,
    sends: u32,
}

static STARTING: spin::Mutex<[Option<Starting>; MAX_CPUS]> =
    spin::Mutex::new([const { None }; MAX_CPUS]);
/// When [`poll`] last sent repeats (ticks).
static LAST_SWEEP: AtomicU64 = AtomicU64::new(0);

/// Called by logical CPU `cpu` first thing in Rust: stops the repeats.
pub(super) fn arrived(cpu: usize) {
    // Release: pairs with the Acquire in `poll` (nothing is published by
    // it yet, but the CPU is past reading its mailboxes).
    ARRIVED[cpu].store(true, Ordering::Release);
}

/// Starts the CPU with physical id `hw_id` as logical CPU `cpu` on
/// `stack_top`, at `_secondary_start`: sends the first start; [`poll`]
/// repeats it until the CPU arrives.
pub(super) fn start(hw_id: u64, cpu: usize, stack_top: usize) -> Result<(), &'static str> {
    send_start(hw_id as usize, cpu, stack_top);
    let now = timer::ticks();
    STARTING.lock()[cpu] = Some(Starting {
        hw_id,
        stack_top,
        first_sent: now,
        next_send: now + START_RESEND_MS * timer::ticks_per_sec() / 1000,
        sends: 1,
    });
    Ok(())
}

/// Repeats the start of every CPU that has not arrived, [`START_RESEND_MS`]
/// after the first and then backing off, for [`START_TIMEOUT_MS`].
pub(super) fn poll() {
    let per_ms = timer::ticks_per_sec() / 1000;
    let now = timer::ticks();
    if now < LAST_SWEEP.load(Ordering::Relaxed) + START_RESEND_MS * per_ms {
        return;
    }
    LAST_SWEEP.store(now, Ordering::Relaxed);
    let mut starting = STARTING.lock();
    for (cpu, slot) in starting.iter_mut().enumerate() {
        let Some(s) = slot else { continue };
        // Acquire: pairs with the Release in `arrived`.
        if ARRIVED[cpu].load(Ordering::Acquire) {
            if s.sends > 1 {
                log::debug!(
                    "CPU {cpu} (hw id {:#x}) needed {} start IPIs",
                    s.hw_id,
                    s.sends
                );
            }
            *slot = None;
        } else if now >= s.first_sent + START_TIMEOUT_MS * per_ms {
            // Given up: the kernel reports it as not online.
            *slot = None;
        } else if now >= s.next_send {
            send_start(s.hw_id as usize, cpu, s.stack_top);
            s.next_send = now + ((START_RESEND_MS * per_ms) << s.sends.min(6));
            s.sends += 1;
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
