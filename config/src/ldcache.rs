//! `/etc/ld.so.cache`, the dynamic loader's index of sonames, in glibc's
//! format "glibc-ld.so.cache1.1" (alone since glibc 2.32; after the old
//! "ld.so-1.7.0" table before). Read to find the host's driver libraries as
//! `ldconfig -p` lists them, and to give a command the distro's own cache
//! plus the driver's entries, without running anything inside the tree.

use std::cmp::Ordering;

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// magic, `nlibs`, `len_strings`, flags and padding, extension offset, unused.
const HEADER: usize = 20 + 4 + 4 + 4 + 4 + 12;
const ENTRY: usize = 4 + 4 + 4 + 4 + 8;
/// `cache_file_new_flags_endian_little`.
const LITTLE_ENDIAN: u8 = 2;
/// Entries for a glibc-hwcaps subdirectory; they index the extension
/// section, which a rewritten cache does not carry.
const HWCAP_EXTENSION: u64 = 1 << 62;
/// The most entries read; a real cache holds a few thousand.
const MAX_ENTRIES: usize = 1 << 16;

/// `FLAG_ELF_LIBC6` and the machine flags of `ldconfig -p`.
pub const FLAG_ELF_LIBC6: i32 = 0x0003;
pub const FLAG_X8664_LIB64: i32 = 0x0300;
pub const FLAG_AARCH64_LIB64: i32 = 0x0a00;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub flags: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub hwcap: u64,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn cstr_at(b: &[u8], at: usize) -> Option<Vec<u8>> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    Some(rest[..end].to_vec())
}

/// The entries of a cache, in its order; None when it is not one this
/// reads (another byte order, a truncated file).
pub fn parse(bytes: &[u8]) -> Option<Vec<Entry>> {
    let new = if bytes.starts_with(OLD_MAGIC) {
        // The old table: magic, nlibs, then 12-byte entries; the new
        // format follows, 8-byte aligned.
        let n = usize::try_from(u32_at(bytes, OLD_MAGIC.len() + 1)?).ok()?;
        let end = (OLD_MAGIC.len() + 1 + 4).checked_add(n.checked_mul(12)?)?;
        bytes.get(end.checked_add(7)? & !7..)?
    } else {
        bytes
    };
    if !new.starts_with(NEW_MAGIC) {
        return None;
    }
    if new.get(28).is_some_and(|&f| f != 0 && f != LITTLE_ENDIAN) || cfg!(target_endian = "big") {
        return None;
    }
    let n = usize::try_from(u32_at(new, 20)?).ok()?;
    if n > MAX_ENTRIES {
        return None;
    }
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let at = HEADER + i * ENTRY;
        let flags = i32::from_le_bytes(new.get(at..at + 4)?.try_into().ok()?);
        let key = cstr_at(new, usize::try_from(u32_at(new, at + 4)?).ok()?)?;
        let value = cstr_at(new, usize::try_from(u32_at(new, at + 8)?).ok()?)?;
        let hwcap = u64::from_le_bytes(new.get(at + 16..at + 24)?.try_into().ok()?);
        entries.push(Entry { flags, key, value, hwcap });
    }
    Some(entries)
}

/// glibc's `_dl_cache_libcmp`: runs of digits compare as numbers.
pub fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() {
        let (ca, cb) = (a[i], b.get(j).copied().unwrap_or(0));
        if ca.is_ascii_digit() {
            if !cb.is_ascii_digit() {
                return Ordering::Greater;
            }
            let (mut va, mut vb) = (0u64, 0u64);
            while i < a.len() && a[i].is_ascii_digit() {
                va = va.saturating_mul(10).saturating_add(u64::from(a[i] - b'0'));
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                vb = vb.saturating_mul(10).saturating_add(u64::from(b[j] - b'0'));
                j += 1;
            }
            if va != vb {
                return va.cmp(&vb);
            }
        } else if cb.is_ascii_digit() {
            return Ordering::Less;
        } else if ca != cb {
            return ca.cmp(&cb);
        } else {
            i += 1;
            j += 1;
        }
    }
    0u8.cmp(&b.get(j).copied().unwrap_or(0))
}

/// The distro's entries with `added` merged in: an added soname replaces
/// the distro's entry of the same name and flags; hwcaps-subdirectory
/// entries are left out (their libraries are found in the base directory
/// too). Sorted as ldconfig sorts, which the loader's binary search needs.
pub fn merge(distro: Vec<Entry>, added: &[Entry]) -> Vec<Entry> {
    let mut all: Vec<Entry> = distro
        .into_iter()
        .filter(|e| e.hwcap & HWCAP_EXTENSION == 0)
        .filter(|e| !added.iter().any(|a| a.key == e.key && a.flags == e.flags))
        .chain(added.iter().cloned())
        .collect();
    // ldconfig's `compare`, reversed names first, then flags and hwcap
    // descending.
    all.sort_by(|x, y| libcmp(&y.key, &x.key).then(y.flags.cmp(&x.flags)).then(y.hwcap.cmp(&x.hwcap)));
    all
}

/// The cache file for `entries`, in the new format alone.
pub fn write(entries: &[Entry]) -> Vec<u8> {
    let strings_at = HEADER + entries.len() * ENTRY;
    let mut strings: Vec<u8> = Vec::new();
    let mut table = Vec::with_capacity(entries.len() * ENTRY);
    let offset = |strings: &mut Vec<u8>, s: &[u8]| {
        let at = strings_at + strings.len();
        strings.extend_from_slice(s);
        strings.push(0);
        u32::try_from(at).unwrap_or(u32::MAX)
    };
    for e in entries {
        let key = offset(&mut strings, &e.key);
        let value = offset(&mut strings, &e.value);
        table.extend_from_slice(&e.flags.to_le_bytes());
        table.extend_from_slice(&key.to_le_bytes());
        table.extend_from_slice(&value.to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
        table.extend_from_slice(&e.hwcap.to_le_bytes());
    }
    let mut out = Vec::with_capacity(strings_at + strings.len());
    out.extend_from_slice(NEW_MAGIC);
    out.extend_from_slice(&u32::try_from(entries.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&u32::try_from(strings.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&[LITTLE_ENDIAN, 0, 0, 0]);
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&table);
    out.extend_from_slice(&strings);
    out
}

/// The cache flags for an ELF shared object, from its first 20 bytes; None
/// for anything else or a machine this does not know.
pub fn flags_for_elf(header: &[u8]) -> Option<i32> {
    if header.len() < 20 || !header.starts_with(b"\x7fELF") || header[5] != 1 {
        return None;
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    match (header[4], machine) {
        (2, 62) => Some(FLAG_ELF_LIBC6 | FLAG_X8664_LIB64),
        (2, 183) => Some(FLAG_ELF_LIBC6 | FLAG_AARCH64_LIB64),
        (1, 3) => Some(FLAG_ELF_LIBC6),
        _ => None,
    }
}

/// An ELF shared object's `DT_SONAME`, read through `read_at(offset,
/// buffer)`: the dynamic segment, the string table's address mapped to
/// its file offset through the load segments. Little-endian ELF32 and
/// ELF64; None for anything else.
pub fn elf_soname(read_at: impl Fn(u64, &mut [u8]) -> Option<usize>) -> Option<Vec<u8>> {
    let exact = |at: u64, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0; len];
        (read_at(at, &mut buf)? == len).then_some(buf)
    };
    let h = exact(0, 64)?;
    if !h.starts_with(b"\x7fELF") || h[5] != 1 {
        return None;
    }
    let wide = h[4] == 2;
    let word = |b: &[u8], at: usize| -> Option<u64> {
        if wide {
            Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
        } else {
            Some(u64::from(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?)))
        }
    };
    let half = |b: &[u8], at: usize| -> Option<u64> {
        Some(u64::from(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?)))
    };
    let (phoff, phentsize, phnum) = if wide {
        (word(&h, 32)?, half(&h, 54)?, half(&h, 56)?)
    } else {
        (word(&h, 28)?, half(&h, 42)?, half(&h, 44)?)
    };
    if phnum > 256 || phentsize < 32 {
        return None;
    }
    let phdrs = exact(phoff, usize::try_from(phentsize * phnum).ok()?)?;
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..usize::try_from(phnum).ok()? {
        let p = &phdrs[i * usize::try_from(phentsize).ok()?..];
        let kind = u32::from_le_bytes(p.get(0..4)?.try_into().ok()?);
        // (p_offset, p_vaddr, p_filesz)
        let seg = if wide {
            (word(p, 8)?, word(p, 16)?, word(p, 32)?)
        } else {
            (word(p, 4)?, word(p, 8)?, word(p, 16)?)
        };
        match kind {
            1 => loads.push(seg),
            2 => dynamic = Some(seg),
            _ => {}
        }
    }
    let (dyn_off, _, dyn_size) = dynamic?;
    let dyns = exact(dyn_off, usize::try_from(dyn_size.min(1 << 16)).ok()?)?;
    let entsize = if wide { 16 } else { 8 };
    let (mut strtab, mut soname) = (None, None);
    for e in dyns.chunks_exact(entsize) {
        let (tag, val) = (word(e, 0)?, word(e, entsize / 2)?);
        match tag {
            0 => break,
            5 => strtab = Some(val),
            14 => soname = Some(val),
            _ => {}
        }
    }
    let strtab = strtab?;
    let file_at = loads
        .iter()
        .find(|(_, vaddr, size)| (*vaddr..vaddr.saturating_add(*size)).contains(&strtab))
        .map(|(off, vaddr, _)| off + (strtab - vaddr))?;
    let mut buf = vec![0; 256];
    let n = read_at(file_at.checked_add(soname?)?, &mut buf)?;
    let end = buf[..n].iter().position(|&c| c == 0)?;
    buf.truncate(end);
    (!buf.is_empty() && !buf.contains(&b'/')).then_some(buf)
}

/// True for the 64-bit flags of this machine's own libraries.
pub fn is_native(flags: i32) -> bool {
    let native = if cfg!(target_arch = "aarch64") { FLAG_AARCH64_LIB64 } else { FLAG_X8664_LIB64 };
    flags & 0xff00 == native
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, value: &str) -> Entry {
        Entry { flags: 0x0303, key: key.into(), value: value.into(), hwcap: 0 }
    }

    #[test]
    fn sonames_are_read_from_the_dynamic_section() {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open("/lib/x86_64-linux-gnu/libc.so.6")
            .or_else(|_| std::fs::File::open("/lib64/libc.so.6"));
        let Ok(file) = file else { return };
        let soname = elf_soname(|at, buf| file.read_at(buf, at).ok());
        assert_eq!(soname.as_deref(), Some(&b"libc.so.6"[..]));
        assert_eq!(elf_soname(|_, _| Some(0)), None);
    }

    #[test]
    fn libcmp_compares_numbers_as_numbers() {
        assert_eq!(libcmp(b"libc.so.10", b"libc.so.9"), Ordering::Greater);
        assert_eq!(libcmp(b"libcuda.so.1", b"libcuda.so.1"), Ordering::Equal);
        assert_eq!(libcmp(b"libcuda.so", b"libcuda.so.1"), Ordering::Less);
        assert_eq!(libcmp(b"liba1", b"libab"), Ordering::Greater);
    }

    #[test]
    fn written_caches_read_back_sorted_and_this_hosts_cache_parses() {
        let merged = merge(
            vec![e("libz.so.1", "/usr/lib/libz.so.1"), e("libcuda.so.1", "/old")],
            &[e("libcuda.so.1", "/new/libcuda.so.1")],
        );
        let back = parse(&write(&merged)).unwrap();
        assert_eq!(back, merged);
        assert_eq!(back[0].key, b"libz.so.1");
        assert_eq!(back[1].value, b"/new/libcuda.so.1");
        if let Ok(host) = std::fs::read("/etc/ld.so.cache") {
            let entries = parse(&host).expect("this host's ld.so.cache parses");
            assert!(entries.iter().any(|e| e.key.starts_with(b"libc.so.")));
            let resorted = merge(entries.clone(), &[]);
            let plain: Vec<_> = entries.iter().filter(|e| e.hwcap & HWCAP_EXTENSION == 0).collect();
            assert_eq!(resorted.iter().collect::<Vec<_>>(), plain, "ldconfig's order is kept");
        }
    }
}
