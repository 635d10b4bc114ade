//! The documentation holds together: every relative link and `#anchor` in
//! README.md, `docs/*.md` and the chart's README (when there is one) leads
//! somewhere in this repository, anchors as GitHub names headings; and the
//! README stays a newcomer's page. No network: web links are not followed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// The README is what a newcomer reads first; the reference is in docs/.
const README_MAX_LINES: usize = 250;

/// The Markdown files whose links are checked.
fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    let chart = root.join("deploy/helm/authgate/README.md");
    if chart.exists() {
        docs.push(chart);
    }
    docs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The lines of `text` outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => out.push((index + 1, line)),
            _ => {}
        }
    }
    out
}

/// `line` without its inline code spans (links inside them are not links).
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let delimiter = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(delimiter) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of inline links and images (`[text](target)`) and of
/// reference definitions (`[label]: target`) in `text`, with line numbers.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let target = match rest.strip_prefix('<') {
                Some(inner) => inner.split('>').next().unwrap_or_default(),
                None => {
                    let mut depth = 0usize;
                    let end = rest
                        .char_indices()
                        .find(|&(_, c)| match c {
                            '(' => {
                                depth += 1;
                                false
                            }
                            ')' if depth == 0 => true,
                            ')' => {
                                depth -= 1;
                                false
                            }
                            c => c.is_whitespace(),
                        })
                        .map_or(rest.len(), |(i, _)| i);
                    &rest[..end]
                }
            };
            out.push((number, target.to_owned()));
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some((label, target)) = trimmed.split_once("]:")
            && !label.contains("](")
        {
            let target = target.split_whitespace().next().unwrap_or_default();
            out.push((number, target.to_owned()));
        }
    }
    out
}

/// A heading's text as GitHub renders it: code spans keep their text, links
/// their label, emphasis markers go.
fn rendered(heading: &str) -> String {
    let mut text = heading.replace(['`', '*'], "");
    while let Some(open) = text.find("](") {
        let Some(label_start) = text[..open].rfind('[') else {
            break;
        };
        let Some(close) = text[open..].find(')') else {
            break;
        };
        let label = text[label_start + 1..open].to_owned();
        text.replace_range(label_start..open + close + 1, &label);
    }
    text
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_`
/// kept, spaces turned into `-`, everything else dropped.
fn slug(heading: &str) -> String {
    rendered(heading.trim())
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of a Markdown document: its ATX headings' slugs, repeats
/// numbered `-1`, `-2`… as GitHub does.
fn anchors(text: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for (_, line) in prose_lines(text) {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let hashes = line.trim_start().len() - line.trim_start().trim_start_matches('#').len();
        let after = &line.trim_start()[hashes..];
        if indent > 3 || !(1..=6).contains(&hashes) || !(after.is_empty() || after.starts_with(' '))
        {
            continue;
        }
        let title = after.trim().trim_end_matches('#').trim_end();
        let base = slug(title);
        let mut candidate = base.clone();
        let mut n = 0;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        out.insert(candidate);
    }
    out
}

/// Why `target`, written in `doc`, leads nowhere; `None` when it resolves.
/// `checked` counts the anchors looked up.
fn broken(doc: &Path, target: &str, checked: &mut usize) -> Option<String> {
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    if path.starts_with('/') {
        return Some("an absolute path: GitHub resolves it against its own site".to_owned());
    }
    let file = if path.is_empty() {
        doc.to_path_buf()
    } else {
        doc.parent().expect("a document has a directory").join(path)
    };
    let Ok(resolved) = file.canonicalize() else {
        return Some(format!("no such file or directory: {}", file.display()));
    };
    let root = repo_root()
        .canonicalize()
        .expect("canonical repository root");
    if !resolved.starts_with(&root) {
        return Some("leads out of the repository".to_owned());
    }
    let anchor = anchor?;
    if resolved.extension().is_none_or(|e| e != "md") {
        return Some("an anchor into a file that is not Markdown".to_owned());
    }
    *checked += 1;
    if anchors(&read(&resolved)).contains(anchor) {
        None
    } else {
        Some(format!(
            "no heading of {} has the anchor #{anchor}",
            resolved.strip_prefix(&root).unwrap_or(&resolved).display()
        ))
    }
}

/// Every relative link and anchor in the README, docs/ and the chart's
/// README resolves; web links (`scheme://`, `mailto:`) are left alone.
#[test]
fn relative_links_and_anchors_resolve() {
    let root = repo_root();
    let mut problems = Vec::new();
    let (mut links, mut anchors_checked) = (0, 0);
    for doc in documents() {
        let name = doc
            .strip_prefix(&root)
            .unwrap_or(&doc)
            .display()
            .to_string();
        for (line, target) in link_targets(&read(&doc)) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            links += 1;
            if let Some(why) = broken(&doc, &target, &mut anchors_checked) {
                problems.push(format!("{name}:{line}: ({target}) {why}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
    // The documents link to each other: a parser that found nothing would
    // pass every check above.
    assert!(
        links >= 20 && anchors_checked >= 5,
        "only {links} links and {anchors_checked} anchors found"
    );
}

/// The README is short, and shows the one command that runs the demo.
#[test]
fn readme_is_a_newcomers_page() {
    let readme = read(&repo_root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines (at most {README_MAX_LINES}): move reference text to docs/"
    );
    assert!(
        readme.contains("authgate demo"),
        "README.md must show `authgate demo`"
    );
}

/// The slugs and link targets agree with GitHub's rendering on the shapes
/// these documents use, so a passing check means working links there.
#[test]
fn anchors_and_links_are_read_as_github_does() {
    for (heading, anchor) in [
        ("Shutdown and connections", "shutdown-and-connections"),
        (
            "API clients (`Authorization: Bearer`)",
            "api-clients-authorization-bearer",
        ),
        (
            "Verifying the identity in the upstream (`X-Auth-Request-Jwt`)",
            "verifying-the-identity-in-the-upstream-x-auth-request-jwt",
        ),
        ("Routes (`policy` or `routes`)", "routes-policy-or-routes"),
        ("`trusted_proxies`", "trusted_proxies"),
        ("Front ends: nginx, Envoy", "front-ends-nginx-envoy"),
        ("Keep authgate's ports off", "keep-authgates-ports-off"),
        ("A — B", "a--b"),
        ("See [the docs](docs/x.md)", "see-the-docs"),
    ] {
        assert_eq!(slug(heading), anchor, "{heading}");
    }
    let doc = "# Logs\n\n## Logs\n\n```\n# not a heading [x](nowhere.md)\n```\n    # code\n";
    assert_eq!(
        anchors(doc),
        HashSet::from(["logs".to_owned(), "logs-1".to_owned()])
    );
    let text = "See [a](docs/a.md#x), `[b](code.md)`, ![c](img.png \"t\") and \
                [d](<with space.md>) [e](f(1).md).\n[ref]: docs/ref.md\n";
    let targets: Vec<String> = link_targets(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        targets,
        [
            "docs/a.md#x",
            "img.png",
            "with space.md",
            "f(1).md",
            "docs/ref.md"
        ]
    );
}
