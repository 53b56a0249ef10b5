//! Power-off through the `syscon-poweroff` register the FDT names: on QEMU
//! `virt` the GED's sleep-control byte (0x100e_001c), where writing 0x34
//! (SLP_EN | SLP_TYP 5, ACPI S5) turns the machine off and QEMU exits.

use core::fmt;

/// QEMU `virt`'s GED sleep control and its S5 value: the register used when
/// the run ends before the FDT was read (the only LoongArch board lodger
/// supports; the FDT names the same).
const QEMU_VIRT_GED_SLEEP_CTL_PA: usize = 0x100e_001c;
const QEMU_VIRT_GED_SLEEP_S5: u8 = 0x34;

/// A byte register and the value that powers the machine off.
#[derive(Debug, Clone, Copy)]
pub(super) struct PowerOff {
    /// Physical address of the register.
    pa: usize,
    value: u8,
}

impl PowerOff {
    /// Reads `syscon-poweroff` (`regmap` phandle, `offset`, `value`).
    pub(super) fn from_fdt(fdt: &fdt::Fdt) -> Result<Self, &'static str> {
        const MISSING: &str = "FDT: no usable syscon-poweroff node";
        let node = fdt.find_compatible(&["syscon-poweroff"]).ok_or(MISSING)?;
        let u32_prop = |name| {
            node.property(name)
                .and_then(|p| p.as_usize())
                .ok_or(MISSING)
        };
        let syscon = fdt
            .find_phandle(u32_prop("regmap")? as u32)
            .and_then(|n| n.reg())
            .and_then(|mut r| r.next())
            .ok_or(MISSING)?;
        let value = u8::try_from(u32_prop("value")?).map_err(|_| MISSING)?;
        Ok(Self {
            pa: syscon.starting_address as usize + u32_prop("offset")?,
            value,
        })
    }
}

impl fmt::Display for PowerOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "power-off {:#x} at {:#x}", self.value, self.pa)
    }
}

/// Powers off through `how`, or QEMU `virt`'s GED if the FDT was not read.
pub(super) fn off(how: Option<&PowerOff>) -> ! {
    let how = how.copied().unwrap_or(PowerOff {
        pa: QEMU_VIRT_GED_SLEEP_CTL_PA,
        value: QEMU_VIRT_GED_SLEEP_S5,
    });
    // SAFETY: a power-control byte register (the FDT's, or the board's),
    // written through the uncached window; nothing runs after it.
    unsafe { core::ptr::write_volatile(super::mmu::uncached(how.pa) as *mut u8, how.value) };
    loop {
        // SAFETY: `idle` has no effect beyond waiting.
        unsafe { loongArch64::asm::idle() };
    }
}
