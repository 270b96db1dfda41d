//! Every relative link in README.md and docs/*.md leads somewhere: the file
//! exists, and an anchor names a heading of the page it points into, as
//! GitHub makes anchors from headings.

use super::*;

/// README.md and every page in docs/, as paths from the repository's root.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(repo("docs"))
        .expect("read docs/")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| Path::new(n).extension().is_some_and(|x| x == "md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 8, "too few pages in docs/: {docs:?}");
    pages.extend(docs);
    pages
}

/// The text of a page outside its fenced code blocks, where a `[x](y)` or
/// a `# ` line means nothing.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_`
/// dropped, spaces made hyphens; a repeated heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut anchors = Vec::new();
    for line in prose(text) {
        let title = line.trim_start_matches('#');
        if title.len() == line.len() || !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        anchors.push(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    anchors
}

/// The targets of the page's inline links and images, `[text](target)`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        // Inline code may hold brackets that are not links.
        let line: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let page = "# Title\n## Your name inside: `user_db`\n### Coming from the C++ distrorun\n## FAQ\n## FAQ\n```\n# not a heading\n```\n";
    assert_eq!(
        anchors(page),
        ["title", "your-name-inside-user_db", "coming-from-the-c-distrorun", "faq", "faq-1"]
    );
    assert_eq!(link_targets("see [a](b.md#c) and ![i](p.png), `[x](y)` not"), ["b.md#c", "p.png"]);
}

#[test]
fn every_relative_link_and_anchor_in_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let dir = Path::new(&page).parent().unwrap_or(Path::new("")).to_path_buf();
        for target in link_targets(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() { PathBuf::from(&page) } else { dir.join(path) };
            let on_disk = repo(file.to_str().unwrap_or_default());
            if !on_disk.exists() {
                broken.push(format!("{page}: {target}: {} does not exist", file.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let headings = std::fs::read_to_string(&on_disk).map(|t| anchors(&t)).unwrap_or_default();
                if !headings.iter().any(|h| h == anchor) {
                    broken.push(format!(
                        "{page}: {target}: no heading of {} has the anchor #{anchor}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(checked > 20, "too few relative links found ({checked}); is the link parser broken?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
