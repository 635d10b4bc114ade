//! The Helm chart and the systemd unit, checked with the real tools: `helm
//! lint` and `helm template` (helm built by `scripts/test.sh`), the rendered
//! manifests against Kubernetes' JSON schemas in strict mode
//! (`kubernetes-validate`, which ships the schemas, so no download), the
//! chart's authgate.yaml through `authgate check-config`, and the unit
//! through `systemd-analyze verify`. A missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::process::{require_program, run_ok};
use crate::support::{cached_tool, repo_root, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
/// The Kubernetes version the manifests are validated for.
const KUBERNETES_VERSION: &str = "1.35.0";

fn helm() -> PathBuf {
    cached_tool("helm", "AUTHGATE_HELM_BIN", "HELM_VERSION", |v| {
        format!("helm-{v}/helm")
    })
}

fn kubernetes_validate() -> PathBuf {
    cached_tool(
        "kubernetes-validate",
        "AUTHGATE_KUBERNETES_VALIDATE_BIN",
        "KUBERNETES_VALIDATE_VERSION",
        |v| format!("kubernetes-validate-{v}/bin/kubernetes-validate"),
    )
}

fn chart() -> PathBuf {
    repo_root().join("deploy/helm/authgate")
}

/// `helm template` with the chart's `ci/<values>.yaml`; the rendered text.
fn template(values: &str) -> String {
    run_ok(
        &format!("helm template ({values})"),
        Command::new(helm())
            .args(["template", "authgate", "--namespace", "authgate"])
            .arg(chart())
            .arg("-f")
            .arg(chart().join("ci").join(values)),
    )
}

/// The documents of a rendered chart, parsed.
fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .map(|doc| serde_saphyr::from_str(doc).expect("rendered YAML parses"))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// Runs kubernetes-validate in strict mode (unknown fields are errors) on
/// `manifests`; returns whether it passed and what it said.
fn validate(dir: &Path, manifests: &str) -> (bool, String) {
    let file = dir.join("manifests.yaml");
    std::fs::write(&file, manifests).expect("write manifests");
    let output = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `helm lint` passes with the defaults (plus the client secret a real
/// install must give) and with three replicas on Redis.
#[test]
fn helm_lint_passes() {
    for values in ["default-values.yaml", "multi-replica-values.yaml"] {
        let out = run_ok(
            &format!("helm lint ({values})"),
            Command::new(helm())
                .arg("lint")
                .arg("--strict")
                .arg(chart())
                .arg("-f")
                .arg(chart().join("ci").join(values)),
        );
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

/// Both renderings pass Kubernetes' schemas in strict mode; the same
/// manifests with one misspelt field do not (so the check can fail).
#[test]
fn rendered_manifests_pass_kubernetes_schemas() {
    let dir = temp_dir("helm");
    for values in ["default-values.yaml", "multi-replica-values.yaml"] {
        let rendered = template(values);
        let (ok, log) = validate(dir.path(), &rendered);
        assert!(ok, "{values}: {log}\n---\n{rendered}");
    }
    let broken =
        template("default-values.yaml").replace("readOnlyRootFilesystem", "readOnlyRootFilesytem");
    let (ok, log) = validate(dir.path(), &broken);
    assert!(!ok, "a misspelt field passed the schema check: {log}");
}

/// What the chart promises: probes on /healthz and /readyz, a locked-down
/// non-root container with a writable state volume, both ports, a PDB;
/// with several replicas, Redis from the Secret and the ingress-nginx
/// annotations pointing at authgate.
#[test]
fn rendered_chart_is_wired_as_documented() {
    let docs = documents(&template("default-values.yaml"));
    let deployment = find(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The drain (shutdown_delay 5s + shutdown_timeout 10s) ends before the
    // kubelet's SIGKILL.
    assert_eq!(pod["terminationGracePeriodSeconds"], 20);
    let config = find(&docs, "ConfigMap")["data"]["authgate.yaml"]
        .as_str()
        .unwrap();
    assert!(config.contains("shutdown_delay: 5s\n"), "{config}");
    assert!(config.contains("shutdown_timeout: 10s\n"), "{config}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/var/lib/authgate")
    );
    let ports: Vec<&Value> = find(&docs, "Service")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["port"])
        .collect();
    assert_eq!(ports, [4180, 9191]);
    find(&docs, "PodDisruptionBudget");
    assert!(docs.iter().all(|d| d["kind"] != "ServiceMonitor"));

    let docs = documents(&template("multi-replica-values.yaml"));
    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(env["name"], "SESSION_STORE");
    assert_eq!(env["valueFrom"]["secretKeyRef"]["key"], "redis_url");
    let protected = docs
        .iter()
        .find(|d| d["kind"] == "Ingress" && d["spec"]["rules"][0]["host"] == "hello.example.com")
        .expect("the protected Ingress");
    let annotations = &protected["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/auth-url"],
        "http://authgate.authgate.svc.cluster.local:4180/oauth2/auth"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/auth-signin"],
        "https://auth.example.com/oauth2/start?rd=$scheme://$host$escaped_request_uri"
    );
    assert_handoff_wiring(&docs, "app.example.org", "authgate");
}

/// The Ingresses of a protected `host` outside the cookie domain in
/// `docs`: the app's signs in through the host's own `/.authgate/start`,
/// and a second one sends `/.authgate/` on that host to `service` (the
/// authgate Service), without auth annotations.
fn assert_handoff_wiring(docs: &[Value], host: &str, service: &str) {
    let for_host: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Ingress" && d["spec"]["rules"][0]["host"] == host)
        .collect();
    let path = |d: &Value| d["spec"]["rules"][0]["http"]["paths"][0].clone();
    let app = for_host
        .iter()
        .find(|d| path(d)["path"] == "/")
        .unwrap_or_else(|| panic!("no protected Ingress for {host}"));
    assert_eq!(
        app["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-signin"],
        "https://$host/.authgate/start?rd=$scheme://$host$escaped_request_uri"
    );
    let handoff = for_host
        .iter()
        .find(|d| path(d)["path"] == "/.authgate/")
        .unwrap_or_else(|| panic!("no /.authgate/ Ingress for {host}"));
    assert_eq!(path(handoff)["backend"]["service"]["name"], service);
    assert!(
        handoff["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-url"].is_null(),
        "the handoff path is not guarded"
    );
}

/// `examples/nginx/ingress-nginx.yaml` passes Kubernetes' schemas in strict
/// mode, and its host outside the cookie domain is wired for the handoff
/// like the chart's.
#[test]
fn ingress_nginx_example_passes_kubernetes_schemas() {
    let dir = temp_dir("ingress-example");
    let example = std::fs::read_to_string(repo_root().join("examples/nginx/ingress-nginx.yaml"))
        .expect("read the ingress-nginx example");
    let (ok, log) = validate(dir.path(), &example);
    assert!(ok, "{log}");
    assert_handoff_wiring(&documents(&example), "app.example.org", "authgate");
}

/// The authgate.yaml the chart renders passes `authgate check-config`
/// (secrets from files, as the pod mounts them).
#[test]
fn chart_config_passes_check_config() {
    let dir = temp_dir("helm-config");
    let docs = documents(&template("default-values.yaml"));
    let config = find(&docs, "ConfigMap")["data"]["authgate.yaml"]
        .as_str()
        .expect("authgate.yaml in the ConfigMap");
    let path = dir.path().join("authgate.yaml");
    std::fs::write(&path, config).unwrap();
    let cookie = dir.path().join("cookie_secret");
    let client = dir.path().join("idp_client_secret");
    std::fs::write(&cookie, "lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=").unwrap();
    std::fs::write(&client, "ci-client-secret").unwrap();
    run_ok(
        "authgate check-config on the chart's authgate.yaml",
        Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .env("COOKIE_SECRET_FILE", &cookie)
            .env("IDP_CLIENT_SECRET_FILE", &client),
    );
}

/// Settings that cannot work are refused at `helm template` with a message
/// saying what to set: several replicas on the embedded store, and no
/// client secret at all.
#[test]
fn chart_refuses_unworkable_values() {
    for (set, expected) in [
        (
            vec!["replicaCount=2", "authenticate.idp.clientSecret=x"],
            "needs a shared session store",
        ),
        (vec![], "set authenticate.idp.clientSecret"),
    ] {
        let mut command = Command::new(helm());
        command.arg("template").arg("authgate").arg(chart());
        for s in &set {
            command.args(["--set", s]);
        }
        let output = command.output().expect("run helm");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{set:?} rendered");
        assert!(stderr.contains(expected), "{set:?}: {stderr}");
    }
}

/// `systemd-analyze verify` accepts the unit without a single warning (it
/// only warns about unknown keys, so any output is a failure), and does warn
/// about a misspelt one.
#[test]
fn systemd_unit_verifies() {
    let analyze = require_program("systemd-analyze", None);
    let dir = temp_dir("systemd");
    let unit = std::fs::read_to_string(repo_root().join("deploy/systemd/authgate.service"))
        .expect("read the unit");
    // verify checks that ExecStart's program exists: point it at the build.
    let unit = unit.replace("/usr/local/bin/authgate", BIN);
    let verify = |text: &str| {
        let path = dir.path().join("authgate.service");
        std::fs::write(&path, text).expect("write unit");
        let output = Command::new(&analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .expect("run systemd-analyze");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = verify(&unit);
    assert!(ok && stderr.trim().is_empty(), "{stderr}");
    let (_, stderr) = verify(&unit.replace("ProtectSystem=", "ProtectSystme="));
    assert!(stderr.contains("ProtectSystme"), "{stderr}");
}
