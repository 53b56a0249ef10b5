//! Raw `hvcl 0x100` calls, for the hypercall fuzz app only
//! (`kernel::pv::raw_call`): which are never issued, and why.
//!
//! Only FUNC_NOTIFY can take something from the kernel: a call KVM accepts
//! (a1 = [`NOTIFY_STEAL_TIME`], a2 without bits 5:1) makes a2 this vCPU's
//! record, so the kernel's live record would stop being updated (or, with
//! [`STEAL_PHYS_VALID`] clear, be dropped), and the host would write 64
//! bytes wherever a2 points, kernel memory included. The one accepted form
//! that is harmless is the CPU's own registration again (`registered`, as
//! a2 was): the host keeps writing where it did. Everything else is
//! answered and changes nothing: FUNC_IPI only rings doorbells (an empty
//! action word is a spurious SWI0, which costs the target one look), any
//! other function is -1, and a refused FUNC_NOTIFY (-1, -2) keeps the
//! registration.

use crate::abi::loongarch::*;

/// Why the raw call with registers `a` (a0..a5) must not be issued by a
/// CPU whose live FUNC_NOTIFY a2 is `registered` (`None`: no record), or
/// `None` if it may be.
pub fn refusal(a: &[u64; 6], registered: Option<u64>) -> Option<&'static str> {
    let accepted = a[0] == u64::from(FUNC_NOTIFY)
        && a[1] == NOTIFY_STEAL_TIME
        && a[2] & !(STEAL_PHYS_MASK | STEAL_PHYS_VALID) == 0;
    (accepted && registered != Some(a[2])).then_some(
        "FUNC_NOTIFY(STEAL_TIME) with this a2 would move or drop the CPU's steal-time record",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFY: u64 = FUNC_NOTIFY as u64;
    const IPI: u64 = FUNC_IPI as u64;
    const OWN: u64 = 0x0123_4540 | STEAL_PHYS_VALID;

    fn regs(a0: u64, a1: u64, a2: u64) -> [u64; 6] {
        [a0, a1, a2, 0, 0, 0]
    }

    #[test]
    fn only_accepted_notifies_of_another_record_are_refused() {
        for a2 in [0, 1, 0x40, 0x40 | 1, 0x0123_4540, OWN + 0x40] {
            assert!(
                refusal(&regs(NOTIFY, NOTIFY_STEAL_TIME, a2), Some(OWN)).is_some(),
                "{a2:#x}"
            );
            assert!(refusal(&regs(NOTIFY, NOTIFY_STEAL_TIME, a2), None).is_some());
        }
        // The own registration again: harmless.
        assert_eq!(
            refusal(&regs(NOTIFY, NOTIFY_STEAL_TIME, OWN), Some(OWN)),
            None
        );
        // Refused by the host: -2 for bits 5:1, -1 for another feature.
        for (a1, a2) in [
            (NOTIFY_STEAL_TIME, 2),
            (NOTIFY_STEAL_TIME, OWN | 0x3e),
            (2, 0),
        ] {
            assert_eq!(refusal(&regs(NOTIFY, a1, a2), Some(OWN)), None);
        }
        // Not FUNC_NOTIFY at all (a0 is 64 bits).
        for a0 in [IPI, NOTIFY | 1 << 32, 0, u64::MAX] {
            assert_eq!(refusal(&regs(a0, NOTIFY_STEAL_TIME, 0), None), None);
        }
    }

    #[test]
    fn the_abi_answers() {
        let all = Offer::ALL;
        assert_eq!(all.answer(IPI, u64::MAX, u64::MAX), SUCCESS);
        assert_eq!(all.answer(IPI | 1 << 32, 1, 0), NOT_IMPLEMENTED);
        assert_eq!(all.answer(NOTIFY, NOTIFY_STEAL_TIME, OWN), SUCCESS);
        assert_eq!(all.answer(NOTIFY, NOTIFY_STEAL_TIME, 0), SUCCESS);
        assert_eq!(
            all.answer(NOTIFY, NOTIFY_STEAL_TIME, OWN | 2),
            INVALID_PARAMETER
        );
        assert_eq!(
            all.answer(NOTIFY, NOTIFY_STEAL_TIME | 1 << 32, OWN),
            NOT_IMPLEMENTED
        );
        assert_eq!(
            all.answer(NOTIFY, 2, OWN | 2),
            NOT_IMPLEMENTED,
            "a1 before a2"
        );
        for f in [0, 3, 0x100, u64::MAX, (-2i64) as u64] {
            assert_eq!(all.answer(f, 0, 0), NOT_IMPLEMENTED, "{f:#x}");
        }
        let none = Offer::NONE;
        assert_eq!(none.answer(IPI, 1, 0), NOT_IMPLEMENTED);
        assert_eq!(
            none.answer(NOTIFY, NOTIFY_STEAL_TIME, OWN | 2),
            NOT_IMPLEMENTED
        );
        let preempt_only = Offer {
            preempt: true,
            ..Offer::NONE
        };
        assert_eq!(
            preempt_only.answer(NOTIFY, NOTIFY_STEAL_TIME, OWN),
            NOT_IMPLEMENTED
        );
    }
}
