//! GICv3 redistributor facts that the kernel (`aarch64/irq.rs`) and pvhost
//! (`host/src/el2/gic.rs`) both need to find a CPU's redistributor: the
//! frame layout and GICR_TYPER (Arm GIC v3/v4 architecture specification,
//! 12.11.35). Pure, so it is unit-tested on the host.

/// One 64 KiB frame; a GICv3 redistributor is two (RD_base, SGI_base),
/// with virtual LPIs (GICv4) two more follow.
pub const FRAME_SIZE: u64 = 0x1_0000;
/// GICR_TYPER: offset in RD_base (64 bits, read-only), and its bits.
pub const GICR_TYPER: u64 = 0x8;
pub const TYPER_VLPIS: u64 = 1 << 1;
pub const TYPER_LAST: u64 = 1 << 4;

/// GICR_TYPER.Affinity_Value (bits 63:32) of the CPU whose MPIDR is `mpidr`:
/// Aff3 in bits 31:24, then Aff2..Aff0.
pub const fn typer_affinity(mpidr: u64) -> u64 {
    (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 24
}

/// Whether the redistributor with GICR_TYPER `typer` is `mpidr`'s.
pub const fn serves(typer: u64, mpidr: u64) -> bool {
    typer >> 32 == typer_affinity(mpidr)
}

/// Bytes from the redistributor with GICR_TYPER `typer` to the next.
pub const fn stride(typer: u64) -> u64 {
    if typer & TYPER_VLPIS != 0 {
        4 * FRAME_SIZE
    } else {
        2 * FRAME_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_and_stride() {
        // MPIDR Aff3 = 1, Aff2 = 2, Aff1 = 3, Aff0 = 4 (MT/U bits ignored).
        let mpidr = 0x01_8000_0000 | 0x02_0304 | (1 << 31);
        assert_eq!(typer_affinity(mpidr), 0x0102_0304);
        assert!(serves(0x0102_0304 << 32 | TYPER_LAST, mpidr));
        assert!(!serves(0x0102_0305 << 32, mpidr));
        assert_eq!(stride(0), 0x2_0000);
        assert_eq!(stride(TYPER_VLPIS), 0x4_0000);
    }
}
