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

use loongArch64::consts::{LOONGARCH_CSR_MAIL_BUF1, LOONGARCH_CSR_MAIL_BUF2};
use loongArch64::ipi::csr_mail_send;

/// Mailbox index of the entry address the firmware polls.
const MAILBOX_ENTRY: usize = 0;
const MAILBOX_STACK: usize = 1;
const MAILBOX_CPU: usize = 2;
/// IOCSR addresses of mailboxes 1 and 2, read by `_secondary_start`.
pub(super) const IOCSR_MAILBOX_STACK: usize = LOONGARCH_CSR_MAIL_BUF1;
pub(super) const IOCSR_MAILBOX_CPU: usize = LOONGARCH_CSR_MAIL_BUF2;

/// Starts the CPU with physical id `hw_id` as logical CPU `cpu` on
/// `stack_top`, at `_secondary_start`.
pub(super) fn start(hw_id: u64, cpu: usize, stack_top: usize) {
    let hw_id = hw_id as usize;
    csr_mail_send(stack_top as u64, hw_id, MAILBOX_STACK);
    csr_mail_send(cpu as u64, hw_id, MAILBOX_CPU);
    // Last: the firmware jumps as soon as this box is non-zero.
    csr_mail_send(super::start::secondary_entry() as u64, hw_id, MAILBOX_ENTRY);
    // Wake it from `idle`; the firmware clears every vector before jumping.
    super::irq::send(hw_id as u64, super::irq::IPI_KERNEL);
}
