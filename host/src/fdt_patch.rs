//! The guest's FDT: QEMU's, copied token by token with three changes.
//!
//! | where | what | why |
//! |---|---|---|
//! | `/psci` `method` | `"hvc"` | the guest's PSCI and PV calls must reach pvhost (QEMU says `smc`, its EL3 firmware) |
//! | `/memory*` `reg` | each range cut to the guest's RAM | the host's part of RAM is not the guest's |
//! | `/chosen` `bootargs` | the guest's command line (added if missing) | pvhost's own line is QEMU's `-append` |
//!
//! Everything else (phandles, the memory reservation block, the order of
//! nodes) is kept as it is. Why not a crate: the editing crates for `no_std`
//! (fdt-edit, dtoolkit) rebuild a whole tree in an allocator, and vm-fdt only
//! writes; a patch of three properties is a single pass over the structure
//! block, needs no heap in the hypervisor, and every read here is
//! bounds-checked (QEMU's DTB is trusted, but a bad one must not crash).
//!
//! Format: devicetree specification 0.4, chapter 5 (header, memory
//! reservation block, structure block of big-endian tokens, strings block).

use core::fmt;
use core::ops::Range;

const FDT_MAGIC: u32 = 0xd00d_feed;
const HEADER_SIZE: usize = 40;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// The deepest node nesting followed (QEMU's tree is 3 deep).
const MAX_DEPTH: usize = 16;

/// What to change.
#[derive(Debug, Clone)]
pub struct Edits<'a> {
    /// The guest's RAM: every `/memory` range is cut to it.
    pub guest_ram: Range<u64>,
    /// `/psci` `method`.
    pub psci_method: &'a str,
    /// `/chosen` `bootargs`.
    pub bootargs: &'a str,
}

/// Why the patch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdtError(pub &'static str);

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

const BAD: FdtError = FdtError("malformed DTB");
const FULL: FdtError = FdtError("the patched DTB does not fit its buffer");

fn be32(b: &[u8], at: usize) -> Result<u32, FdtError> {
    let bytes = b.get(at..at.checked_add(4).ok_or(BAD)?).ok_or(BAD)?;
    Ok(u32::from_be_bytes(bytes.try_into().map_err(|_| BAD)?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The NUL-terminated string at `at` in `b` (without the NUL).
fn cstr(b: &[u8], at: usize) -> Result<&[u8], FdtError> {
    let rest = b.get(at..).ok_or(BAD)?;
    let len = rest.iter().position(|&c| c == 0).ok_or(BAD)?;
    Ok(&rest[..len])
}

/// Appends to a byte buffer that may run out.
struct Out<'o> {
    buf: &'o mut [u8],
    len: usize,
}

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), FdtError> {
        let end = self.len.checked_add(b.len()).ok_or(FULL)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(FULL)?
            .copy_from_slice(b);
        self.len = end;
        Ok(())
    }
    fn u32(&mut self, v: u32) -> Result<(), FdtError> {
        self.bytes(&v.to_be_bytes())
    }
    fn pad4(&mut self) -> Result<(), FdtError> {
        while !self.len.is_multiple_of(4) {
            self.bytes(&[0])?;
        }
        Ok(())
    }
    fn put_u32_at(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn prop(&mut self, nameoff: u32, value: &[u8]) -> Result<(), FdtError> {
        self.u32(FDT_PROP)?;
        self.u32(u32::try_from(value.len()).map_err(|_| FULL)?)?;
        self.u32(nameoff)?;
        self.bytes(value)?;
        self.pad4()
    }
    /// A string property's value: the string and its NUL.
    fn str_prop(&mut self, nameoff: u32, s: &str) -> Result<(), FdtError> {
        self.u32(FDT_PROP)?;
        self.u32(u32::try_from(s.len() + 1).map_err(|_| FULL)?)?;
        self.u32(nameoff)?;
        self.bytes(s.as_bytes())?;
        self.bytes(&[0])?;
        self.pad4()
    }
}

/// Reads a big-endian number of `cells` 32-bit cells.
fn read_cells(b: &[u8], cells: u32) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..cells as usize {
        let word = b.get(i * 4..i * 4 + 4)?;
        v = v.checked_shl(32)? | u64::from(u32::from_be_bytes(word.try_into().ok()?));
    }
    Some(v)
}

fn write_cells(out: &mut [u8], cells: u32, v: u64) {
    let cells = cells as usize;
    for i in 0..cells {
        let shift = 32 * (cells - 1 - i);
        let word = if shift >= 64 { 0 } else { (v >> shift) as u32 };
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
}

/// A `/memory` `reg` cut to `ram`: each (address, size) pair is replaced by
/// its intersection with `ram` (size 0 if none). Written into `scratch`.
fn cut_reg<'s>(
    value: &[u8],
    address_cells: u32,
    size_cells: u32,
    ram: &Range<u64>,
    scratch: &'s mut [u8],
) -> Result<&'s [u8], FdtError> {
    let pair = 4 * (address_cells + size_cells) as usize;
    if pair == 0 || !value.len().is_multiple_of(pair) || value.len() > scratch.len() {
        return Err(FdtError("a /memory reg has an unexpected size"));
    }
    let out = &mut scratch[..value.len()];
    for (i, chunk) in value.chunks_exact(pair).enumerate() {
        let (a, s) = chunk.split_at(4 * address_cells as usize);
        let start = read_cells(a, address_cells).ok_or(BAD)?;
        let size = read_cells(s, size_cells).ok_or(BAD)?;
        let end = start.saturating_add(size);
        let (new_start, new_end) = (start.max(ram.start), end.min(ram.end));
        let (new_start, new_size) = if new_start < new_end {
            (new_start, new_end - new_start)
        } else {
            (start, 0)
        };
        let dst = &mut out[i * pair..(i + 1) * pair];
        let (da, ds) = dst.split_at_mut(4 * address_cells as usize);
        write_cells(da, address_cells, new_start);
        write_cells(ds, size_cells, new_size);
    }
    Ok(out)
}

/// The offset of `name` in the strings block, if it is there.
fn find_string(strings: &[u8], name: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < strings.len() {
        let s = cstr(strings, at).ok()?;
        if s == name {
            return Some(at);
        }
        at += s.len() + 1;
    }
    None
}

/// Whether a node name (`memory@40000000`) has the base name `base`.
fn is_named(node: &[u8], base: &str) -> bool {
    node.split(|&c| c == b'@').next() == Some(base.as_bytes())
}

/// Writes the patched copy of `src` into `out` and returns its size.
pub fn patch(src: &[u8], edits: &Edits<'_>, out: &mut [u8]) -> Result<usize, FdtError> {
    if be32(src, 0)? != FDT_MAGIC {
        return Err(FdtError("no FDT magic"));
    }
    let total = (be32(src, 4)? as usize).min(src.len());
    let src = &src[..total];
    let off_struct = be32(src, 8)? as usize;
    let off_strings = be32(src, 12)? as usize;
    let off_rsvmap = be32(src, 16)? as usize;
    let version = be32(src, 20)?;
    let boot_cpuid = be32(src, 28)?;
    let size_strings = be32(src, 32)? as usize;
    let size_struct = be32(src, 36)? as usize;
    if version < 16 {
        return Err(FdtError("FDT version below 16"));
    }
    let strings = src
        .get(off_strings..off_strings.checked_add(size_strings).ok_or(BAD)?)
        .ok_or(BAD)?;
    let structure = src
        .get(off_struct..off_struct.checked_add(size_struct).ok_or(BAD)?)
        .ok_or(BAD)?;

    let mut o = Out { buf: out, len: 0 };
    o.bytes(&[0; HEADER_SIZE])?;

    // Memory reservation block: 16-byte entries up to and including (0, 0).
    let rsv_start = o.len;
    let mut at = off_rsvmap;
    loop {
        let entry = src.get(at..at + 16).ok_or(BAD)?;
        o.bytes(entry)?;
        at += 16;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
    }

    // Names of properties we may add, in the strings block (appended if new).
    let mut appended: [u8; 16] = [0; 16];
    let mut appended_len = 0;
    let mut name_offset = |name: &str| -> Result<u32, FdtError> {
        if let Some(at) = find_string(strings, name.as_bytes()) {
            return Ok(at as u32);
        }
        let at = strings.len() + appended_len;
        let end = appended_len + name.len() + 1;
        let slot = appended.get_mut(appended_len..end).ok_or(FULL)?;
        slot[..name.len()].copy_from_slice(name.as_bytes());
        slot[name.len()] = 0;
        appended_len = end;
        Ok(at as u32)
    };
    let bootargs_name = name_offset("bootargs")?;

    let struct_start = o.len;
    let mut path: [&[u8]; MAX_DEPTH] = [&[]; MAX_DEPTH];
    let mut depth = 0usize;
    let (mut address_cells, mut size_cells) = (2u32, 1u32);
    let mut bootargs_done = false;
    let mut chosen_seen = false;
    let mut scratch = [0u8; 256];
    let mut at = 0;
    loop {
        let token = be32(structure, at)?;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                let name = cstr(structure, at)?;
                at = align4(at + name.len() + 1);
                if depth == MAX_DEPTH {
                    return Err(FdtError("FDT nested too deep"));
                }
                // A /chosen without bootargs gets it before its first child.
                if depth == 2 && is_named(path[1], "chosen") && !bootargs_done {
                    o.str_prop(bootargs_name, edits.bootargs)?;
                    bootargs_done = true;
                }
                path[depth] = name;
                depth += 1;
                if depth == 2 && is_named(name, "chosen") {
                    chosen_seen = true;
                }
                o.u32(FDT_BEGIN_NODE)?;
                o.bytes(name)?;
                o.bytes(&[0])?;
                o.pad4()?;
            }
            FDT_PROP => {
                let len = be32(structure, at)? as usize;
                let nameoff = be32(structure, at + 4)?;
                at += 8;
                let value = structure
                    .get(at..at.checked_add(len).ok_or(BAD)?)
                    .ok_or(BAD)?;
                at = align4(at + len);
                let name = cstr(strings, nameoff as usize)?;
                if depth == 0 {
                    return Err(BAD);
                }
                let node = path[depth - 1];
                if depth == 1 && name == b"#address-cells" {
                    address_cells = be32(value, 0)?;
                } else if depth == 1 && name == b"#size-cells" {
                    size_cells = be32(value, 0)?;
                }
                if address_cells > 2 || size_cells > 2 {
                    return Err(FdtError("root #address-cells/#size-cells above 2"));
                }
                if depth == 2 && is_named(node, "psci") && name == b"method" {
                    o.str_prop(nameoff, edits.psci_method)?;
                } else if depth == 2 && is_named(node, "memory") && name == b"reg" {
                    let reg = cut_reg(
                        value,
                        address_cells,
                        size_cells,
                        &edits.guest_ram,
                        &mut scratch,
                    )?;
                    o.prop(nameoff, reg)?;
                } else if depth == 2 && is_named(node, "chosen") && name == b"bootargs" {
                    o.str_prop(nameoff, edits.bootargs)?;
                    bootargs_done = true;
                } else {
                    o.prop(nameoff, value)?;
                }
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(BAD);
                }
                if depth == 2 && is_named(path[1], "chosen") && !bootargs_done {
                    o.str_prop(bootargs_name, edits.bootargs)?;
                    bootargs_done = true;
                }
                if depth == 1 && !chosen_seen {
                    o.u32(FDT_BEGIN_NODE)?;
                    o.bytes(b"chosen\0\0")?;
                    o.str_prop(bootargs_name, edits.bootargs)?;
                    o.u32(FDT_END_NODE)?;
                    chosen_seen = true;
                    bootargs_done = true;
                }
                depth -= 1;
                o.u32(FDT_END_NODE)?;
            }
            FDT_NOP => {}
            FDT_END => {
                if depth != 0 {
                    return Err(BAD);
                }
                o.u32(FDT_END)?;
                break;
            }
            _ => return Err(BAD),
        }
    }
    let struct_size = o.len - struct_start;
    let strings_start = o.len;
    o.bytes(strings)?;
    o.bytes(&appended[..appended_len])?;
    let strings_size = o.len - strings_start;
    let total = o.len;

    let header = [
        FDT_MAGIC,
        total as u32,
        struct_start as u32,
        strings_start as u32,
        rsv_start as u32,
        17,
        16,
        boot_cpuid,
        strings_size as u32,
        struct_size as u32,
    ];
    for (i, word) in header.into_iter().enumerate() {
        o.put_u32_at(i * 4, word);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10.0's DTB for `-M virt,gic-version=3,virtualization=on -cpu max
    /// -smp 2 -m 512M -append "pvhost.time=off -- app=selftest"`, packed
    /// (`dtc -I dtb -O dtb`).
    const QEMU_VIRT: &[u8] = include_bytes!("testdata/qemu-virt-el2-smp2.dtb");

    const EDITS: Edits<'static> = Edits {
        guest_ram: 0x4000_0000..0x5000_0000,
        psci_method: "hvc",
        bootargs: "app=selftest -- a b",
    };

    fn patched(src: &[u8], edits: &Edits<'_>) -> Vec<u8> {
        let mut out = vec![0u8; src.len() + 4096];
        let n = patch(src, edits, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Every node path and property, as (path, name, value), in order.
    fn flatten(dtb: &[u8]) -> Vec<(String, String, Vec<u8>)> {
        let fdt = fdt::Fdt::new(dtb).unwrap();
        let mut all = Vec::new();
        fn walk(
            node: fdt::node::FdtNode<'_, '_>,
            prefix: &str,
            all: &mut Vec<(String, String, Vec<u8>)>,
        ) {
            let path = format!("{prefix}/{}", node.name);
            for p in node.properties() {
                all.push((path.clone(), p.name.to_owned(), p.value.to_vec()));
            }
            for child in node.children() {
                walk(child, &path, all);
            }
        }
        walk(fdt.find_node("/").unwrap(), "", &mut all);
        all
    }

    #[test]
    fn changes_the_three_properties_and_nothing_else() {
        let out = patched(QEMU_VIRT, &EDITS);
        let fdt = fdt::Fdt::new(&out).unwrap();
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        assert_eq!(fdt.chosen().bootargs(), Some("app=selftest -- a b"));
        let regions: Vec<_> = fdt
            .memory()
            .regions()
            .map(|r| (r.starting_address as u64, r.size))
            .collect();
        assert_eq!(regions, [(0x4000_0000, Some(0x1000_0000))]);
        // Every other property is byte for byte the same, in the same order.
        let before = flatten(QEMU_VIRT);
        let after = flatten(&out);
        assert_eq!(before.len(), after.len());
        let mut changed = 0;
        for (b, a) in before.iter().zip(&after) {
            assert_eq!((&b.0, &b.1), (&a.0, &a.1));
            if b.2 != a.2 {
                changed += 1;
                assert!(
                    ["method", "reg", "bootargs"].contains(&b.1.as_str()),
                    "{} {} changed",
                    b.0,
                    b.1
                );
            }
        }
        assert_eq!(changed, 3);
        assert_eq!(fdt.cpus().count(), 2);
    }

    #[test]
    fn adds_bootargs_when_qemu_had_none() {
        // Remove /chosen/bootargs by patching it into a NOP run.
        let mut src = QEMU_VIRT.to_vec();
        let needle = b"pvhost.time=off -- app=selftest\0";
        let at = src.windows(needle.len()).position(|w| w == needle).unwrap();
        // The property token starts 12 bytes before its value.
        let prop = at - 12;
        assert_eq!(be32(&src, prop).unwrap(), FDT_PROP);
        let words = (12 + align4(needle.len())) / 4;
        for w in 0..words {
            src[prop + 4 * w..prop + 4 * w + 4].copy_from_slice(&FDT_NOP.to_be_bytes());
        }
        assert_eq!(fdt::Fdt::new(&src).unwrap().chosen().bootargs(), None);
        let out = patched(&src, &EDITS);
        let fdt = fdt::Fdt::new(&out).unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some("app=selftest -- a b"));
        assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@9000000");
    }

    #[test]
    fn memory_outside_the_guest_range_gets_size_zero() {
        let edits = Edits {
            guest_ram: 0x8000_0000..0x9000_0000,
            ..EDITS
        };
        let out = patched(QEMU_VIRT, &edits);
        let fdt = fdt::Fdt::new(&out).unwrap();
        let r = fdt.memory().regions().next().unwrap();
        assert_eq!(r.size, Some(0));
    }

    #[test]
    fn garbage_and_truncations_are_errors_not_panics() {
        let mut out = vec![0u8; 64 * 1024];
        for len in (0..QEMU_VIRT.len()).step_by(7) {
            let mut src = QEMU_VIRT[..len].to_vec();
            // Keep the header's claims: everything past `len` is missing.
            let _ = patch(&src, &EDITS, &mut out);
            // And a flipped byte anywhere.
            if len > 0 {
                src[len / 2] ^= 0x5a;
                let _ = patch(&src, &EDITS, &mut out);
            }
        }
        let mut small = [0u8; 100];
        assert_eq!(patch(QEMU_VIRT, &EDITS, &mut small), Err(FULL));
    }
}
