//! The man pages and the shell completions: they lint clean, and they cover
//! every option the installed `distrorun --help` prints and every key the
//! config schema has, so that a new option or key cannot go undocumented.
//! The bash and fish completions are run for real (bash as the test user)
//! against the configured distros; zsh's is checked for syntax only.

use std::path::{Path, PathBuf};
use std::process::Command;

use distrorun_testkit::*;

mod links;
mod walkthrough;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn tool(program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = timed(cmd, RUN_TIMEOUT);
    assert!(
        out.status.code().is_some(),
        "{program} did not run ({}); ci/setup.d/40-packaging.sh installs it",
        out.report()
    );
    out
}

/// Every option `--help` lists, short and long, as printed.
fn help_options() -> Vec<String> {
    let out = Run::root(&["--help"]).output();
    out.assert_code(0);
    let text = out.stdout_str();
    let options: Vec<String> = text
        .lines()
        .skip_while(|l| l.trim() != "Options:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  -"))
        .flat_map(|l| {
            // The option column ends at the first run of two spaces.
            let column = l.trim_start().split("  ").next().unwrap_or("");
            column.split(", ").map(str::to_owned).collect::<Vec<_>>()
        })
        .filter(|o| o.starts_with('-'))
        .collect();
    assert!(options.len() > 8, "too few options parsed from --help:\n{text}");
    options
}

/// The page as mandoc renders it, without overstrike, so that options read
/// as typed (`--dry-run`, not `\-\-dry\-run`).
fn rendered(page: &str) -> String {
    let out = tool("mandoc", &["-T", "ascii", repo(page).to_str().unwrap()]);
    out.assert_code(0);
    let raw = out.stdout_str();
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        text.push(c);
    }
    text
}

fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        !part(before) && !part(after)
    })
}

#[test]
fn man_pages_lint_clean() {
    for page in ["man/distrorun.1", "man/distrorun.conf.5"] {
        let path = repo(page);
        let out = tool("mandoc", &["-T", "lint", "-W", "warning", path.to_str().unwrap()]);
        assert!(out.status.success() && out.stdout.is_empty(), "mandoc -T lint {page}:\n{}", out.report());
        let out = tool("groff", &["-ww", "-z", "-man", path.to_str().unwrap()]);
        assert!(out.status.success() && out.stderr.is_empty(), "groff -ww -z {page}:\n{}", out.report());
    }
}

#[test]
fn every_option_of_help_is_in_the_man_page_and_the_completions() {
    let page = rendered("man/distrorun.1");
    let options_section = page
        .split("\nOPTIONS\n")
        .nth(1)
        .and_then(|rest| rest.split("\nBACKENDS\n").next())
        .expect("an OPTIONS section followed by BACKENDS in distrorun.1");
    let bash = read("completions/distrorun.bash");
    let zsh = read("completions/_distrorun");
    let fish = read("completions/distrorun.fish");
    let mut missing = Vec::new();
    for opt in help_options() {
        if !has_word(options_section, &opt) {
            missing.push(format!("{opt} in the OPTIONS of man/distrorun.1"));
        }
        if !has_word(&bash, &opt) {
            missing.push(format!("{opt} in completions/distrorun.bash"));
        }
        if !has_word(&zsh, &opt) {
            missing.push(format!("{opt} in completions/_distrorun"));
        }
        let fish_form = match opt.strip_prefix("--") {
            Some(long) => format!("-l {long}"),
            None => format!("-s {}", &opt[1..]),
        };
        if !fish.contains(&format!("{fish_form} ")) && !fish.ends_with(&fish_form) {
            missing.push(format!("{opt} ({fish_form}) in completions/distrorun.fish"));
        }
    }
    assert!(missing.is_empty(), "undocumented options:\n{}", missing.join("\n"));
}

#[test]
fn every_config_key_is_in_distrorun_conf_5() {
    let schema = read("config/src/schema.rs");
    let body = schema
        .split("pub struct Distro {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("struct Distro in config/src/schema.rs");
    let keys: Vec<&str> = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(keys.contains(&"dir") && keys.contains(&"mapped_volumes"), "keys parsed: {keys:?}");
    let page = rendered("man/distrorun.conf.5");
    let keys_section = page
        .split("\nKEYS\n")
        .nth(1)
        .and_then(|rest| rest.split("\nEXAMPLES\n").next())
        .expect("a KEYS section followed by EXAMPLES in distrorun.conf.5");
    let missing: Vec<&&str> = keys.iter().filter(|k| !has_word(keys_section, k)).collect();
    assert!(missing.is_empty(), "keys missing from the KEYS of man/distrorun.conf.5: {missing:?}");
}

/// Runs `words` through the bash completion, in a non-interactive bash as
/// the test user, and returns what it offers. `with_library` loads the
/// bash-completion package first, as an interactive shell would.
fn complete_bash(words: &[&str], with_library: bool) -> Vec<String> {
    let script = read("completions/distrorun.bash");
    // compopt works only while readline is completing, which it never is in
    // a non-interactive shell; the library calls it to tune the display.
    let library = if with_library {
        ". /usr/share/bash-completion/bash_completion\ncompopt() { return 0; }\n"
    } else {
        ""
    };
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = words.join(" ");
    let program = format!(
        "{library}{script}\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT=${{#COMP_LINE}}\n_distrorun distrorun '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words.get(words.len().wrapping_sub(2)).unwrap_or(&""),
    );
    let out = Run::user(&["--norc", "--noprofile", "-c", &program])
        .bin("/bin/bash")
        .env("PATH", format!("{TEST_ROOT}/bin:/usr/bin:/bin"))
        .output();
    out.assert_code(0);
    assert!(out.stderr.is_empty(), "the completion wrote to stderr:\n{}", out.report());
    out.stdout_str().lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

#[test]
fn bash_completes_distro_names_from_the_list() {
    let _g = global_state_lock();
    let tr = TestDistro::standard("tr-compl");
    let other = TestDistro::standard("xy-compl");
    let mine = UserDistro::standard("tr-mine");
    let offered = complete_bash(&["distrorun", "tr"], false);
    assert!(offered.contains(&tr.name), "{} not offered for `distrorun tr`: {offered:?}", tr.name);
    assert!(offered.contains(&mine.name), "the user's own {} not offered: {offered:?}", mine.name);
    assert!(!offered.contains(&other.name), "{} offered for `distrorun tr`: {offered:?}", other.name);
    assert!(offered.iter().all(|n| n.starts_with("tr")), "{offered:?}");

    // After options, and as the value of --info.
    let offered = complete_bash(&["distrorun", "-v", "--backend", "helper", "tr"], false);
    assert!(offered.contains(&tr.name), "{offered:?}");
    let offered = complete_bash(&["distrorun", "--info", "tr"], false);
    assert!(offered.contains(&tr.name), "{offered:?}");
}

#[test]
fn bash_completes_options_values_and_then_the_command() {
    let offered = complete_bash(&["distrorun", "--ver"], false);
    assert_eq!(offered, ["--verbose", "--version"]);
    let offered = complete_bash(&["distrorun", "--backend", "h"], false);
    assert_eq!(offered, ["helper"]);
    // After NAME: host commands, with or without the bash-completion library.
    for library in [false, true] {
        let offered = complete_bash(&["distrorun", "somedistro", "mkfif"], library);
        assert!(offered.contains(&"mkfifo".to_owned()), "library {library}: {offered:?}");
        assert!(!offered.iter().any(|o| o.starts_with('-')), "library {library}: {offered:?}");
    }
}

#[test]
fn fish_completes_distro_names_and_zsh_parses_its_script() {
    let _g = global_state_lock();
    let tr = TestDistro::standard("tr-fish");
    let script = repo("completions/distrorun.fish");
    let program = format!("source {}; complete -C 'distrorun tr'", script.display());
    let mut cmd = Command::new("fish");
    cmd.args(["--no-config", "-c", &program]).env("PATH", format!("{TEST_ROOT}/bin:/usr/bin:/bin"));
    let out = timed(cmd, RUN_TIMEOUT);
    out.assert_code(0);
    let text = out.stdout_str();
    let offered: Vec<&str> = text.lines().map(|l| l.split('\t').next().unwrap_or("")).collect();
    assert!(offered.contains(&tr.name.as_str()), "fish did not offer {}: {offered:?}", tr.name);

    let out = tool("zsh", &["-n", repo("completions/_distrorun").to_str().unwrap()]);
    assert!(out.status.success() && out.stderr.is_empty(), "zsh -n:\n{}", out.report());
}
