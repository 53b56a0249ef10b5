//! The guest's ELF image: QEMU's generic loader puts the file as it is
//! (`force-raw=on`) in host memory, and pvhost copies its `PT_LOAD`
//! segments to their physical addresses in guest RAM. Only what that needs
//! is read: the ELF header, the program headers and the entry point; every
//! offset and address is checked before use.

use core::fmt;
use core::ops::Range;

/// The most loadable segments pvhost takes (lodger has 3-4).
pub const MAX_SEGMENTS: usize = 16;

const PT_LOAD: u32 = 1;
const EM_AARCH64: u16 = 183;
const ET_EXEC: u16 = 2;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// One segment to load: `file` bytes of the image go to `pa`, followed by
/// `zeroed` zero bytes (`.bss`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub pa: u64,
    pub file: Range<usize>,
    pub zeroed: u64,
}

impl Segment {
    /// `[pa, pa + memsz)`.
    pub fn memory(&self) -> Range<u64> {
        let len = (self.file.end - self.file.start) as u64 + self.zeroed;
        self.pa..self.pa + len
    }
}

/// A checked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub entry: u64,
    segments: [Option<Segment>; MAX_SEGMENTS],
}

impl Image {
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().flatten()
    }

    /// `[lowest, highest)` physical address the segments cover.
    pub fn extent(&self) -> Range<u64> {
        let low = self.segments().map(|s| s.pa).min().unwrap_or(0);
        let high = self.segments().map(|s| s.memory().end).max().unwrap_or(0);
        low..high
    }
}

/// Why an image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfError(pub &'static str);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const TRUNCATED: ElfError = ElfError("truncated ELF file");

/// Checks the ELF file in `file` (the bytes from its start to as far as it
/// may extend) and returns what to load, all of it inside `ram`.
pub fn parse(file: &[u8], ram: Range<u64>) -> Result<Image, ElfError> {
    if file.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError("no ELF magic at the guest image address"));
    }
    // 64-bit, little-endian, version 1.
    if file.get(4..7) != Some([2u8, 1, 1].as_slice()) {
        return Err(ElfError("not a 64-bit little-endian ELF file"));
    }
    if file.len() < EHDR_SIZE {
        return Err(TRUNCATED);
    }
    if u16_at(file, 18) != Some(EM_AARCH64) {
        return Err(ElfError("not an AArch64 ELF file"));
    }
    if u16_at(file, 16) != Some(ET_EXEC) {
        return Err(ElfError("not an executable ELF file (ET_EXEC)"));
    }
    let entry = u64_at(file, 24).ok_or(TRUNCATED)?;
    let phoff = u64_at(file, 32).ok_or(TRUNCATED)?;
    let phentsize = u16_at(file, 54).ok_or(TRUNCATED)? as usize;
    let phnum = u16_at(file, 56).ok_or(TRUNCATED)? as usize;
    if phentsize != PHDR_SIZE {
        return Err(ElfError("unexpected program header size"));
    }
    let phoff = usize::try_from(phoff).map_err(|_| TRUNCATED)?;

    let mut segments = [const { None }; MAX_SEGMENTS];
    let mut count = 0;
    for i in 0..phnum {
        let at = phoff
            .checked_add(i * PHDR_SIZE)
            .filter(|at| {
                at.checked_add(PHDR_SIZE)
                    .is_some_and(|end| end <= file.len())
            })
            .ok_or(TRUNCATED)?;
        if u32_at(file, at) != Some(PT_LOAD) {
            continue;
        }
        let offset = u64_at(file, at + 8).ok_or(TRUNCATED)?;
        let pa = u64_at(file, at + 24).ok_or(TRUNCATED)?;
        let filesz = u64_at(file, at + 32).ok_or(TRUNCATED)?;
        let memsz = u64_at(file, at + 40).ok_or(TRUNCATED)?;
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(ElfError("a segment's file size exceeds its memory size"));
        }
        let file_end = offset.checked_add(filesz).ok_or(TRUNCATED)?;
        if file_end > file.len() as u64 {
            return Err(TRUNCATED);
        }
        let mem_end = pa
            .checked_add(memsz)
            .ok_or(ElfError("a segment wraps around"))?;
        if pa < ram.start || mem_end > ram.end {
            return Err(ElfError("a segment lies outside guest RAM"));
        }
        if count == MAX_SEGMENTS {
            return Err(ElfError("too many loadable segments"));
        }
        let segment = Segment {
            pa,
            file: offset as usize..file_end as usize,
            zeroed: memsz - filesz,
        };
        let overlaps = segments
            .iter()
            .flatten()
            .any(|s: &Segment| s.pa < mem_end && pa < s.memory().end);
        if overlaps {
            return Err(ElfError("loadable segments overlap"));
        }
        segments[count] = Some(segment);
        count += 1;
    }
    if count == 0 {
        return Err(ElfError("no loadable segment"));
    }
    let image = Image { entry, segments };
    if !image.segments().any(|s| s.memory().contains(&entry)) {
        return Err(ElfError("the entry point is in no loadable segment"));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: Range<u64> = 0x4000_0000..0x5000_0000;

    /// A minimal ELF: header, `n` program headers, then 16 bytes of payload.
    fn elf(phdrs: &[(u32, u64, u64, u64, u64)], entry: u64) -> Vec<u8> {
        let mut f = vec![0u8; EHDR_SIZE];
        f[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        f[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(kind, offset, pa, filesz, memsz) in phdrs {
            let mut p = [0u8; PHDR_SIZE];
            p[0..4].copy_from_slice(&kind.to_le_bytes());
            p[8..16].copy_from_slice(&offset.to_le_bytes());
            p[16..24].copy_from_slice(&pa.to_le_bytes());
            p[24..32].copy_from_slice(&pa.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            f.extend_from_slice(&p);
        }
        f.extend_from_slice(&[0xAA; 16]);
        f
    }

    #[test]
    fn loads_segments_with_bss() {
        let payload = (EHDR_SIZE + 2 * PHDR_SIZE) as u64;
        let f = elf(
            &[
                (PT_LOAD, payload, 0x4020_0000, 16, 16),
                (PT_LOAD, payload, 0x4020_1000, 8, 0x1000),
                (4, 0, 0, 0, 0), // PT_NOTE: skipped
            ],
            0x4020_0000,
        );
        let f = [f, vec![0; 64]].concat();
        let image = parse(&f, RAM).unwrap();
        assert_eq!(image.entry, 0x4020_0000);
        let s: Vec<_> = image.segments().cloned().collect();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].zeroed, 0x1000 - 8);
        assert_eq!(image.extent(), 0x4020_0000..0x4020_2000);
    }

    #[test]
    fn refuses_what_it_cannot_load_safely() {
        let payload = (EHDR_SIZE + PHDR_SIZE) as u64;
        let cases: [(Vec<u8>, &str); 7] = [
            (b"MZ\0\0".to_vec(), "magic"),
            (
                elf(&[(PT_LOAD, payload, 0x3fff_f000, 16, 16)], 0x3fff_f000),
                "outside",
            ),
            (
                elf(
                    &[(PT_LOAD, payload, 0x4ff0_0000, 16, 0x20_0000)],
                    0x4ff0_0000,
                ),
                "outside",
            ),
            (
                elf(&[(PT_LOAD, payload, u64::MAX - 4, 16, 16)], 0x4020_0000),
                "wraps",
            ),
            (
                elf(&[(PT_LOAD, payload, 0x4020_0000, 17, 16)], 0x4020_0000),
                "exceeds",
            ),
            (
                elf(&[(PT_LOAD, payload + 8, 0x4020_0000, 16, 16)], 0x4020_0000),
                "truncated",
            ),
            (
                elf(&[(PT_LOAD, payload, 0x4020_0000, 16, 16)], 0x4030_0000),
                "entry",
            ),
        ];
        for (file, why) in cases {
            let err = parse(&file, RAM).unwrap_err();
            assert!(err.0.contains(why), "{err} (wanted {why})");
        }
        // Program headers past the end of the file.
        let mut f = elf(&[(PT_LOAD, 0, 0x4020_0000, 16, 16)], 0x4020_0000);
        f[56..58].copy_from_slice(&100u16.to_le_bytes());
        assert_eq!(parse(&f, RAM), Err(TRUNCATED));
        // Overlapping segments.
        let f = elf(
            &[
                (PT_LOAD, payload, 0x4020_0000, 16, 0x100),
                (PT_LOAD, payload, 0x4020_0080, 16, 16),
            ],
            0x4020_0000,
        );
        assert!(parse(&f, RAM).unwrap_err().0.contains("overlap"));
    }

    #[test]
    fn every_truncation_of_a_good_file_is_refused_or_loads() {
        let payload = (EHDR_SIZE + PHDR_SIZE) as u64;
        let f = elf(&[(PT_LOAD, payload, 0x4020_0000, 16, 32)], 0x4020_0000);
        for len in 0..f.len() {
            assert!(parse(&f[..len], RAM).is_err(), "{len}");
        }
        assert!(parse(&f, RAM).is_ok());
    }
}
