//! `--cache` and `--cache-prune [--all]`: the blob cache that creates and
//! updates share, how big it is, which distros each blob serves, and the
//! removal of what none serves.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use distrorun_config::{load, Origin};
use distrorun_engine::Error;

use crate::output;
use crate::places;
use crate::registry::{self, manifest, Cache, Platform};
use crate::tree::limits::human_bytes;

/// What a blob is to the distros that use it.
struct Use {
    kind: &'static str,
    distros: Vec<String>,
}

pub fn run(prune: bool, all: bool, system: bool) -> Result<(), Error> {
    if system && !nix::unistd::geteuid().is_root() {
        return Err(Error::msg("--system shows root's blob cache, which needs root"));
    }
    let cache = Cache::open(system)?;
    let users = if all { BTreeMap::new() } else { users(&cache, system) };
    let blobs = cache.blobs();
    if prune {
        return prune_unused(&cache, &blobs, &users, all);
    }
    let total: u64 = blobs.iter().map(|(_, size)| size).sum();
    let used: u64 = blobs.iter().filter(|(d, _)| users.contains_key(d)).map(|(_, size)| size).sum();
    let mut out = format!(
        "blob cache {}: {} in {} blobs, {} of them used by distros\n",
        cache.dir.display(),
        human_bytes(total),
        blobs.len(),
        human_bytes(used)
    );
    for (digest, size) in &blobs {
        let short = digest.get(..19).unwrap_or(digest);
        let (kind, who) = match users.get(digest) {
            Some(u) => (u.kind, u.distros.join(", ")),
            None => ("-", "no distro (--cache-prune removes it)".to_owned()),
        };
        let _ = writeln!(out, "  {short}  {:>10}  {kind:<8}  {who}", human_bytes(*size));
    }
    output::print(&out);
    Ok(())
}

fn prune_unused(
    cache: &Cache,
    blobs: &[(String, u64)],
    uses: &BTreeMap<String, Use>,
    all: bool,
) -> Result<(), Error> {
    let (mut removed, mut freed, mut kept) = (0, 0, 0);
    for (digest, size) in blobs {
        if uses.contains_key(digest) {
            kept += size;
            continue;
        }
        cache.remove(digest)?;
        removed += 1;
        freed += size;
    }
    freed += cache.remove_stale(all);
    output::print(&format!(
        "distrorun: removed {removed} blobs ({}) from {}; {} kept for the distros that use them\n",
        human_bytes(freed),
        cache.dir.display(),
        human_bytes(kept)
    ));
    Ok(())
}

/// Every cached blob some distro's image refers to: for each distro made
/// from an image (the user's, or with `system` root's), its manifests,
/// config and layers as the cache holds them.
fn users(cache: &Cache, system: bool) -> BTreeMap<String, Use> {
    let (system_dir, user_dir) = places::config_dirs();
    let wanted = if system { Origin::System } else { Origin::User };
    let mut users: BTreeMap<String, Use> = BTreeMap::new();
    for (name, origin) in load::list(&system_dir, user_dir.as_deref()) {
        let Ok(found) = places::find_config(&name) else { continue };
        if origin != wanted || found.origin != wanted {
            continue;
        }
        let Some(image) = registry::origin_of(&found) else { continue };
        let platform = image.platform.as_deref().and_then(|p| p.parse::<Platform>().ok());
        let platform = platform.unwrap_or_else(manifest::host_platform);
        let what = format!("the image {} of distro {name}", image.reference);
        let Ok(Some(resolved)) = manifest::resolve_cached(cache, &image.digest, &platform, &what) else {
            continue;
        };
        let blobs = resolved.manifests.iter().map(|d| (d.clone(), "manifest"));
        let blobs = blobs.chain([(resolved.config.digest.clone(), "config")]);
        for (digest, kind) in blobs.chain(resolved.layers.iter().map(|l| (l.digest.clone(), "layer"))) {
            let entry = users.entry(digest).or_insert_with(|| Use { kind, distros: Vec::new() });
            if !entry.distros.contains(&name) {
                entry.distros.push(name.clone());
            }
        }
    }
    users
}
