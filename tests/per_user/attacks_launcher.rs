//! Launchers exported from a distro (`--export`) never run anything on the
//! host: the desktop file is read as `GLib` reads it, and the written one is
//! read back, every `Exec` and `TryExec` through distrorun. And a FIFO put
//! where the launcher goes is refused, never waited on.

use super::*;
use std::os::unix::fs::FileTypeExt;

/// A per-user distro with the desktop file `text` as `evil.desktop`.
fn distro_with_app(homes: &Homes, text: &str) -> String {
    require_file(GUEST_TAR_ZST);
    let name = unique("app");
    homes.create(&name, GUEST_TAR_ZST).assert_ok();
    let apps = homes.tree(&name).join("usr/share/applications");
    fs::create_dir_all(&apps).expect("mkdir");
    fs::write(apps.join("evil.desktop"), text).expect("write the desktop file");
    name
}

fn launcher(homes: &Homes, name: &str) -> PathBuf {
    homes.base.join(format!("data/applications/distrorun-{name}-evil.desktop"))
}

/// Every `Exec` and `TryExec`, however indented or translated, as `GLib`
/// would find them: after leading whitespace, before `=`.
fn exec_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim_start().split_once('='))
        .map(|(k, v)| (k.trim_end().to_owned(), v.trim_start().to_owned()))
        .filter(|(k, _)| matches!(k.split('[').next(), Some("Exec" | "TryExec")))
        .collect()
}

#[test]
fn an_indented_or_duplicated_exec_line_cannot_bypass_distrorun() {
    let homes = Homes::new("launcher");
    let out_file = homes.base.join("launched");
    let text = format!(
        "[Desktop Entry]\nType=Application\nName=Evil\nExec=true\n\
         \tExec=sh -c \"cat /proc/self/uid_map > {o}\"\n\
         TryExec=true\n  Exec[de]=sh -c \"touch {o}.de\"\n\
         [Desktop Action second]\nName=Second\n \tExec = sh -c \"touch {o}.action\"\n",
        o = out_file.display()
    );
    let name = distro_with_app(&homes, &text);
    let out = homes.run(&["--export", &name, "evil"]).output();
    out.assert_ok();
    let file = launcher(&homes, &name);
    let written = fs::read_to_string(&file).expect("the launcher");
    let values = exec_values(&written);
    assert!(values.len() >= 4, "Exec lines went missing:\n{written}");
    for (key, value) in &values {
        assert!(value.starts_with(BIN), "{key}={value} does not run distrorun:\n{written}");
    }
    assert_eq!(
        values.iter().filter(|(k, _)| k == "Exec").count(),
        2,
        "one Exec per group, as GLib keeps the last:\n{written}"
    );

    // The launcher as the desktop starts it: GLib's gio.
    let launched = Run::as_user(USER, &["launch", path_str(&file)])
        .bin("/usr/bin/gio")
        .env("XDG_DATA_HOME", homes.base.join("data"))
        .env("XDG_CONFIG_HOME", homes.base.join("config"))
        .output();
    launched.assert_ok();
    wait_for_file(&out_file, Duration::from_secs(60), "the launched program's output");
    std::thread::sleep(Duration::from_millis(200));
    let map = fs::read_to_string(&out_file).expect("the uid map");
    assert!(
        !map.contains("4294967295"),
        "the program ran on the host, not in the distro (its uid map is the host's):\n{map}"
    );
}

#[test]
fn a_fifo_at_the_launchers_path_is_refused_not_waited_on() {
    let homes = Homes::new("fifo");
    let name = distro_with_app(&homes, "[Desktop Entry]\nType=Application\nName=App\nExec=true\n");
    let file = launcher(&homes, &name);
    let apps = file.parent().expect("parent");
    let (uid, gid) = user_ids(USER);
    sh(&format!(
        "mkdir -p {a}; mkfifo {f}; chown -R {uid}:{gid} {a}",
        a = apps.display(),
        f = file.display()
    ));
    let started = Instant::now();
    let out = homes.run(&["--export", &name, "evil"]).timeout(Duration::from_secs(30)).output();
    assert_refused(&out, &["refusing to overwrite", path_str(&file)]);
    assert!(started.elapsed() < Duration::from_secs(10), "the export waited {:?}", started.elapsed());
    assert!(fs::symlink_metadata(&file).expect("the FIFO").file_type().is_fifo(), "the FIFO was replaced");
}
