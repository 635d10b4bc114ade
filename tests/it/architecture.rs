//! The shape of `src/`, checked: the decision core imports no front end,
//! metric or log code; no front end imports another; and none of them is
//! part of an import circle. The graph is read from the source: one node per
//! file, an edge for every `crate::…`, `super::…` or child-module path
//! outside comments and test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The files that translate a proxy's protocol into a decision request.
const FRONT_ENDS: [&str; 4] = ["http/nginx", "http/forward_auth", "grpc", "spoe"];

/// What the decision core must not know about.
const NOT_IN_THE_CORE: [&str; 9] = [
    "metrics",
    "telemetry",
    "in_force",
    "app",
    "server",
    "http",
    "grpc",
    "spoe",
    "listener",
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Module name (`http/nginx`, `decision` for `decision/mod.rs`) → source.
fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut name = relative.to_str().unwrap().replace('\\', "/");
            if let Some(parent) = name.strip_suffix("/mod") {
                name = parent.to_owned();
            }
            let file = name.rsplit('/').next().unwrap_or_default();
            if matches!(file, "tests" | "conformance") || file.starts_with("test_") {
                continue;
            }
            found.insert(
                name,
                without_tests_and_comments(&std::fs::read_to_string(&path).unwrap()),
            );
        }
    }
    found
}

/// The source before its `#[cfg(test)] mod … {`, without `//` comments.
fn without_tests_and_comments(source: &str) -> String {
    let mut kept = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'))
        {
            break;
        }
        let code = match line.find("//") {
            // Not inside a string such as "https://…".
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        kept.push_str(code);
        kept.push('\n');
    }
    kept
}

/// Every `prefix` path in `source`, as its `::`-separated segments.
fn paths<'s>(source: &'s str, prefix: &str) -> Vec<Vec<&'s str>> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices(prefix) {
        let before = source[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &source[at + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        found.push(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    found
}

/// The longest module that `segments` (from the crate root) names.
fn resolve(modules: &BTreeMap<String, String>, segments: &[&str]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("/"))
        .find(|name| modules.contains_key(name))
}

fn graph(modules: &BTreeMap<String, String>) -> Graph {
    let mut graph = Graph::new();
    for (name, source) in modules {
        let is_dir_module = modules.keys().any(|m| m.starts_with(&format!("{name}/")));
        let parent: Vec<&str> = name.split('/').collect();
        let own_dir: Vec<&str> = if is_dir_module {
            parent.clone()
        } else {
            parent[..parent.len() - 1].to_vec()
        };
        let mut edges = BTreeSet::new();
        for path in paths(source, "crate::") {
            edges.extend(resolve(modules, &path));
        }
        for path in paths(source, "super::") {
            let base = if is_dir_module {
                &own_dir[..own_dir.len().saturating_sub(1)]
            } else {
                &own_dir[..]
            };
            let full: Vec<&str> = base.iter().copied().chain(path).collect();
            edges.extend(resolve(modules, &full));
        }
        if is_dir_module {
            // `self::child::…` and a child named outright (`child::item`).
            for path in paths(source, "self::") {
                let full: Vec<&str> = own_dir.iter().copied().chain(path).collect();
                edges.extend(resolve(modules, &full));
            }
            for child in modules
                .keys()
                .filter_map(|m| m.strip_prefix(&format!("{name}/")))
            {
                if !child.contains('/') && !paths(source, &format!("{child}::")).is_empty() {
                    edges.insert(format!("{name}/{child}"));
                }
            }
        }
        edges.remove(name);
        graph.insert(name.clone(), edges);
    }
    graph
}

/// The strongly connected components with more than one file (Tarjan).
fn circles(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<BTreeSet<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.insert(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

fn src_graph() -> Graph {
    graph(&modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")))
}

fn in_module(name: &str, module: &str) -> bool {
    name == module || name.starts_with(&format!("{module}/"))
}

/// The decision core imports no front end, metric, log or wiring code.
#[test]
fn the_decision_core_imports_no_front_end_metric_or_log() {
    let graph = src_graph();
    assert!(graph.contains_key("decision"), "{:?}", graph.keys());
    for (name, edges) in graph.iter().filter(|(n, _)| in_module(n, "decision")) {
        for edge in edges {
            assert!(
                !NOT_IN_THE_CORE.iter().any(|m| in_module(edge, m)),
                "{name} imports {edge}"
            );
        }
    }
}

/// No front end imports another (they share the core, not each other).
#[test]
fn front_ends_do_not_import_each_other() {
    let graph = src_graph();
    for front_end in FRONT_ENDS.iter().filter(|f| graph.contains_key(**f)) {
        for other in FRONT_ENDS.iter().filter(|o| o != &front_end) {
            assert!(
                !graph[*front_end].contains(*other),
                "{front_end} imports {other}"
            );
        }
    }
}

/// No import circle includes the decision core or a front end. The graph
/// reader is checked on a circle it must find.
#[test]
fn no_circle_through_the_core_or_a_front_end() {
    let mut sample = BTreeMap::new();
    sample.insert("a".to_owned(), "use crate::b::X;".to_owned());
    sample.insert(
        "b".to_owned(),
        without_tests_and_comments("fn f() { crate::a::g() } // crate::c"),
    );
    sample.insert("c".to_owned(), String::new());
    let sample_graph = graph(&sample);
    assert_eq!(
        circles(&sample_graph),
        vec![BTreeSet::from(["a".to_owned(), "b".to_owned()])]
    );
    assert!(!sample_graph["b"].contains("c"), "comments are not imports");

    let graph = src_graph();
    for circle in circles(&graph) {
        assert!(
            !circle
                .iter()
                .any(|m| in_module(m, "decision") || FRONT_ENDS.contains(&m.as_str())),
            "import circle: {circle:?}"
        );
    }
}
