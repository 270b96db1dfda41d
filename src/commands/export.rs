//! Launchers on the host for programs inside a distro.
//!
//! `--export NAME APP` turns a desktop entry of the distro into one in the
//! user's `applications` directory whose `Exec` runs through distrorun;
//! `--export-bin NAME TOOL` writes a wrapper script to `~/.local/bin`;
//! `--unexport NAME APP|TOOL` removes either again. Every file written here
//! carries a marker, and no file without it is ever overwritten or removed.
//!
//! Desktop entries are read as `GLib` reads them ([`DesktopFile`]), written
//! back from what was read, and the written launcher is read again: every
//! `Exec` and `TryExec` in it, in every group and every translation, must
//! run distrorun, or nothing is written. Values follow the Desktop Entry
//! Specification 1.5: a value is
//! first unescaped as a string (`\s`, `\n`, `\t`, `\r`, `\\`), then split
//! into arguments, where double quotes group and a backslash escapes `"`,
//! `` ` ``, `$` and `\` inside them. Field codes (`%f`, `%U`, ...) stand
//! alone and are kept for the host's launcher to expand.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use distrorun_config::Found;
use distrorun_engine::Error;
use nix::sys::stat::{fstat, SFlag};

use crate::cli::ExportRequest;
use crate::desktop_entry::{
    base_key, escape_string, join_exec, split_exec, unescape_string, Arg, DesktopFile,
};
use crate::exported::{marker, read_small, Home, BIN_MARK, ICON_KEY, MARK_KEY, MAX_READ};
use crate::{error, output, places, tree};

pub fn run(req: &ExportRequest) -> Result<(), Error> {
    let home = Home::from_env()?;
    match req {
        ExportRequest::App { distro, app } => export_app(&home, &places::find_config(distro)?, app),
        ExportRequest::Bin { distro, tool } => export_bin(&home, &places::find_config(distro)?, tool),
        ExportRequest::Remove { distro, what } => unexport(&home, distro, what),
    }
}

/// A file inside the distro, opened as the caller and resolved with the
/// distro's directory as `/`, so that its symlinks cannot lead out of it.
fn open_inside(found: &Found, dir: &OwnedFd, inside: &Path) -> Result<Option<OwnedFd>, Error> {
    match tree::open_inside(dir, inside) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::sys(format!("open {} in distro {}", inside.display(), found.name), e)),
    }
}

fn read_fd(fd: OwnedFd, shown: &Path) -> Result<Vec<u8>, Error> {
    let st = fstat(fd.as_fd()).map_err(|e| Error::sys(format!("examine {}", shown.display()), e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Error::msg(format!("cannot export {}: it is not a regular file", shown.display())));
    }
    let mut bytes = Vec::new();
    fs::File::from(fd)
        .take(MAX_READ + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error::io(format!("read {}", shown.display()), &e))?;
    if bytes.len() as u64 > MAX_READ {
        return Err(Error::msg(format!("cannot export {}: it is larger than 4 MiB", shown.display())));
    }
    Ok(bytes)
}

/// The desktop entry APP names: a path inside the distro, or a file name
/// (with or without `.desktop`) in its applications directories.
fn find_desktop_file(found: &Found, dir: &OwnedFd, app: &str) -> Result<(PathBuf, Vec<u8>), Error> {
    let candidates: Vec<PathBuf> = if app.starts_with('/') {
        vec![PathBuf::from(app)]
    } else if app.contains('/') || app.is_empty() {
        return Err(Error::msg(format!(
            "cannot export {app:?}: name a desktop file, or give its absolute path inside distro {}",
            found.name
        )));
    } else {
        let file = if app.ends_with(".desktop") { app.to_owned() } else { format!("{app}.desktop") };
        [
            "/usr/share/applications",
            "/usr/local/share/applications",
            "/var/lib/flatpak/exports/share/applications",
        ]
        .iter()
        .map(|d| Path::new(d).join(&file))
        .collect()
    };
    for inside in &candidates {
        if let Some(fd) = open_inside(found, dir, inside)? {
            return Ok((inside.clone(), read_fd(fd, inside)?));
        }
    }
    Err(Error::msg(format!(
        "cannot export {app}: distro {} has no {}",
        found.name,
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
    )))
}

/// `--export NAME APP`.
fn export_app(home: &Home, found: &Found, app: &str) -> Result<(), Error> {
    let dir = tree::open_distro(&found.distro.dir, &found.name)?;
    let (inside, bytes) = find_desktop_file(found, &dir, app)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::msg(format!("cannot export {}: it is not UTF-8, as desktop entries must be", inside.display()))
    })?;
    let stem = inside.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let target = home.applications.join(format!("distrorun-{}-{stem}.desktop", found.name));
    refuse_foreign(&target)?;
    let parsed = DesktopFile::parse(&text).map_err(|why| {
        Error::msg(format!("cannot export {}: it is not a valid desktop entry: {why}", inside.display()))
    })?;
    let icon = match parsed.main_value("Icon") {
        Some(icon) => copy_icon(home, found, &dir, icon)?,
        None => None,
    };
    let distrorun = std::env::current_exe().map_err(|e| error::io("find distrorun's own path", &e))?;
    let entry = rewrite_entry(parsed, &distrorun, &found.name, app, icon.as_ref())
        .map_err(|why| Error::msg(format!("cannot export {}: {why}", inside.display())))?;
    write_file(&target, entry.as_bytes(), 0o644)?;
    output::print(&format!("{}\n", target.display()));
    Ok(())
}

/// A copy of the entry's icon in the user's icon directory, as
/// `(Icon value, file)`: a theme name found in the distro's hicolor theme
/// or pixmaps, or an absolute path inside the distro. None when the distro
/// has no such icon; the launcher then shows the host's icon of that name.
fn copy_icon(
    home: &Home,
    found: &Found,
    dir: &OwnedFd,
    icon: &str,
) -> Result<Option<(String, PathBuf)>, Error> {
    let mut candidates = Vec::new();
    if icon.starts_with('/') {
        candidates.push((PathBuf::from(icon), None));
    } else if !icon.contains('/') && !icon.is_empty() {
        for size in ["scalable", "512x512", "256x256", "128x128", "64x64", "48x48", "32x32"] {
            for ext in ["svg", "png"] {
                let p = Path::new("/usr/share/icons/hicolor")
                    .join(size)
                    .join("apps")
                    .join(format!("{icon}.{ext}"));
                candidates.push((p, Some(size)));
            }
        }
        for ext in ["svg", "png", "xpm"] {
            candidates.push((Path::new("/usr/share/pixmaps").join(format!("{icon}.{ext}")), None));
        }
    }
    for (inside, size) in candidates {
        let Some(fd) = open_inside(found, dir, &inside)? else { continue };
        let bytes = read_fd(fd, &inside)?;
        let ext = inside.extension().map_or_else(String::new, |e| e.to_string_lossy().into_owned());
        let base = inside.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let name = format!("distrorun-{}-{base}", found.name);
        // A themed icon keeps its size; the rest go to the theme's
        // fallback size, referred to by absolute path.
        let (dest, value) = if let Some(size) = size {
            (home.icons.join("hicolor").join(size).join("apps").join(format!("{name}.{ext}")), name)
        } else {
            let dest = home.icons.join(format!("{name}.{ext}"));
            let value = dest.display().to_string();
            (dest, value)
        };
        refuse_foreign_icon(&dest)?;
        write_file(&dest, &bytes, 0o644)?;
        return Ok(Some((value, dest)));
    }
    Ok(None)
}

/// The entry as exported: `Exec` and `TryExec` run through distrorun in
/// every group (actions included) and every translation, the name carries
/// the distro's, the icon is the copy, D-Bus activation (which would start
/// the host's service) is off, and the markers are added. Everything else
/// is kept as it was. The text is read back and checked before it is used.
fn rewrite_entry(
    mut entry: DesktopFile,
    distrorun: &Path,
    distro: &str,
    app: &str,
    icon: Option<&(String, PathBuf)>,
) -> Result<String, String> {
    if entry.group("Desktop Entry").is_none() {
        return Err("it has no [Desktop Entry] group".into());
    }
    let try_exec = escape_string(&distrorun.display().to_string());
    for group in &mut entry.groups {
        let main = group.name == "Desktop Entry";
        let mut kept = Vec::with_capacity(group.entries.len() + 2);
        for (key, value) in group.entries.drain(..) {
            let value = match base_key(&key) {
                "Exec" => join_exec(distrorun, distro, &split_exec(&value)?),
                "TryExec" => try_exec.clone(),
                "Name" if main => format!("{value} ({distro})"),
                "Icon" if main && icon.is_some() => {
                    escape_string(&icon.map(|i| i.0.clone()).unwrap_or_default())
                }
                "DBusActivatable" if main => continue,
                k if k == MARK_KEY || k == ICON_KEY => continue,
                _ => value,
            };
            kept.push((key, value));
        }
        if main {
            kept.push((MARK_KEY.to_owned(), format!("{distro} {}", escape_string(app))));
            if let Some((_, file)) = icon {
                kept.push((ICON_KEY.to_owned(), escape_string(&file.display().to_string())));
            }
        }
        group.entries = kept;
    }
    let text = entry.to_text(&format!(
        "# Written by distrorun --export; `distrorun --unexport {distro} {app}` removes it.\n"
    ));
    check_launcher(&text, distrorun, distro)?;
    Ok(text)
}

/// Reads the launcher back as a desktop will: every `Exec` and `TryExec`
/// must start distrorun for the distro.
fn check_launcher(text: &str, distrorun: &Path, distro: &str) -> Result<(), String> {
    let parsed = DesktopFile::parse(text).map_err(|why| format!("the launcher would not be valid: {why}"))?;
    let ours = Arg::Word(distrorun.display().to_string());
    for group in &parsed.groups {
        for (key, value) in &group.entries {
            let runs_distrorun = match base_key(key) {
                "Exec" => split_exec(value).is_ok_and(|args| {
                    args.len() > 2 && args[0] == ours && args[1] == Arg::Word(distro.to_owned())
                }),
                "TryExec" => unescape_string(value) == distrorun.display().to_string(),
                _ => true,
            };
            if !runs_distrorun {
                return Err(format!(
                    "in the launcher, {key} of [{}] would not run through distrorun",
                    group.name
                ));
            }
        }
    }
    Ok(())
}

/// `--export-bin NAME TOOL`.
fn export_bin(home: &Home, found: &Found, tool: &str) -> Result<(), Error> {
    if !tool.starts_with('/') {
        return Err(Error::msg(format!(
            "cannot export {tool:?}: give the tool's absolute path inside distro {}",
            found.name
        )));
    }
    if tool.contains(['\n', '\'']) {
        return Err(Error::msg(format!("cannot export {tool:?}: the path holds a quote or a newline")));
    }
    let dir = tree::open_distro(&found.distro.dir, &found.name)?;
    let inside = Path::new(tool);
    let Some(fd) = open_inside(found, &dir, inside)? else {
        return Err(Error::msg(format!("cannot export {tool}: distro {} has no such file", found.name)));
    };
    let st = fstat(fd.as_fd()).map_err(|e| Error::sys(format!("examine {tool}"), e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG || st.st_mode & 0o111 == 0 {
        return Err(Error::msg(format!(
            "cannot export {tool}: it is not an executable file in distro {}",
            found.name
        )));
    }
    let Some(base) = inside.file_name() else {
        return Err(Error::msg(format!("cannot export {tool}: it names no file")));
    };
    let target = home.bin.join(base);
    refuse_foreign(&target)?;
    let distrorun = std::env::current_exe().map_err(|e| error::io("find distrorun's own path", &e))?;
    let script = format!(
        "#!/bin/sh\n{BIN_MARK} {name} {tool}\n# Written by distrorun --export-bin; `distrorun --unexport {name} {tool}` removes it.\nexec {} {} {} \"$@\"\n",
        sh_quote(distrorun.as_os_str()),
        sh_quote(OsStr::new(&found.name)),
        sh_quote(OsStr::new(tool)),
        name = found.name,
    );
    write_file(&target, script.as_bytes(), 0o755)?;
    output::print(&format!("{}\n", target.display()));
    Ok(())
}

fn sh_quote(word: &OsStr) -> String {
    format!("'{}'", String::from_utf8_lossy(word.as_bytes()).replace('\'', r"'\''"))
}

/// `--unexport NAME WHAT`: removes the launcher or script that exported
/// exactly WHAT from NAME, and the icon copied for it.
fn unexport(home: &Home, distro: &str, what: &str) -> Result<(), Error> {
    let matches: Vec<PathBuf> = home
        .exports()
        .into_iter()
        // A tool by its exact path; an app also by its name without the
        // directory or `.desktop`, as --export accepted it.
        .filter(|(d, w, file)| {
            d == distro
                && (w == what || (!file.starts_with(&home.bin) && strip_desktop(w) == strip_desktop(what)))
        })
        .map(|(_, _, file)| file)
        .collect();
    if matches.is_empty() {
        return Err(Error::msg(format!(
            "cannot unexport {what}: distrorun exported nothing by that name from {distro}"
        ))
        .with_hint("distrorun --list shows what is exported"));
    }
    for file in matches {
        let text = read_small(&file).map_err(|e| error::io(format!("read {}", file.display()), &e))?;
        let text = String::from_utf8_lossy(&text);
        let parsed = DesktopFile::parse(&text).unwrap_or_default();
        if let Some(icon) = parsed.main_value(ICON_KEY) {
            let icon = PathBuf::from(unescape_string(icon));
            if icon.starts_with(&home.icons) {
                match fs::remove_file(&icon) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(error::io(format!("remove {}", icon.display()), &e)),
                }
            }
        }
        fs::remove_file(&file).map_err(|e| error::io(format!("remove {}", file.display()), &e))?;
        output::print(&format!("{}\n", file.display()));
    }
    Ok(())
}

fn strip_desktop(app: &str) -> &str {
    let base = app.rsplit('/').next().unwrap_or(app);
    base.strip_suffix(".desktop").unwrap_or(base)
}

/// Refuses to replace a file that distrorun did not write.
fn refuse_foreign(target: &Path) -> Result<(), Error> {
    match read_small(target) {
        Ok(text) if marker(&text).is_some() => Ok(()),
        Ok(_) => {
            Err(Error::msg(format!("refusing to overwrite {}: distrorun did not write it", target.display()))
                .with_hint("move it away first if it should be replaced"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::msg(format!("refusing to overwrite {}: {}", target.display(), error::text(&e)))),
    }
}

/// Icons carry no marker of their own; a file of that name that is not a
/// copy distrorun made (named `distrorun-NAME-...`) is left alone, so only
/// an existing file is refused when its launcher is not ours.
fn refuse_foreign_icon(target: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => {
            Err(Error::msg(format!("refusing to overwrite {}: it is not a regular file", target.display())))
        }
        Err(_) => Ok(()),
    }
}

/// Writes through a temporary file and a rename, so that a launcher is
/// never seen half written.
fn write_file(target: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let fail = |e: std::io::Error| error::io(format!("write {}", target.display()), &e);
    let parent = target.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent).map_err(fail)?;
    let tmp = parent.join(format!(
        ".{}.distrorun-{}",
        target.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.set_permissions(fs::Permissions::from_mode(mode))
        })
        .and_then(|()| fs::rename(&tmp, target));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_rewritten_and_marked() {
        let text =
            "[Desktop Entry]\nType=Application\nName=Gimp\nName[de]=Gimp DE\nExec=gimp %U\nTryExec=gimp\n\
            Icon=gimp\nStartupWMClass=gimp-2.10\nDBusActivatable=true\nX-Distrorun-Exported=forged x\n\n\
            [Desktop Action new]\nName=New Window\nExec=gimp --new\n";
        let icon = ("distrorun-rocky9-gimp".to_owned(), PathBuf::from("/h/icons/x.png"));
        let parsed = DesktopFile::parse(text).unwrap();
        let out =
            rewrite_entry(parsed, Path::new("/usr/bin/distrorun"), "rocky9", "gimp", Some(&icon)).unwrap();
        for want in [
            "Name=Gimp (rocky9)\n",
            "Name[de]=Gimp DE (rocky9)\n",
            "Exec=/usr/bin/distrorun rocky9 gimp %U\n",
            "TryExec=/usr/bin/distrorun\n",
            "Icon=distrorun-rocky9-gimp\n",
            "StartupWMClass=gimp-2.10\n",
            "X-Distrorun-Exported=rocky9 gimp\n",
            "X-Distrorun-Icon=/h/icons/x.png\n",
            "[Desktop Action new]\nName=New Window\nExec=/usr/bin/distrorun rocky9 gimp --new\n",
        ] {
            assert!(out.contains(want), "{want:?} missing from:\n{out}");
        }
        assert!(!out.contains("DBusActivatable"), "{out}");
        assert!(!out.contains("forged"), "{out}");
        assert_eq!(marker(out.as_bytes()), Some(("rocky9".into(), "gimp".into())));
        let other = DesktopFile::parse("[Other]\nExec=x\n").unwrap();
        assert!(rewrite_entry(other, Path::new("/d"), "r", "a", None).is_err());
        // An indented duplicate Exec is the one a desktop runs: it is the
        // one rewritten, and no second Exec is left.
        let sneaky = DesktopFile::parse("[Desktop Entry]\nExec=true\n\tExec=sh -c evil\n").unwrap();
        let out = rewrite_entry(sneaky, Path::new("/d"), "r", "a", None).unwrap();
        assert_eq!(out.matches("Exec=").count(), 1, "{out}");
        assert!(out.contains("Exec=/d r sh -c evil\n"), "{out}");
    }
}
