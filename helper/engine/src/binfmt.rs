//! Why a program that is there would not run: the ELF interpreter it names
//! is missing, it is built for another architecture, or the interpreter of
//! its `#!` line is missing. The kernel answers all of these with ENOENT or
//! ENOEXEC, which alone would read as "command not found".
//!
//! Only the failure path of the exec comes here, after the root switch and,
//! under the helper, after the privilege drop: every path is resolved
//! inside the distro, with the caller's rights, as the kernel resolved them.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What the kernel reads of a `#!` line (`BINPRM_BUF_SIZE`).
const SHEBANG_MAX: usize = 256;
/// A `#!` interpreter may itself be a script; the kernel follows four.
const MAX_DEPTH: usize = 4;
/// No `PT_INTERP` path is longer than a path may be.
const INTERP_MAX: u64 = 4096;
const PT_INTERP: u32 = 3;

/// Why `path` could not be executed, where the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// An ELF program whose interpreter (dynamic loader) is not there.
    MissingLoader { interp: PathBuf },
    /// An ELF program for another machine; `interp` is its loader, when it
    /// names one, and whether that loader is in the distro.
    ForeignMachine { machine: u16, interp: Option<(PathBuf, bool)> },
    /// A script whose `#!` interpreter is not there.
    MissingInterpreter { interp: PathBuf },
    /// A script whose `#!` interpreter is there but cannot run itself.
    BrokenInterpreter { interp: PathBuf, why: Box<Reason> },
}

impl Reason {
    /// The sentence that follows "cannot run PATH in distro NAME: ".
    pub fn describe(&self) -> String {
        match self {
            Reason::MissingLoader { interp } => format!(
                "its ELF interpreter {} is missing from the distro: No such file or directory",
                interp.display()
            ),
            Reason::ForeignMachine { machine, interp } => {
                let mut s = format!(
                    "it is a program for {}, and this machine runs {} programs",
                    machine_name(*machine),
                    machine_name(HOST_MACHINE)
                );
                if let Some((interp, false)) = interp {
                    let _ = write!(s, ", and its ELF interpreter {} is missing from the distro", interp.display());
                }
                s + ": Exec format error"
            }
            Reason::MissingInterpreter { interp } => format!(
                "the interpreter its #! line names, {}, is missing from the distro: No such file or directory",
                interp.display()
            ),
            Reason::BrokenInterpreter { interp, why } => {
                format!("the interpreter its #! line names, {}, cannot run: {}", interp.display(), why.describe())
            }
        }
    }

    /// What to do about it, where there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Reason::ForeignMachine { .. } => Some(
                "programs of another architecture run through binfmt_misc and qemu-user: register a \
                 static qemu-user with the fix-binary flag (Debian: apt install qemu-user-static)"
                    .to_owned(),
            ),
            Reason::BrokenInterpreter { why, .. } => why.hint(),
            Reason::MissingLoader { .. } | Reason::MissingInterpreter { .. } => None,
        }
    }
}

/// Whether `path` starts as an ELF file does.
pub fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path).ok().and_then(|f| read_upto(&f, 0, &mut magic)) == Some(4) && magic == *b"\x7fELF"
}

/// Reads `path` and says why it would not run, or None when it cannot tell
/// (unreadable, or nothing wrong that the file shows).
pub fn diagnose(path: &Path) -> Option<Reason> {
    diagnose_at(path, 0)
}

fn diagnose_at(path: &Path, depth: usize) -> Option<Reason> {
    let file = File::open(path).ok()?;
    let mut head = [0u8; SHEBANG_MAX];
    let len = read_upto(&file, 0, &mut head)?;
    let head = &head[..len];
    if let Some(elf) = Elf::parse(head) {
        let interp = elf.interp(&file);
        if !compatible(elf.machine) {
            return Some(Reason::ForeignMachine {
                machine: elf.machine,
                interp: interp.map(|i| {
                    let present = i.exists();
                    (i, present)
                }),
            });
        }
        return interp.filter(|i| !i.exists()).map(|interp| Reason::MissingLoader { interp });
    }
    let interp = shebang(head)?;
    if !interp.exists() {
        return Some(Reason::MissingInterpreter { interp });
    }
    if depth + 1 >= MAX_DEPTH {
        return None;
    }
    let why = diagnose_at(&interp, depth + 1)?;
    Some(Reason::BrokenInterpreter { interp, why: Box::new(why) })
}

fn read_upto(file: &File, offset: u64, buf: &mut [u8]) -> Option<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(done)
}

/// The interpreter of a `#!` line as the kernel reads it: after `#!` and
/// blanks, up to the next blank or the end of the line.
fn shebang(head: &[u8]) -> Option<PathBuf> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let word = line.split(|&b| b == b' ' || b == b'\t').find(|w| !w.is_empty())?;
    let word = word.strip_suffix(b"\r").unwrap_or(word);
    (!word.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(word)))
}

/// What this code needs of an ELF header.
struct Elf {
    wide: bool,
    little: bool,
    machine: u16,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
}

impl Elf {
    fn parse(head: &[u8]) -> Option<Elf> {
        if head.len() < 52 || !head.starts_with(b"\x7fELF") {
            return None;
        }
        let wide = match head[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let little = match head[5] {
            1 => true,
            2 => false,
            _ => return None,
        };
        let mut elf = Elf { wide, little, machine: 0, phoff: 0, phentsize: 0, phnum: 0 };
        elf.machine = elf.u16_at(head, 18)?;
        if wide {
            elf.phoff = elf.u64_at(head, 32)?;
            elf.phentsize = elf.u16_at(head, 54)?;
            elf.phnum = elf.u16_at(head, 56)?;
        } else {
            elf.phoff = u64::from(elf.u32_at(head, 28)?);
            elf.phentsize = elf.u16_at(head, 42)?;
            elf.phnum = elf.u16_at(head, 44)?;
        }
        Some(elf)
    }

    fn u16_at(&self, b: &[u8], at: usize) -> Option<u16> {
        let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.little { u16::from_le_bytes(bytes) } else { u16::from_be_bytes(bytes) })
    }

    fn u32_at(&self, b: &[u8], at: usize) -> Option<u32> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.little { u32::from_le_bytes(bytes) } else { u32::from_be_bytes(bytes) })
    }

    fn u64_at(&self, b: &[u8], at: usize) -> Option<u64> {
        let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.little { u64::from_le_bytes(bytes) } else { u64::from_be_bytes(bytes) })
    }

    /// The path `PT_INTERP` names, read from the file.
    fn interp(&self, file: &File) -> Option<PathBuf> {
        let size = if self.wide { 56 } else { 32 };
        if usize::from(self.phentsize) < size {
            return None;
        }
        for i in 0..u64::from(self.phnum) {
            let mut ph = [0u8; 56];
            let at = self.phoff.checked_add(i.checked_mul(u64::from(self.phentsize))?)?;
            if read_upto(file, at, &mut ph[..size])? < size {
                return None;
            }
            if self.u32_at(&ph, 0)? != PT_INTERP {
                continue;
            }
            let (offset, len) = if self.wide {
                (self.u64_at(&ph, 8)?, self.u64_at(&ph, 32)?)
            } else {
                (u64::from(self.u32_at(&ph, 4)?), u64::from(self.u32_at(&ph, 16)?))
            };
            let mut name = vec![0u8; usize::try_from(len.min(INTERP_MAX)).ok()?];
            let got = read_upto(file, offset, &mut name)?;
            name.truncate(got);
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            name.truncate(end);
            return (!name.is_empty()).then(|| PathBuf::from(OsString::from_vec(name)));
        }
        None
    }
}

/// This build's ELF machine.
#[cfg(target_arch = "x86_64")]
const HOST_MACHINE: u16 = 62;
#[cfg(target_arch = "aarch64")]
const HOST_MACHINE: u16 = 183;
#[cfg(target_arch = "x86")]
const HOST_MACHINE: u16 = 3;
#[cfg(target_arch = "arm")]
const HOST_MACHINE: u16 = 40;
#[cfg(target_arch = "riscv64")]
const HOST_MACHINE: u16 = 243;
#[cfg(target_arch = "powerpc64")]
const HOST_MACHINE: u16 = 21;
#[cfg(target_arch = "s390x")]
const HOST_MACHINE: u16 = 22;
#[cfg(target_arch = "loongarch64")]
const HOST_MACHINE: u16 = 258;

/// Whether the kernel of this machine can run `machine` natively: its own,
/// and the 32-bit one it usually also runs (i386 on x86-64, arm on
/// aarch64).
fn compatible(machine: u16) -> bool {
    machine == HOST_MACHINE || matches!((HOST_MACHINE, machine), (62, 3) | (183, 40))
}

fn machine_name(machine: u16) -> String {
    let name = match machine {
        3 => "i386",
        8 => "mips",
        20 => "powerpc",
        21 => "ppc64",
        22 => "s390x",
        40 => "arm",
        62 => "x86-64",
        183 => "aarch64",
        243 => "riscv",
        258 => "loongarch",
        _ => return format!("ELF machine {machine}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-bit little-endian ELF header with one `PT_INTERP` naming `interp`.
    fn elf64(machine: u16, interp: &str) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
        let offset = f.len() as u64;
        f[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        f.extend_from_slice(interp.as_bytes());
        f.push(0);
        f
    }

    fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("distrorun-binfmt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_missing_loader_is_named() {
        let d = scratch("loader");
        let p = file_with(&d, "prog", &elf64(HOST_MACHINE, "/no/such/ld.so"));
        assert_eq!(diagnose(&p), Some(Reason::MissingLoader { interp: "/no/such/ld.so".into() }));
        let present = file_with(&d, "ld.so", b"");
        let p = file_with(&d, "prog2", &elf64(HOST_MACHINE, present.to_str().unwrap()));
        assert_eq!(diagnose(&p), None, "nothing to say when the loader is there");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn another_machine_is_named_with_its_loader() {
        let d = scratch("foreign");
        let other = if HOST_MACHINE == 22 { 183 } else { 22 };
        let p = file_with(&d, "prog", &elf64(other, "/lib/ld64.so.1"));
        let why = diagnose(&p).unwrap();
        assert_eq!(
            why,
            Reason::ForeignMachine { machine: other, interp: Some(("/lib/ld64.so.1".into(), false)) }
        );
        let text = why.describe();
        assert!(text.contains(&machine_name(other)) && text.contains(&machine_name(HOST_MACHINE)), "{text}");
        assert!(text.contains("/lib/ld64.so.1"), "{text}");
        assert!(why.hint().unwrap().contains("qemu-user"));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_script_names_its_interpreter_not_itself() {
        let d = scratch("script");
        let p = file_with(&d, "tool", b"#!  /no/such/python3 -u\nprint(1)\n");
        assert_eq!(diagnose(&p), Some(Reason::MissingInterpreter { interp: "/no/such/python3".into() }));
        // The interpreter is there, but it is a program whose loader is not.
        let broken = file_with(&d, "interp", &elf64(HOST_MACHINE, "/no/such/ld.so"));
        let p = file_with(&d, "tool2", format!("#!{}\n", broken.display()).as_bytes());
        let why = diagnose(&p).unwrap();
        assert!(matches!(&why, Reason::BrokenInterpreter { interp, .. } if *interp == broken), "{why:?}");
        assert!(why.describe().contains("/no/such/ld.so"), "{}", why.describe());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn shebang_lines_read_as_the_kernel_reads_them() {
        assert_eq!(shebang(b"#!/bin/sh\n"), Some("/bin/sh".into()));
        assert_eq!(shebang(b"#! /usr/bin/env python3\n"), Some("/usr/bin/env".into()));
        assert_eq!(shebang(b"#!\t/bin/bash\r\n"), Some("/bin/bash".into()));
        assert_eq!(shebang(b"#!\n"), None);
        assert_eq!(shebang(b"echo hi\n"), None);
    }

    #[test]
    fn truncated_or_odd_elf_headers_say_nothing() {
        assert!(Elf::parse(b"\x7fELF").is_none());
        let mut odd = elf64(HOST_MACHINE, "/x");
        odd[4] = 9;
        assert!(Elf::parse(&odd).is_none());
    }
}
