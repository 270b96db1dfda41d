//! Mutation fuzzing on stable Rust: no coverage feedback, but
//! deterministic (a seeded PRNG), bounded in time, and dependency-free, so
//! that it runs on any machine that builds distrorun.
//!
//!   stable [--target NAME] [--seconds N] [--seed S] [--verbose]
//!   stable [--target NAME] --replay FILE
//!
//! It prints one line on stdout when done: the target, how many inputs it
//! tried in how long, and that nothing failed; with --verbose, a progress
//! line on stderr every second besides. On a failure it writes the input to
//! artifacts/crash-TARGET-SEED-ITERATION in the crate directory, prints it
//! and the command that replays it, and exits 1. --replay checks one saved
//! input, with the panic message shown.

use std::cell::Cell;
use std::panic;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use distrorun_config_fuzz::{check, DICTIONARY, SEEDS};

/// What the fuzzer needs to know of one target: the property, the inputs to
/// start from, and the tokens mutations insert.
struct Target {
    name: &'static str,
    check: fn(&[u8]),
    seeds: &'static [&'static [u8]],
    dictionary: &'static [&'static str],
}

/// Every target; ci/fuzz lists the ones CI runs, under the same names as
/// the cargo-fuzz targets.
const TARGETS: &[Target] = &[
    Target { name: "parse", check, seeds: SEEDS, dictionary: DICTIONARY },
    Target {
        name: "helper_args",
        check: distrorun_config_fuzz::handoff::check,
        seeds: distrorun_config_fuzz::handoff::SEEDS,
        dictionary: distrorun_config_fuzz::handoff::DICTIONARY,
    },
];

thread_local! {
    /// Set while a target runs: its panics are findings, which the fuzzer
    /// reports with their input, so their default message is left out; any
    /// other panic is a bug of the fuzzer's own, and keeps it.
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
}

/// splitmix64: tiny, fast and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A token from the dictionary, or a random byte for a target without one.
fn token(rng: &mut Rng, dictionary: &[&str]) -> Vec<u8> {
    if dictionary.is_empty() {
        vec![rng.next() as u8]
    } else {
        dictionary[rng.below(dictionary.len())].as_bytes().to_vec()
    }
}

/// Applies one to eight random edits to a copy of a seed; the corpus is
/// never empty.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], dictionary: &[&str]) -> Vec<u8> {
    let mut v = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 => {
                let tok = token(rng, dictionary);
                v.splice(at..at, tok);
            }
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 if !v.is_empty() => {
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(32)).min(v.len());
                let chunk = v[start..end].to_vec();
                v.splice(at..at, chunk);
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            6 => v.truncate(at),
            7 => {
                // Deep nesting, to reach recursion limits.
                let depth = 1 + rng.below(300);
                let (open, close) = if rng.below(2) == 0 { ("[", "]") } else { ("(", ")") };
                let nest = format!("{}{}", open.repeat(depth), close.repeat(depth));
                v.splice(at..at, nest.into_bytes());
            }
            _ => {
                let tok = token(rng, dictionary);
                let n = 1 + rng.below(64);
                v.splice(at..at, tok.repeat(n));
            }
        }
    }
    v.truncate(64 * 1024);
    v
}

const USAGE: &str = "usage: stable [--target NAME] [--seconds N] [--seed S] [--verbose]\n       \
                     stable [--target NAME] --replay FILE";

struct Options {
    target: &'static Target,
    seconds: u64,
    seed: u64,
    verbose: bool,
    replay: Option<PathBuf>,
}

fn usage(why: &str) -> ! {
    eprintln!("stable: {why}\n{USAGE}");
    std::process::exit(2);
}

fn options() -> Options {
    let mut o = Options {
        target: &TARGETS[0],
        seconds: 50,
        seed: 0x6469_7374_726f_7275,
        verbose: false,
        replay: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--verbose" {
            o.verbose = true;
            continue;
        }
        let Some(value) = args.next() else { usage(&format!("{a} needs a value")) };
        let number = || value.parse().unwrap_or_else(|_| usage(&format!("{a}: not a number: {value}")));
        match a.as_str() {
            "--seconds" => o.seconds = number(),
            "--seed" => o.seed = number(),
            "--replay" => o.replay = Some(value.into()),
            "--target" => {
                o.target = TARGETS.iter().find(|t| t.name == value).unwrap_or_else(|| {
                    let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
                    usage(&format!("no target {value} (have: {})", names.join(", ")))
                })
            }
            _ => usage(&format!("unknown option {a}")),
        }
    }
    o
}

/// The panic's message, which is what a finding is about.
fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Saves and reports a failing input, then exits 1.
fn report_failure(o: &Options, n: u64, input: &[u8], why: &str) -> ! {
    let name = o.target.name;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    let file = dir.join(format!("crash-{name}-{}-{n}", o.seed));
    let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, input));
    eprintln!("{name}, stable mutation: FAILED after {n} inputs (seed {}): {why}", o.seed);
    eprintln!("input: {:?}", String::from_utf8_lossy(input));
    match saved {
        Ok(()) => eprintln!(
            "saved to {}; replay with (in config/fuzz): \
             cargo run --release --bin stable -- --target {name} --replay {0}",
            file.display()
        ),
        Err(e) => eprintln!("could not save it: {e}"),
    }
    std::process::exit(1);
}

fn main() {
    let o = options();
    let t = o.target;
    if let Some(file) = &o.replay {
        let input = std::fs::read(file).unwrap_or_else(|e| usage(&format!("{}: {e}", file.display())));
        (t.check)(&input);
        println!("{}: {} passes", t.name, file.display());
        return;
    }
    let mut corpus: Vec<Vec<u8>> = t.seeds.iter().map(|s| s.to_vec()).collect();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    // The seeds themselves first, then mutations until the time is up.
    for s in &corpus {
        (t.check)(s);
    }
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !IN_TARGET.get() {
            default_hook(info)
        }
    }));
    let mut rng = Rng(o.seed);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    let mut next_progress = start + Duration::from_secs(1);
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if o.verbose && now >= next_progress {
            eprintln!("{}: {n} inputs, {:.0} s", t.name, (now - start).as_secs_f64());
            next_progress += Duration::from_secs(1);
        }
        for _ in 0..256 {
            let input = mutate(&mut rng, &corpus, t.dictionary);
            IN_TARGET.set(true);
            let checked = panic::catch_unwind(|| (t.check)(&input));
            IN_TARGET.set(false);
            if let Err(e) = checked {
                report_failure(&o, n, &input, &panic_message(&*e));
            }
            n += 1;
        }
    }
    println!(
        "{}, stable mutation: {n} runs in {:.0} s, {} seeds, seed {}, no findings",
        t.name,
        start.elapsed().as_secs_f64(),
        corpus.len(),
        o.seed
    );
}
