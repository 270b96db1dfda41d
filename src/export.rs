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
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::desktop_entry::{base_key, DesktopFile};
use distrorun_config::{load, paths, Found};
use distrorun_engine::Error;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// The key that marks a desktop entry as distrorun's: `NAME APP`.
const MARK_KEY: &str = "X-Distrorun-Exported";
/// The key naming the icon file distrorun copied for the entry.
const ICON_KEY: &str = "X-Distrorun-Icon";
/// The line that marks a wrapper script as distrorun's.
const BIN_MARK: &str = "# distrorun-exported:";
/// Desktop entries, icons and scripts larger than this are not read.
const MAX_READ: u64 = 4 << 20;

/// What `--export`, `--export-bin` or `--unexport` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    App { distro: String, app: String },
    Bin { distro: String, tool: String },
    Remove { distro: String, what: String },
}

pub fn run(req: &Request) -> Result<(), Error> {
    let home = Home::from_env()?;
    match req {
        Request::App { distro, app } => export_app(&home, &find(distro)?, app),
        Request::Bin { distro, tool } => export_bin(&home, &find(distro)?, tool),
        Request::Remove { distro, what } => unexport(&home, distro, what),
    }
}

fn find(name: &str) -> Result<Found, Error> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME");
    let home = std::env::var_os("HOME");
    let user = load::user_config_dir(xdg.as_deref().map(Path::new), home.as_deref().map(Path::new));
    Ok(load::find(name, &paths::system_config_dir(), user.as_deref())?)
}

/// Where the user's launchers, icons and scripts go.
struct Home {
    applications: PathBuf,
    icons: PathBuf,
    bin: PathBuf,
}

impl Home {
    fn from_env() -> Result<Home, Error> {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
            .ok_or_else(|| Error::msg("cannot export: $HOME is not set to an absolute path"))?;
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute())
            .unwrap_or_else(|| home.join(".local/share"));
        Ok(Home {
            applications: data.join("applications"),
            icons: data.join("icons"),
            bin: home.join(".local/bin"),
        })
    }

    /// Every launcher and script distrorun wrote, as `(distro, what, file)`.
    fn exports(&self) -> Vec<(String, String, PathBuf)> {
        let mut out = Vec::new();
        for dir in [&self.applications, &self.bin] {
            let Ok(entries) = fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if let Some((distro, what)) = read_small(&path).ok().and_then(|t| marker(&t)) {
                    out.push((distro, what, path));
                }
            }
        }
        out.sort();
        out
    }
}

/// `NAME\texport\tWHAT\tFILE` lines for `--list`, one per export.
pub fn list_lines() -> String {
    let Ok(home) = Home::from_env() else { return String::new() };
    let mut out = String::new();
    for (distro, what, file) in home.exports() {
        let _ = writeln!(out, "{distro}\texport\t{what}\t{}", file.display());
    }
    out
}

/// The distro and the exported app or tool a file of ours names, or None
/// for a file distrorun did not write.
fn marker(text: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(text);
    text.lines().find_map(|l| {
        let value = l
            .strip_prefix(MARK_KEY)
            .and_then(|r| r.strip_prefix('='))
            .or_else(|| l.strip_prefix(BIN_MARK))?;
        let (distro, what) = value.trim().split_once(' ')?;
        Some((distro.to_owned(), what.to_owned()))
    })
}

/// A small regular file of the user's, opened without following a symlink
/// and without waiting: a FIFO (or a device) put where a launcher goes is
/// refused, never read.
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let file = fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_READ).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A file inside the distro, opened as the caller and resolved with the
/// distro's directory as `/`, so that its symlinks cannot lead out of it.
fn open_inside(found: &Found, dir: &OwnedFd, inside: &Path) -> Result<Option<OwnedFd>, Error> {
    let relative = inside.strip_prefix("/").unwrap_or(inside);
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(dir.as_fd(), relative, how) {
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
        .map_err(|e| Error::msg(format!("cannot read {}: {e}", shown.display())))?;
    if bytes.len() as u64 > MAX_READ {
        return Err(Error::msg(format!("cannot export {}: it is larger than 4 MiB", shown.display())));
    }
    Ok(bytes)
}

fn distro_dir(found: &Found) -> Result<OwnedFd, Error> {
    let dir = &found.distro.dir;
    open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open the directory {} of distro {}", dir.display(), found.name), e))
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
    let dir = distro_dir(found)?;
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
    let distrorun =
        std::env::current_exe().map_err(|e| Error::msg(format!("cannot find distrorun's own path: {e}")))?;
    let entry = rewrite_entry(parsed, &distrorun, &found.name, app, icon.as_ref())
        .map_err(|why| Error::msg(format!("cannot export {}: {why}", inside.display())))?;
    write_file(&target, entry.as_bytes(), 0o644)?;
    say(&target);
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

/// One argument of an `Exec` line: a field code, kept for the launcher to
/// expand, or a literal word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Field(char),
    Word(String),
}

/// The string-level escapes of a desktop entry value.
fn unescape_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) if other != '\\' => {
                out.push('\\');
                out.push(other);
            }
            // `\\`, or a lone backslash at the end.
            Some(_) | None => out.push('\\'),
        }
    }
    out
}

fn escape_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Splits an `Exec` value into its arguments, per the specification.
fn split_exec(value: &str) -> Result<Vec<Arg>, String> {
    let value = unescape_string(value);
    let mut args = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let Some(&first) = chars.peek() else { break };
        if first == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '`' | '$' | '\\')) => word.push(c),
                        Some(c) => {
                            return Err(format!(
                                "its Exec line escapes {c:?} inside quotes, which is not allowed"
                            ))
                        }
                        None => return Err("its Exec line ends inside quotes".into()),
                    },
                    Some(c) => word.push(c),
                    None => return Err("its Exec line has an unclosed quote".into()),
                }
            }
            args.push(Arg::Word(word.replace("%%", "%")));
            continue;
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| *c != ' ' && *c != '\t') {
            word.push(c);
        }
        let mut code = word.chars();
        match (code.next(), code.next(), code.next()) {
            (Some('%'), Some(f), None) if "fFuUick".contains(f) => args.push(Arg::Field(f)),
            // Deprecated codes expand to nothing.
            (Some('%'), Some(f), None) if "dDnNvm".contains(f) => {}
            _ => args.push(Arg::Word(word.replace("%%", "%"))),
        }
    }
    if args.is_empty() {
        return Err("its Exec line is empty".into());
    }
    Ok(args)
}

/// Characters that make the specification require quoting an argument.
const RESERVED: &[char] =
    &[' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')', '`'];

fn quote_arg(word: &str) -> String {
    let word = word.replace('%', "%%");
    if !word.is_empty() && !word.contains(RESERVED) {
        return word;
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `distrorun NAME ARGS...` as an `Exec` value.
fn join_exec(distrorun: &Path, distro: &str, args: &[Arg]) -> String {
    let mut words = vec![quote_arg(&distrorun.display().to_string()), quote_arg(distro)];
    for a in args {
        words.push(match a {
            Arg::Field(f) => format!("%{f}"),
            Arg::Word(w) => quote_arg(w),
        });
    }
    escape_string(&words.join(" "))
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
    let dir = distro_dir(found)?;
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
    let distrorun =
        std::env::current_exe().map_err(|e| Error::msg(format!("cannot find distrorun's own path: {e}")))?;
    let script = format!(
        "#!/bin/sh\n{BIN_MARK} {name} {tool}\n# Written by distrorun --export-bin; `distrorun --unexport {name} {tool}` removes it.\nexec {} {} {} \"$@\"\n",
        sh_quote(distrorun.as_os_str()),
        sh_quote(OsStr::new(&found.name)),
        sh_quote(OsStr::new(tool)),
        name = found.name,
    );
    write_file(&target, script.as_bytes(), 0o755)?;
    say(&target);
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
        let text =
            read_small(&file).map_err(|e| Error::msg(format!("cannot read {}: {e}", file.display())))?;
        let text = String::from_utf8_lossy(&text);
        let parsed = DesktopFile::parse(&text).unwrap_or_default();
        if let Some(icon) = parsed.main_value(ICON_KEY) {
            let icon = PathBuf::from(unescape_string(icon));
            if icon.starts_with(&home.icons) {
                match fs::remove_file(&icon) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::msg(format!("cannot remove {}: {e}", icon.display()))),
                }
            }
        }
        fs::remove_file(&file).map_err(|e| Error::msg(format!("cannot remove {}: {e}", file.display())))?;
        say(&file);
    }
    Ok(())
}

/// Prints a path written or removed, on stdout, where scripts expect it.
fn say(path: &Path) {
    // Asked for explicitly; a closed stdout is not worth an error.
    let _ = writeln!(std::io::stdout(), "{}", path.display());
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
        Err(e) => Err(Error::msg(format!("refusing to overwrite {}: {}", target.display(), errno_or(&e)))),
    }
}

fn errno_or(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
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
    let fail = |e: std::io::Error| Error::msg(format!("cannot write {}: {e}", target.display()));
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
    fn exec_lines_split_per_the_specification() {
        let args = split_exec(r#"gimp-2.10 --new "a \"b\" \\\\c" %U %i x%%y %d"#).unwrap();
        assert_eq!(
            args,
            [
                Arg::Word("gimp-2.10".into()),
                Arg::Word("--new".into()),
                Arg::Word(r#"a "b" \c"#.into()),
                Arg::Field('U'),
                Arg::Field('i'),
                Arg::Word("x%y".into()),
            ]
        );
        assert!(split_exec(r#"app "unclosed"#).is_err());
        assert!(split_exec("").is_err());
        // String escapes come first, so `\s` separates like a space.
        assert_eq!(split_exec(r"a\sb").unwrap(), [Arg::Word("a".into()), Arg::Word("b".into())]);
    }

    #[test]
    fn rewritten_exec_lines_round_trip() {
        let original = [
            Arg::Word("/opt/My App/bin/run".into()),
            Arg::Word(r#"--title=It's "fine" \ $HOME `x`"#.into()),
            Arg::Word("100%".into()),
            Arg::Field('f'),
        ];
        let line = join_exec(Path::new("/usr/bin/distrorun"), "rocky9", &original);
        let back = split_exec(&line).unwrap();
        assert_eq!(back[..2], [Arg::Word("/usr/bin/distrorun".into()), Arg::Word("rocky9".into())]);
        assert_eq!(back[2..], original);
        assert!(line.ends_with(" %f"), "{line}");
    }

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
