//! The Helm chart and the systemd unit, checked with the real tools: `helm
//! lint` and `helm template` (helm built by `scripts/test.sh`), the rendered
//! manifests against Kubernetes' JSON schemas in strict mode
//! (`kubernetes-validate`, which ships the schemas, so no download), the
//! chart's authgate.yaml through `authgate check-config` with the
//! Deployment's environment, and the unit through `systemd-analyze verify`.
//! Pomerium's Helm values (`ci/pomerium-seed-values.yaml`, the setup
//! authgate replaces, unchanged) render the seed's topology; `chart_flow`
//! runs it. A missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::support::process::{require_program, run_ok};
use crate::support::{cached_tool, repo_root, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
/// The Kubernetes version the manifests are validated for.
const KUBERNETES_VERSION: &str = "1.35.0";

pub(crate) fn helm() -> PathBuf {
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

pub(crate) fn chart() -> PathBuf {
    repo_root().join("deploy/helm/authgate")
}

/// Every values file in the chart's `ci/`, each rendered by the tests.
pub(crate) const CI_VALUES: [&str; 4] = [
    "default-values.yaml",
    "multi-replica-values.yaml",
    "pomerium-seed-values.yaml",
    "pomerium-routes-values.yaml",
];

/// The namespace the tests install into.
pub(crate) const NAMESPACE: &str = "authgate";

/// `helm template` with the chart's `ci/<values>.yaml`; the rendered text.
pub(crate) fn template(values: &str) -> String {
    run_ok(
        &format!("helm template ({values})"),
        &mut template_command(values, &[]),
    )
}

/// `helm template authgate` in [`NAMESPACE`] with `ci/<values>.yaml` and
/// `--set` each of `sets`.
pub(crate) fn template_command(values: &str, sets: &[&str]) -> Command {
    let mut command = Command::new(helm());
    command
        .args(["template", "authgate", "--namespace", NAMESPACE])
        .arg(chart())
        .arg("-f")
        .arg(chart().join("ci").join(values));
    for set in sets {
        command.args(["--set", set]);
    }
    command
}

/// `helm template` that must fail; what helm said.
fn template_refused(values: &str, sets: &[&str]) -> String {
    let output = template_command(values, sets).output().expect("run helm");
    assert!(!output.status.success(), "{values} {sets:?} rendered");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The documents of a rendered chart, parsed.
pub(crate) fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .map(|doc| serde_saphyr::from_str(doc).expect("rendered YAML parses"))
        .collect()
}

pub(crate) fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// Runs kubernetes-validate in strict mode (unknown fields are errors) on
/// `manifests`; returns whether it passed and what it said.
pub(crate) fn validate(dir: &Path, manifests: &str) -> (bool, String) {
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
/// install must give), with three replicas on Redis, and with Pomerium's
/// values in both its older and its current chart's style.
#[test]
fn helm_lint_passes() {
    for values in CI_VALUES {
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

/// Every rendering passes Kubernetes' schemas in strict mode; the same
/// manifests with one misspelt field do not (so the check can fail).
#[test]
fn rendered_manifests_pass_kubernetes_schemas() {
    let dir = temp_dir("helm");
    for values in CI_VALUES {
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
/// non-root container with a writable state volume, its three ports
/// (/metrics on its own), a PDB; with several replicas, Redis from the
/// Secret and the ingress-nginx annotations pointing at authgate, bound to
/// the Ingress's host.
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
    let config = authgate_yaml(&docs);
    assert!(config.contains("shutdown_delay: 5s\n"), "{config}");
    assert!(config.contains("shutdown_timeout: 10s\n"), "{config}");
    assert!(
        config.contains("metrics_address: 0.0.0.0:9090\n"),
        "{config}"
    );
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
    let ports = |v: &Value, key: &str| -> Vec<(Value, Value)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].clone(), p[key].clone()))
            .collect()
    };
    let named = |pairs: [(&str, u16); 3]| -> Vec<(Value, Value)> {
        pairs
            .iter()
            .map(|(n, p)| ((*n).into(), (*p).into()))
            .collect()
    };
    assert_eq!(
        ports(&find(&docs, "Service")["spec"]["ports"], "port"),
        named([("http", 4180), ("grpc", 9191), ("metrics", 9090)])
    );
    assert_eq!(
        ports(&container["ports"], "containerPort"),
        named([("http", 4180), ("grpc", 9191), ("metrics", 9090)])
    );
    find(&docs, "PodDisruptionBudget");
    assert!(docs.iter().all(|d| d["kind"] != "ServiceMonitor"));
    let docs = documents(&run_ok(
        "helm template (serviceMonitor)",
        &mut template_command("default-values.yaml", &["serviceMonitor.enabled=true"]),
    ));
    let endpoint = &find(&docs, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics", "scraped on the metrics port");

    let docs = documents(&template("multi-replica-values.yaml"));
    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(env["name"], "SESSION_STORE");
    assert_eq!(env["valueFrom"]["secretKeyRef"]["key"], "redis_url");
    let annotations = &ingress_for(&docs, "hello.example.com")["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/auth-url"],
        "http://authgate.authgate.svc.cluster.local:4180/oauth2/auth?host=hello.example.com"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/auth-signin"],
        "https://authenticate.example.com/oauth2/start?rd=$scheme://$host$escaped_request_uri"
    );
    assert_handoff_wiring(&docs, "app.example.org", "authgate");
}

/// authgate.yaml as the chart's ConfigMap holds it.
pub(crate) fn authgate_yaml(docs: &[Value]) -> &str {
    find(docs, "ConfigMap")["data"]["authgate.yaml"]
        .as_str()
        .expect("authgate.yaml in the ConfigMap")
}

/// The Ingress whose path `/` serves `host` (the app's, not a handoff's).
fn ingress_for<'a>(docs: &'a [Value], host: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == "Ingress"
                && d["spec"]["rules"][0]["host"] == host
                && d["spec"]["rules"][0]["http"]["paths"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["path"] == "/")
        })
        .unwrap_or_else(|| panic!("no Ingress for {host}"))
}

/// A rendered Service by name.
fn service<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Service {name}"))
}

/// `(path, pathType, service, port)` of each path of an Ingress's rule.
fn paths(ingress: &Value) -> Vec<(String, String, String, Value)> {
    ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let backend = &p["backend"]["service"];
            let port = if backend["port"]["name"].is_null() {
                backend["port"]["number"].clone()
            } else {
                backend["port"]["name"].clone()
            };
            (
                p["path"].as_str().unwrap().to_owned(),
                p["pathType"].as_str().unwrap().to_owned(),
                backend["name"].as_str().unwrap().to_owned(),
                port,
            )
        })
        .collect()
}

/// The seed's Pomerium values, unchanged, render the seed's topology: the
/// route (host lower-cased, its groups rules, no `to`) in authgate.yaml; an
/// Ingress for hello.yourdomain.dev guarded by authgate (auth-url bound to
/// its host) and backed by an ExternalName Service for nextcloud in its own
/// namespace; the login host from authenticate.redirectUrl exposing only
/// the login endpoints; the IngressClass from the old annotation (which the
/// API server refuses beside ingressClassName); extraEnv as the
/// environment; the seed's resources; no secret outside the Secret.
#[test]
fn pomerium_seed_values_render_the_seed_topology() {
    let rendered = template("pomerium-seed-values.yaml");
    let docs = documents(&rendered);
    let config = authgate_yaml(&docs);
    for line in [
        "authenticate_service_url: https://authenticate.yourdomain.dev\n",
        "cookie_domain: \"yourdomain.dev\"\n",
        "idp_provider_url: \"http://dex.YOURDOMAIN.dev\"\n",
        "idp_client_id: \"pom\"\n",
        "idp_scopes: [\"openid\",\"profile\",\"email\",\"groups\",\"offline_access\"]\n",
        "insecure: true\n",
    ] {
        assert!(config.contains(line), "{line}in:\n{config}");
    }
    let parsed: Value = serde_saphyr::from_str(config).expect("authgate.yaml parses");
    assert_eq!(
        parsed["policy"],
        serde_json::json!([{
            "from": "https://hello.yourdomain.dev",
            "allowed_groups": ["devops"],
            "allowed_idp_claims": {"groups": ["devops"]},
        }])
    );
    // The client secret and the service account are in no ConfigMap, no
    // Deployment, no Ingress: only the Secret carries the former.
    for doc in docs.iter().filter(|d| d["kind"] != "Secret") {
        let text = doc.to_string();
        assert!(!text.contains("pomerium\""), "client secret in {text}");
        assert!(
            !text.contains("pomerium-authenticate"),
            "service account in {text}"
        );
    }
    assert!(!rendered.contains("pomerium-authenticate"));
    let secret = find(&docs, "Secret");
    assert_eq!(secret_value(secret, "idp_client_secret"), "pomerium");

    let app = ingress_for(&docs, "hello.yourdomain.dev");
    assert_eq!(app["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        app["metadata"]["annotations"],
        serde_json::json!({
            "kubernetes.io/ingress.allow-http": "true",
            "nginx.ingress.kubernetes.io/auth-url":
                "http://authgate.authgate.svc.cluster.local:4180/oauth2/auth?host=hello.yourdomain.dev",
            "nginx.ingress.kubernetes.io/auth-signin":
                "https://authenticate.yourdomain.dev/oauth2/start?rd=$scheme://$host$escaped_request_uri",
            "nginx.ingress.kubernetes.io/auth-response-headers":
                "X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Preferred-Username,X-Auth-Request-Groups,X-Auth-Request-Jwt",
            "nginx.ingress.kubernetes.io/proxy-buffer-size": "16k",
        })
    );
    assert_eq!(
        paths(app),
        [(
            "/".into(),
            "Prefix".into(),
            "authgate-nextcloud-nextcloud".into(),
            8080.into()
        )]
    );
    assert_eq!(
        app["spec"]["tls"][0]["hosts"],
        serde_json::json!(["hello.yourdomain.dev"])
    );
    let nextcloud = service(&docs, "authgate-nextcloud-nextcloud");
    assert_eq!(
        nextcloud["metadata"]["namespace"],
        Value::Null,
        "the release's namespace"
    );
    assert_eq!(nextcloud["spec"]["type"], "ExternalName");
    assert_eq!(
        nextcloud["spec"]["externalName"],
        "nextcloud.nextcloud.svc.cluster.local"
    );
    assert_eq!(nextcloud["spec"]["ports"][0]["port"], 8080);
    assert_eq!(nextcloud["spec"]["ports"][0]["targetPort"], 8080);

    let login = docs
        .iter()
        .find(|d| {
            d["kind"] == "Ingress" && d["spec"]["rules"][0]["host"] == "authenticate.yourdomain.dev"
        })
        .expect("the login host's Ingress");
    let exposed: Vec<_> = paths(login)
        .into_iter()
        .map(|(path, kind, service, port)| {
            assert_eq!(
                (kind.as_str(), service.as_str(), port),
                ("Exact", "authgate", "http".into())
            );
            path
        })
        .collect();
    assert_eq!(
        exposed,
        [
            "/",
            "/oauth2/start",
            "/oauth2/callback",
            "/oauth2/sign_out",
            "/oauth2/userinfo",
            "/.well-known/authgate/jwks.json"
        ]
    );
    for ingress in docs.iter().filter(|d| d["kind"] == "Ingress") {
        assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
        assert!(
            ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"].is_null(),
            "both class forms: {ingress}"
        );
    }

    let container = &find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["env"],
        serde_json::json!([
            {"name": "IDP_SCOPES", "value": "openid,profile,email,groups,offline_access"},
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "LOG_FORMAT", "value": "pretty"},
        ]),
        "POMERIUM_DEBUG: debug logs, replacing LOG_LEVEL: error"
    );
    assert_eq!(
        container["resources"],
        serde_json::json!({
            "limits": {"cpu": "150m", "memory": "100Mi"},
            "requests": {"cpu": "100m", "memory": "100Mi"},
        })
    );
}

/// A key of a rendered Secret, decoded.
pub(crate) fn secret_value(secret: &Value, key: &str) -> String {
    let encoded = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in the Secret"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64 in the Secret"),
    )
    .expect("UTF-8 secret")
}

/// Values in the current Pomerium chart's style (`config.routes`, list
/// scopes, no redirectUrl): the login host authenticate.<rootDomain> in
/// lower case; a Service in another namespace through ExternalName; one in
/// the release's namespace directly, its two routes one Ingress with the
/// prefix path first; an https upstream outside the cluster with
/// backend-protocol HTTPS; a route without `to` gets no Ingress; the TLS
/// Secret and the user's annotations on every Ingress.
#[test]
fn pomerium_routes_values_render() {
    let docs = documents(&template("pomerium-routes-values.yaml"));
    let config = authgate_yaml(&docs);
    assert!(
        config.contains("authenticate_service_url: https://authenticate.corp.example.com\n"),
        "{config}"
    );
    assert!(
        config.contains("cookie_domain: \"corp.example.com\"\n"),
        "{config}"
    );
    let parsed: Value = serde_saphyr::from_str(config).expect("authgate.yaml parses");
    let froms: Vec<&Value> = parsed["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["from"])
        .collect();
    assert_eq!(
        froms,
        [
            "https://grafana.corp.example.com",
            "https://wiki.corp.example.com",
            "https://wiki.corp.example.com",
            "https://legacy.corp.example.com",
            "https://status.corp.example.com"
        ]
    );
    assert_eq!(parsed["routes"][1]["prefix"], "/admin");
    assert!(
        parsed["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["to"].is_null())
    );

    let grafana = ingress_for(&docs, "grafana.corp.example.com");
    assert_eq!(
        paths(grafana),
        [(
            "/".into(),
            "Prefix".into(),
            "authgate-grafana-monitoring".into(),
            3000.into()
        )]
    );
    assert_eq!(
        service(&docs, "authgate-grafana-monitoring")["spec"]["externalName"],
        "grafana.monitoring.svc.cluster.local"
    );
    let wiki = ingress_for(&docs, "wiki.corp.example.com");
    assert_eq!(
        paths(wiki),
        [
            ("/admin".into(), "Prefix".into(), "wiki".into(), 80.into()),
            ("/".into(), "Prefix".into(), "wiki".into(), 80.into()),
        ]
    );
    let legacy = ingress_for(&docs, "legacy.corp.example.com");
    assert_eq!(
        legacy["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"],
        "HTTPS"
    );
    assert_eq!(paths(legacy)[0].3, 443);
    assert_eq!(
        service(&docs, "authgate-legacy-example-net")["spec"]["externalName"],
        "legacy.example.net"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "Ingress"
            && d["spec"]["rules"][0]["host"] == "status.corp.example.com"),
        "a route without `to` has no Ingress"
    );
    for ingress in docs.iter().filter(|d| d["kind"] == "Ingress") {
        assert_eq!(
            ingress["spec"]["tls"][0]["secretName"],
            "corp-example-com-tls"
        );
        assert_eq!(
            ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
            "letsencrypt"
        );
        let host = ingress["spec"]["rules"][0]["host"].as_str().unwrap();
        if let Some(url) =
            ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-url"].as_str()
        {
            assert!(url.ends_with(&format!("/oauth2/auth?host={host}")), "{url}");
        }
    }
}

/// The values schema refuses, naming it, any value the chart would
/// otherwise ignore: at the top, in config, in a route, in ingress; and
/// the chart refuses secrets in extraEnv.
#[test]
fn values_schema_refuses_what_the_chart_does_not_read() {
    for (set, named) in [
        (
            "config.rootDomainn=x",
            "at '/config': additional properties 'rootDomainn' not allowed",
        ),
        (
            "policy[0].from=https://a.example.com",
            "additional properties 'policy' not allowed",
        ),
        (
            "ingress.tls.secretName=x",
            "at '/ingress/tls': additional properties 'secretName' not allowed",
        ),
        (
            "authenticate.idp.serviceAcount=x",
            "additional properties 'serviceAcount' not allowed",
        ),
        (
            "prometheusRule.enable=true",
            "at '/prometheusRule': additional properties 'enable' not allowed",
        ),
    ] {
        let said = template_refused("pomerium-seed-values.yaml", &[set]);
        assert!(said.contains(named), "{set}: {said}");
    }
    let said = template_refused(
        "pomerium-seed-values.yaml",
        &[
            "config.policy[0].from=https://a.example.com",
            "config.policy[0].allowed_grups=x",
        ],
    );
    assert!(
        said.contains("additional properties 'allowed_grups' not allowed"),
        "{said}"
    );
    let said = template_refused("pomerium-seed-values.yaml", &["extraEnv.COOKIE_SECRET=x"]);
    assert!(
        said.contains("extraEnv.COOKIE_SECRET: a secret in the Deployment's environment"),
        "{said}"
    );
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

/// What a pod of the rendered Deployment has: its environment (values,
/// and `secretKeyRef`s read from the rendered Secret) and the Secret's
/// files, written to `dir`. The paths the ConfigMap names for the files
/// (`/etc/authgate/secrets/…`, the pod's mount) are pointed at `dir` with
/// COOKIE_SECRET_FILE and IDP_CLIENT_SECRET_FILE.
pub(crate) fn pod_environment(docs: &[Value], dir: &Path) -> Vec<(String, String)> {
    let secret = find(docs, "Secret");
    let mut env: Vec<(String, String)> =
        find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|var| {
                let name = var["name"].as_str().expect("env name").to_owned();
                let value = match var["value"].as_str() {
                    Some(value) => value.to_owned(),
                    None => {
                        let key = var["valueFrom"]["secretKeyRef"]["key"]
                            .as_str()
                            .expect("secret key");
                        secret_value(secret, key)
                    }
                };
                (name, value)
            })
            .collect();
    for (key, var) in [
        ("cookie_secret", "COOKIE_SECRET_FILE"),
        ("idp_client_secret", "IDP_CLIENT_SECRET_FILE"),
    ] {
        let path = dir.join(key);
        std::fs::write(&path, secret_value(secret, key)).expect("write secret file");
        env.push((var.to_owned(), path.display().to_string()));
    }
    env
}

/// The authgate.yaml of every values file passes `authgate check-config`
/// with the Deployment's environment (the seed's IDP_SCOPES as Pomerium
/// wrote it, and its POMERIUM_DEBUG's LOG_LEVEL among it) and the
/// Secret's files; the seed's warnings say what a Pomerium user must know.
#[test]
fn chart_config_passes_check_config() {
    for values in CI_VALUES {
        let dir = temp_dir("helm-config");
        let docs = documents(&template(values));
        let path = dir.path().join("authgate.yaml");
        std::fs::write(&path, authgate_yaml(&docs)).unwrap();
        let output = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .env_clear()
            .envs(pod_environment(&docs, dir.path()))
            .output()
            .expect("run authgate check-config");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{values}: {stderr}");
        assert!(!stderr.contains("unknown key"), "{values}: {stderr}");
        if values == "pomerium-seed-values.yaml" {
            assert!(
                stderr.contains("insecure: authgate never terminates TLS"),
                "{stderr}"
            );
            assert!(
                stderr.contains("plain-http issuer `http://dex.YOURDOMAIN.dev`"),
                "{stderr}"
            );
            assert!(
                !stderr.contains("pomerium"),
                "no secret in the output: {stderr}"
            );
        }
    }
}

/// Settings that cannot work are refused at `helm template` with a message
/// saying what to set: several replicas on the embedded store, no client
/// secret at all; and, from Pomerium's values, a redirect URL that is not
/// authgate's callback, a wildcard `from` with `to`, a regex route with
/// `to`, both `policy` and `routes`, both class forms disagreeing.
#[test]
fn chart_refuses_unworkable_values() {
    for (values, set, expected) in [
        (
            "default-values.yaml",
            &["replicaCount=2"][..],
            "needs a shared session store",
        ),
        (
            "default-values.yaml",
            &["authenticate.idp.clientSecret="],
            "set authenticate.idp.clientSecret",
        ),
        (
            "pomerium-seed-values.yaml",
            &["authenticate.redirectUrl=https://authenticate.yourdomain.dev/callback"],
            "authgate's callback is https://<login host>/oauth2/callback",
        ),
        (
            "pomerium-seed-values.yaml",
            &[
                "config.policy[0].from=https://*.yourdomain.dev",
                "config.policy[0].to=http://a",
            ],
            "config.policy[0]: a wildcard from",
        ),
        (
            "pomerium-seed-values.yaml",
            &[
                "config.policy[0].from=https://a.yourdomain.dev",
                "config.policy[0].to=http://a",
                "config.policy[0].regex=/x.*",
            ],
            "config.policy[0]: regex with `to` has no Ingress path",
        ),
        (
            "pomerium-seed-values.yaml",
            &["config.routes[0].from=https://a.yourdomain.dev"],
            "config.policy and config.routes are the same list",
        ),
        (
            "pomerium-seed-values.yaml",
            &["ingress.className=nginx-internal"],
            "ingress.annotations.kubernetes.io/ingress.class is nginx but ingress.className is nginx-internal",
        ),
    ] {
        let said = template_refused(values, set);
        assert!(said.contains(expected), "{set:?}: {said}");
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
