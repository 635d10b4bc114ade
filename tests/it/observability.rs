//! The Grafana dashboard (`deploy/grafana/authgate.json`) and the alert
//! rules (`deploy/prometheus/authgate-rules.yaml`) against what authgate
//! really exports: every metric, label and label value their queries name
//! is in a scrape of a running authgate after a login and a few decisions.
//! The rules pass `promtool check rules` and their unit tests (`promtool
//! test rules`), and the dashboard's queries parse as PromQL. promtool comes
//! from Debian's `prometheus` package (scripts/test.sh installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::fixture::Stack;
use crate::metrics::{decide_and_log_in, scrape};
use crate::packaging::{documents, find, template, template_command, validate};
use crate::support::process::{require_program, run_ok};
use crate::support::{repo_root, temp_dir};

/// What Prometheus adds to every scrape: `up` is the one series the rules
/// use that authgate cannot export (it says whether the scrape worked).
const SYNTHETIC: [&str; 1] = ["up"];

/// PromQL words that are not metric names.
const KEYWORDS: [&str; 16] = [
    "sum",
    "count",
    "max",
    "min",
    "avg",
    "rate",
    "increase",
    "histogram_quantile",
    "time",
    "absent",
    "by",
    "without",
    "and",
    "or",
    "unless",
    "ignoring",
];

pub(crate) fn dashboard_path() -> PathBuf {
    repo_root().join("deploy/grafana/authgate.json")
}

pub(crate) fn rules_path() -> PathBuf {
    repo_root().join("deploy/prometheus/authgate-rules.yaml")
}

fn promtool() -> PathBuf {
    require_program("promtool", None)
}

/// Every panel query of the dashboard and its legend, with Grafana's
/// `$__rate_interval` as Prometheus would get it (one value; the query
/// shape is what counts).
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dashboard_path()).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            exprs.push((expr.replace("$__rate_interval", "5m"), legend.to_owned()));
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    exprs
}

/// `(alert name, expr)` of every rule in the rules file.
fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(rules_path()).expect("read the rules");
    let rules: Value = serde_saphyr::from_str(&text).expect("the rules are YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}

/// `(label, operator, value)`.
type Matcher = (String, String, String);

/// The metrics, label matchers and grouping labels one query names.
#[derive(Debug, Default)]
struct Query {
    /// `(metric, matchers)`.
    selectors: Vec<(String, Vec<Matcher>)>,
    /// Labels of every `by (…)`.
    grouping: BTreeSet<String>,
}

/// A tokenizer just good enough for the queries here: identifiers are
/// metric names unless a known function or keyword, `by (…)` lists labels,
/// `{…}` holds matchers, strings and numbers (`5m`, `0.99`) are skipped.
fn parse(expr: &str) -> Query {
    let chars: Vec<char> = expr.chars().collect();
    let mut query = Query::default();
    let mut i = 0;
    let ident = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || "_:".contains(chars[*i])) {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    let skip_space = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let string = |i: &mut usize| -> String {
        let quote = chars[*i];
        *i += 1;
        let start = *i;
        while *i < chars.len() && chars[*i] != quote {
            *i += if chars[*i] == '\\' { 2 } else { 1 };
        }
        let value = chars[start..*i].iter().collect();
        *i += 1;
        value
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            string(&mut i);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let word = ident(&mut i);
            skip_space(&mut i);
            if ["by", "without", "on", "ignoring"].contains(&word.as_str()) {
                assert_eq!(chars.get(i), Some(&'('), "{expr}");
                i += 1;
                loop {
                    skip_space(&mut i);
                    match chars.get(i) {
                        Some(')') => break,
                        Some(',') => i += 1,
                        // `on (job, instance)` matches the scrape's labels,
                        // which the exposition does not carry.
                        Some(_) if word == "on" || word == "ignoring" => {
                            ident(&mut i);
                        }
                        Some(_) => {
                            query.grouping.insert(ident(&mut i));
                        }
                        None => panic!("unclosed by (…) in {expr}"),
                    }
                }
                i += 1;
            } else if KEYWORDS.contains(&word.as_str()) {
            } else {
                let mut matchers = Vec::new();
                if chars.get(i) == Some(&'{') {
                    i += 1;
                    loop {
                        skip_space(&mut i);
                        match chars.get(i) {
                            Some('}') => break,
                            Some(',') => i += 1,
                            Some(_) => {
                                let label = ident(&mut i);
                                skip_space(&mut i);
                                let op_start = i;
                                while i < chars.len() && "=!~".contains(chars[i]) {
                                    i += 1;
                                }
                                let op: String = chars[op_start..i].iter().collect();
                                skip_space(&mut i);
                                let value = string(&mut i);
                                matchers.push((label, op, value));
                            }
                            None => panic!("unclosed {{…}} in {expr}"),
                        }
                    }
                    i += 1;
                }
                query.selectors.push((word, matchers));
            }
        } else {
            i += 1;
        }
    }
    query
}

/// The samples of a text exposition: metric name → label name → values.
type Exposition = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn exposition(text: &str) -> Exposition {
    let mut samples = Exposition::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).expect("a sample line");
        let labels = samples.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            let query = parse(&line[..line.rfind('}').expect("labels closed") + 1]);
            for (label, _, value) in query.selectors.into_iter().flat_map(|(_, m)| m) {
                labels.entry(label).or_default().insert(value);
            }
        }
    }
    samples
}

/// Checks `expr` (named `what`) against the exposition: every metric it
/// selects is exported, every label it matches or groups by is on the
/// metric, and every value it matches with `=` or an alternation of `=~`
/// occurs. Failures are pushed onto `errors`.
fn check(what: &str, expr: &str, samples: &Exposition, errors: &mut Vec<String>) {
    let query = parse(expr);
    if query.selectors.is_empty() {
        errors.push(format!("{what}: no metric in {expr}"));
    }
    let mut labels_here: BTreeSet<&str> = BTreeSet::new();
    for (metric, matchers) in &query.selectors {
        if SYNTHETIC.contains(&metric.as_str()) {
            continue;
        }
        let Some(labels) = samples.get(metric) else {
            errors.push(format!("{what}: {metric} is not exported ({expr})"));
            continue;
        };
        labels_here.extend(labels.keys().map(String::as_str));
        for (label, op, value) in matchers {
            let Some(values) = labels.get(label) else {
                errors.push(format!("{what}: {metric} has no label {label}"));
                continue;
            };
            let wanted: Vec<&str> = match op.as_str() {
                "=" => vec![value],
                "=~" => value.split('|').collect(),
                _ => vec![],
            };
            for value in wanted {
                if !values.contains(value) {
                    errors.push(format!(
                        "{what}: {metric}{{{label}=\"{value}\"}} is never exported (values: {values:?})"
                    ));
                }
            }
        }
    }
    let only_synthetic = query
        .selectors
        .iter()
        .all(|(m, _)| SYNTHETIC.contains(&m.as_str()));
    for label in &query.grouping {
        if !only_synthetic && !labels_here.contains(label.as_str()) {
            errors.push(format!(
                "{what}: grouping by {label}, which no metric of {expr} has"
            ));
        }
    }
}

/// Every `{{label}}` of a panel's legend is a label of its query's result:
/// one it groups by, or (without `by`) one of its metric's or the scrape's
/// `instance`/`job`. A wrong one shows the literal text in every legend.
fn check_legend(
    what: &str,
    expr: &str,
    legend: &str,
    samples: &Exposition,
    errors: &mut Vec<String>,
) {
    let query = parse(expr);
    let mut result: BTreeSet<&str> = query.grouping.iter().map(String::as_str).collect();
    if result.is_empty() {
        result.extend(["instance", "job"]);
        for (metric, _) in &query.selectors {
            result.extend(
                samples
                    .get(metric)
                    .into_iter()
                    .flat_map(|l| l.keys())
                    .map(String::as_str),
            );
        }
    }
    for part in legend.split("{{").skip(1) {
        let label = part.split("}}").next().unwrap_or_default().trim();
        if !result.contains(label) {
            errors.push(format!(
                "{what}: legend {{{{{label}}}}} is not a label of {expr}"
            ));
        }
    }
}

/// A running authgate after logins, allowed, denied and sign-in decisions
/// on two front ends and a failed login: every dashboard and alert query
/// names metrics, labels and label values that its `/metrics` exports.
#[tokio::test]
async fn dashboard_and_alert_queries_name_what_authgate_exports() {
    let stack = Stack::start().await;
    decide_and_log_in(&stack).await;

    let text = scrape(&stack, &stack.base).await;
    let samples = exposition(&text);
    assert!(
        samples.contains_key("authgate_decision_duration_seconds_bucket"),
        "{text}"
    );
    let mut errors = Vec::new();
    for (i, (expr, legend)) in dashboard_exprs().iter().enumerate() {
        let what = format!("dashboard query {i}");
        check(&what, expr, &samples, &mut errors);
        check_legend(&what, expr, legend, &samples, &mut errors);
    }
    let alerts = alert_exprs();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for (alert, expr) in &alerts {
        check(alert, expr, &samples, &mut errors);
    }
    assert!(errors.is_empty(), "{errors:#?}\n--- /metrics ---\n{text}");

    // The check bites: a misspelt metric, label and value are each caught.
    let mut errors = Vec::new();
    check_legend(
        "mutant",
        "sum by (outcome) (rate(authgate_decisions_total[5m]))",
        "{{route}}",
        &samples,
        &mut errors,
    );
    assert!(
        errors.iter().any(|e| e.contains("legend {{route}}")),
        "{errors:?}"
    );
    for (bad, caught) in [
        (
            "rate(authgate_decision_total[5m])",
            "authgate_decision_total is not exported",
        ),
        (
            "sum by (outcom) (rate(authgate_decisions_total[5m]))",
            "grouping by outcom",
        ),
        (
            r#"rate(authgate_logins_total{event="fail"}[5m])"#,
            r#"{event="fail"} is never exported"#,
        ),
    ] {
        let mut errors = Vec::new();
        check("mutant", bad, &samples, &mut errors);
        assert!(
            errors.iter().any(|e| e.contains(caught)),
            "{bad}: {errors:?}"
        );
    }
}

/// `promtool check rules` accepts the rules and `promtool test rules` passes
/// the unit tests of every alert; the tests cover each alert, and a rule
/// with a changed threshold fails them.
#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let rules = rules_path();
    let tests = rules.with_file_name("authgate-rules.test.yaml");
    let out = run_ok(
        "promtool check rules",
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(&rules),
    );
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
    let out = run_ok(
        "promtool test rules",
        Command::new(promtool()).args(["test", "rules"]).arg(&tests),
    );
    assert!(out.contains("SUCCESS"), "{out}");

    let test_text = std::fs::read_to_string(&tests).expect("read the rule tests");
    for (alert, _) in alert_exprs() {
        let tested = format!("alertname: {alert}\n");
        let cases = test_text.matches(&tested).count();
        assert!(cases >= 2, "{alert}: firing and quiet cases, found {cases}");
    }

    let dir = temp_dir("promtool");
    let rules_text = std::fs::read_to_string(&rules).expect("read the rules");
    let mutant = rules_text.replace(") > 0.1", ") > 1");
    assert_ne!(
        mutant, rules_text,
        "the latency threshold is where expected"
    );
    std::fs::write(dir.path().join("authgate-rules.yaml"), mutant).expect("write");
    std::fs::write(dir.path().join("authgate-rules.test.yaml"), &test_text).expect("write");
    let output = Command::new(promtool())
        .args(["test", "rules"])
        .arg(dir.path().join("authgate-rules.test.yaml"))
        .output()
        .expect("run promtool");
    assert!(!output.status.success(), "a weakened rule passed its tests");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("alertname: AuthgateDecisionLatencyHigh"),
        "{output:?}"
    );
}

/// Every dashboard query is valid PromQL: promtool parses each as a
/// recording rule (and refuses a broken one).
#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs: Vec<String> = dashboard_exprs().into_iter().map(|(e, _)| e).collect();
    if let Some(said) = promql_refused(&exprs) {
        panic!("{said}");
    }
    let broken = ["sum by (outcome (rate(authgate_decisions_total[5m]))".to_owned()];
    assert!(promql_refused(&broken).is_some(), "a broken query passed");
}

/// What `promtool check rules` says of `exprs` as recording rules, if it
/// refuses them.
fn promql_refused(exprs: &[String]) -> Option<String> {
    let dir = temp_dir("dashboard-promql");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(expr).expect("quote");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let file = dir.path().join("dashboard.rules.yaml");
    std::fs::write(&file, &rules).expect("write");
    let output = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}\n{rules}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (!output.status.success()).then_some(said)
}

/// The chart renders neither the dashboard nor the rules by default. Asked
/// to, it renders the dashboard file as it is in a ConfigMap labelled for
/// Grafana's sidecar, and the rules file in a PrometheusRule whose rules
/// pass promtool's checks and unit tests, with the scrape job renamed to
/// the Service's name; the manifests pass Kubernetes' schemas.
#[test]
fn chart_renders_the_dashboard_and_rules_when_asked() {
    let defaults = documents(&template("default-values.yaml"));
    assert!(
        defaults.iter().all(|d| d["kind"] != "PrometheusRule"
            && d["metadata"]["labels"]["grafana_dashboard"].is_null()),
        "off by default"
    );

    let sets = [
        "grafanaDashboard.enabled=true",
        "prometheusRule.enabled=true",
    ];
    let rendered = run_ok(
        "helm template (dashboard, rules)",
        &mut template_command("default-values.yaml", &sets),
    );
    let dir = temp_dir("chart-observability");
    let (ok, log) = validate(dir.path(), &rendered);
    assert!(ok, "{log}\n---\n{rendered}");
    let docs = documents(&rendered);

    let dashboard = docs
        .iter()
        .find(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("a ConfigMap for Grafana's sidecar");
    assert_eq!(dashboard["kind"], "ConfigMap");
    let json = dashboard["data"]["authgate.json"]
        .as_str()
        .expect("authgate.json");
    let file = std::fs::read_to_string(dashboard_path()).expect("read the dashboard");
    assert_eq!(json, file.trim_end(), "the dashboard file as it is");

    let rule = find(&docs, "PrometheusRule");
    let rules_file = dir.path().join("authgate-rules.yaml");
    std::fs::write(
        &rules_file,
        serde_json::to_string(&rule["spec"]).expect("rules as JSON (which is YAML)"),
    )
    .expect("write");
    let tests = rules_path().with_file_name("authgate-rules.test.yaml");
    std::fs::copy(&tests, dir.path().join("authgate-rules.test.yaml")).expect("copy tests");
    let out = run_ok(
        "promtool test rules (chart's PrometheusRule)",
        Command::new(promtool())
            .args(["test", "rules"])
            .arg(dir.path().join("authgate-rules.test.yaml")),
    );
    assert!(out.contains("SUCCESS"), "{out}");

    let docs = documents(&run_ok(
        "helm template (rules, fullnameOverride)",
        &mut template_command(
            "default-values.yaml",
            &["prometheusRule.enabled=true", "fullnameOverride=gate"],
        ),
    ));
    let rule = find(&docs, "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"][0]["rules"][0]["expr"],
        "absent(\n  (up{job=\"gate\"} == 1)\n  and on (job, instance)\n  (authgate_ready == 1)\n)"
    );
    std::fs::write(
        &rules_file,
        serde_json::to_string(&rule["spec"]).expect("rules as JSON"),
    )
    .expect("write");
    let out = run_ok(
        "promtool check rules (renamed job)",
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(&rules_file),
    );
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
}
