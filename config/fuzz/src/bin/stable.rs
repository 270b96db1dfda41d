//! Mutation fuzzing of the config parser on stable Rust: no coverage
//! feedback, but deterministic (a seeded PRNG), bounded in time, and
//! dependency-free, so that it runs on any machine that builds distrorun.
//!
//!   stable [--seconds N] [--seed S]
//!
//! On a failure it writes the input to artifacts/crash-SEED-ITERATION in the
//! crate directory, prints it, and exits 1.

use std::panic;
use std::time::{Duration, Instant};

use distrorun_config_fuzz::{check, DICTIONARY, SEEDS};

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

/// Applies one to eight random edits to a copy of a seed.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
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
                let tok = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                v.splice(at..at, tok.iter().copied());
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
                let tok = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                let n = 1 + rng.below(64);
                v.splice(at..at, tok.repeat(n));
            }
        }
    }
    v.truncate(64 * 1024);
    v
}

fn main() {
    let mut seconds = 50u64;
    let mut seed = 0x6469_7374_726f_7275u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), value) {
            ("--seconds", Some(v)) => seconds = v,
            ("--seed", Some(v)) => seed = v,
            _ => {
                eprintln!("usage: stable [--seconds N] [--seed S]");
                std::process::exit(2);
            }
        }
    }
    let corpus: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.to_vec()).collect();
    // The seeds themselves first, then mutations until the time is up.
    for s in &corpus {
        check(s);
    }
    panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..256 {
            let input = mutate(&mut rng, &corpus);
            if let Err(e) = panic::catch_unwind(|| check(&input)) {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
                let file = dir.join(format!("crash-{seed}-{n}"));
                let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &input));
                eprintln!("config fuzz: FAILED after {n} inputs (seed {seed}): {why}");
                eprintln!("input: {:?}", String::from_utf8_lossy(&input));
                match saved {
                    Ok(()) => eprintln!("saved to {}", file.display()),
                    Err(e) => eprintln!("could not save it: {e}"),
                }
                std::process::exit(1);
            }
            n += 1;
        }
    }
    println!("config fuzz: {n} inputs in {seconds} s (seed {seed}), no failure");
}
