//! The Envoy examples and the reflection descriptors, checked against
//! Envoy's own schema: the `.proto` files bundled in the envoy-types crate,
//! compiled here with protox. Envoy itself cannot be installed on the
//! machines that run these tests, so this is what stands between a
//! misspelt field and a user's Envoy refusing the config.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use authgate::identity::IDENTITY_HEADERS;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use envoy_types::pb::envoy::config::core::v3::http_uri::HttpUpstreamType;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ExtAuthz, ExtAuthzPerRoute, ext_authz::Services, ext_authz_per_route::Override,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
    http_filter::ConfigType as HttpFilterConfig,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

/// The `proto/` folder of the envoy-types crate this build uses.
fn envoy_protos() -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("envoy-types in cargo metadata");
    Path::new(manifest).parent().unwrap().join("proto")
}

/// Compiles `files` (and their imports) from the bundled protos.
fn compile(files: &[&str]) -> protox::Compiler {
    let root = envoy_protos();
    let includes = [
        "data-plane-api",
        "xds",
        "protoc-gen-validate",
        "googleapis",
        "cel-spec/proto",
        "opentelemetry-proto",
        "client_model",
    ]
    .map(|dir| root.join(dir));
    let mut compiler = protox::Compiler::new(includes).expect("protox");
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(files).expect("compile Envoy protos");
    compiler
}

/// Bootstrap plus every type the examples name in a typed_config.
fn bootstrap_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        compile(&[
            "envoy/config/bootstrap/v3/bootstrap.proto",
            "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
            "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
            "envoy/extensions/filters/http/router/v3/router.proto",
            "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
        ])
        .descriptor_pool()
    })
}

/// Parses an example as Envoy would: YAML → proto JSON → `Bootstrap`, with
/// unknown fields and unknown `@type`s as errors; then into envoy-types'
/// prost type so the fields can be checked.
fn load(example: &str) -> Bootstrap {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(example);
    parse_bootstrap(example, &std::fs::read_to_string(&path).unwrap())
}

/// [`load`] for YAML text; `name` says whose text in the panic message.
pub(crate) fn parse_bootstrap(example: &str, yaml: &str) -> Bootstrap {
    let json: serde_json::Value = serde_saphyr::from_str(yaml).expect("YAML");
    let pool = bootstrap_pool();
    let descriptor = pool
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .unwrap();
    let message = DynamicMessage::deserialize(descriptor, json)
        .unwrap_or_else(|e| panic!("{example} is not a valid Envoy Bootstrap: {e}"));
    Bootstrap::decode(message.encode_to_vec().as_slice()).unwrap()
}

fn unpack<M: Message + Default>(any: &Any, type_name: &str) -> M {
    assert_eq!(any.type_url, format!("type.googleapis.com/{type_name}"));
    M::decode(any.value.as_slice()).unwrap()
}

/// The one HTTP connection manager of an example, and its ext_authz filter.
pub(crate) fn hcm_and_ext_authz(bootstrap: &Bootstrap) -> (HttpConnectionManager, ExtAuthz) {
    let listener = &bootstrap.static_resources.as_ref().unwrap().listeners[0];
    let filter = &listener.filter_chains[0].filters[0];
    let Some(FilterConfig::TypedConfig(any)) = &filter.config_type else {
        panic!("typed_config expected")
    };
    let hcm: HttpConnectionManager = unpack(
        any,
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    );
    let first = &hcm.http_filters[0];
    assert_eq!(first.name, "envoy.filters.http.ext_authz");
    let Some(HttpFilterConfig::TypedConfig(any)) = &first.config_type else {
        panic!("typed_config expected")
    };
    let ext_authz: ExtAuthz = unpack(any, "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz");
    assert_eq!(
        hcm.http_filters.last().unwrap().name,
        "envoy.filters.http.router",
        "the router must be the last filter"
    );
    (hcm, ext_authz)
}

/// Fields both modes must get right: V3, fail closed, no body, the login
/// host unguarded by a per-route `disabled: true`, a timeout above our p99
/// yet well below a user's patience.
pub(crate) fn check_common(
    bootstrap: &Bootstrap,
    hcm: &HttpConnectionManager,
    ext_authz: &ExtAuthz,
) {
    assert_eq!(
        ext_authz.transport_api_version, 2,
        "transport_api_version: V3"
    );
    assert!(!ext_authz.failure_mode_allow);
    assert!(ext_authz.with_request_body.is_none());
    let Some(RouteSpecifier::RouteConfig(routes)) = &hcm.route_specifier else {
        panic!("inline route_config expected")
    };
    let login = routes
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == "auth.example.com"))
        .expect("login virtual host");
    let per_route: ExtAuthzPerRoute = unpack(
        &login.typed_per_filter_config["envoy.filters.http.ext_authz"],
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
    );
    assert_eq!(per_route.r#override, Some(Override::Disabled(true)));
    // The login host routes only the login to authgate: Envoy's first
    // matching route for each path, worked out as Envoy does.
    let first_match = |path: &str| {
        login
            .routes
            .iter()
            .find(|route| {
                match route
                    .r#match
                    .as_ref()
                    .and_then(|m| m.path_specifier.as_ref())
                {
                    Some(PathSpecifier::Prefix(prefix)) => path.starts_with(prefix.as_str()),
                    Some(PathSpecifier::Path(exact)) => path == exact,
                    Some(PathSpecifier::SafeRegex(m)) => {
                        regex::Regex::new(&format!("^(?:{})$", m.regex))
                            .unwrap()
                            .is_match(path)
                    }
                    other => panic!("login route matches {other:?}"),
                }
            })
            .and_then(|route| route.action.as_ref())
    };
    for path in [
        "/",
        "/oauth2/start",
        "/oauth2/callback",
        "/oauth2/sign_out",
        "/oauth2/userinfo",
        "/.well-known/authgate/jwks.json",
    ] {
        match first_match(path) {
            Some(Action::Route(action)) => assert_eq!(
                action.cluster_specifier,
                Some(ClusterSpecifier::Cluster("authgate_http".into())),
                "{path}"
            ),
            other => panic!("{path} on the login host: {other:?}"),
        }
    }
    let lookalikes = ["/oauth2/startx", "/x/oauth2/start"];
    for path in crate::support::HIDDEN_ON_THE_LOGIN_HOST
        .into_iter()
        .chain(lookalikes)
    {
        match first_match(path) {
            Some(Action::DirectResponse(answer)) => assert_eq!(answer.status, 404, "{path}"),
            other => panic!("{path} on the login host reaches {other:?}"),
        }
    }
    let app = routes
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == "app.example.com"))
        .expect("app virtual host");
    assert!(
        !app.typed_per_filter_config
            .contains_key("envoy.filters.http.ext_authz"),
        "the app must stay guarded"
    );
    // Only /.authgate/ on the app's host is unguarded, and goes to authgate.
    for route in &app.routes {
        let prefix = match route
            .r#match
            .as_ref()
            .and_then(|m| m.path_specifier.as_ref())
        {
            Some(PathSpecifier::Prefix(prefix)) => prefix.as_str(),
            other => panic!("app route matches {other:?}"),
        };
        let guarded = !route
            .typed_per_filter_config
            .get("envoy.filters.http.ext_authz")
            .is_some_and(|any| {
                unpack::<ExtAuthzPerRoute>(
                    any,
                    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                )
                .r#override
                    == Some(Override::Disabled(true))
            });
        let cluster = match route.action.as_ref() {
            Some(Action::Route(action)) => match &action.cluster_specifier {
                Some(ClusterSpecifier::Cluster(name)) => name.as_str(),
                other => panic!("{prefix}: {other:?}"),
            },
            other => panic!("{prefix}: {other:?}"),
        };
        match prefix {
            "/.authgate/" => assert_eq!((guarded, cluster), (false, "authgate_http")),
            _ => assert!(guarded, "{prefix} must stay guarded"),
        }
    }
    assert!(
        app.routes.iter().any(|r| matches!(
            r.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()),
            Some(PathSpecifier::Prefix(p)) if p == "/.authgate/"
        )),
        "no /.authgate/ route on the app's host"
    );
    let clusters: Vec<&str> = bootstrap
        .static_resources
        .as_ref()
        .unwrap()
        .clusters
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert!(clusters.contains(&"authgate_http"), "{clusters:?}");
}

/// gRPC mode: the filter's cluster exists and speaks HTTP/2, timeout 500 ms.
#[test]
fn grpc_example_is_a_valid_envoy_config() {
    let bootstrap = load("examples/envoy/envoy.yaml");
    let (hcm, ext_authz) = hcm_and_ext_authz(&bootstrap);
    check_common(&bootstrap, &hcm, &ext_authz);
    let Some(Services::GrpcService(grpc)) = &ext_authz.services else {
        panic!("grpc_service expected")
    };
    let Some(TargetSpecifier::EnvoyGrpc(target)) = &grpc.target_specifier else {
        panic!("envoy_grpc expected")
    };
    let timeout = grpc.timeout.as_ref().expect("an explicit timeout");
    assert_eq!((timeout.seconds, timeout.nanos), (0, 500_000_000));
    let cluster = bootstrap
        .static_resources
        .as_ref()
        .unwrap()
        .clusters
        .iter()
        .find(|c| c.name == target.cluster_name)
        .expect("the ext_authz cluster is defined");
    assert!(
        cluster
            .typed_extension_protocol_options
            .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
        "gRPC needs HTTP/2 to the cluster"
    );
    // The per-route conditions example: /admin/ sends allowed_groups.
    let Some(RouteSpecifier::RouteConfig(routes)) = &hcm.route_specifier else {
        panic!("inline route_config expected")
    };
    let admin = routes
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .find(|r| {
            matches!(
                r.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()),
                Some(PathSpecifier::Prefix(p)) if p == "/admin/"
            )
        })
        .expect("the /admin/ route");
    let per_route: ExtAuthzPerRoute = unpack(
        &admin.typed_per_filter_config["envoy.filters.http.ext_authz"],
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
    );
    let Some(Override::CheckSettings(settings)) = per_route.r#override else {
        panic!("check_settings expected: {per_route:?}")
    };
    assert_eq!(
        settings
            .context_extensions
            .get("allowed_groups")
            .map(String::as_str),
        Some("admins")
    );
}

/// HTTP mode: path_prefix, Cookie allowed, identity headers allowed
/// upstream, never x-forwarded-host/-uri from the client, and a re-issued
/// Set-Cookie passed to the browser on success.
#[test]
fn http_example_is_a_valid_envoy_config() {
    let bootstrap = load("examples/envoy/envoy-http.yaml");
    let (hcm, ext_authz) = hcm_and_ext_authz(&bootstrap);
    check_common(&bootstrap, &hcm, &ext_authz);
    let Some(Services::HttpService(service)) = &ext_authz.services else {
        panic!("http_service expected")
    };
    assert_eq!(service.path_prefix, "/forward-auth");
    let server_uri = service.server_uri.as_ref().unwrap();
    assert_eq!(
        server_uri.http_upstream_type,
        Some(HttpUpstreamType::Cluster("authgate_http".into()))
    );
    let exact = |patterns: &[envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher]| {
        patterns
            .iter()
            .filter_map(|p| match &p.match_pattern {
                Some(MatchPattern::Exact(name)) => Some(name.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let allowed = exact(&ext_authz.allowed_headers.as_ref().unwrap().patterns);
    for needed in ["cookie", "accept", "x-requested-with", "x-forwarded-proto"] {
        assert!(
            allowed.iter().any(|h| h == needed),
            "{needed} not in allowed_headers"
        );
    }
    for spoofable in ["x-forwarded-host", "x-forwarded-uri"] {
        assert!(
            !allowed.iter().any(|h| h == spoofable),
            "{spoofable} must not be allowed"
        );
    }
    let upstream = exact(
        &service
            .authorization_response
            .as_ref()
            .unwrap()
            .allowed_upstream_headers
            .as_ref()
            .unwrap()
            .patterns,
    );
    for name in IDENTITY_HEADERS {
        assert!(upstream.iter().any(|h| h == name.as_str()), "{name}");
    }
    let to_client = exact(
        &service
            .authorization_response
            .as_ref()
            .unwrap()
            .allowed_client_headers_on_success
            .as_ref()
            .expect("allowed_client_headers_on_success: the re-issued cookie")
            .patterns,
    );
    assert_eq!(to_client, ["set-cookie"], "only the re-issued cookie");
}

/// A misspelt field is caught: the check is not a rubber stamp.
#[test]
fn a_misspelt_field_fails_the_schema_check() {
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envoy/envoy.yaml"),
    )
    .unwrap()
    .replace("failure_mode_allow: false", "failure_mode_alow: false");
    let json: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let descriptor = bootstrap_pool()
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .unwrap();
    let error = DynamicMessage::deserialize(descriptor, json)
        .expect_err("a misspelt field inside a typed_config must be refused");
    assert!(error.to_string().contains("failure_mode_alow"), "{error}");
}

/// The descriptors served by reflection are exactly what the envoy-types
/// protos compile to. After bumping envoy-types, regenerate with
/// `AUTHGATE_BLESS=1 cargo test --test it envoy_examples::`.
#[test]
fn reflection_descriptors_are_current() {
    let fresh =
        compile(&["envoy/service/auth/v3/external_auth.proto"]).encode_file_descriptor_set();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/grpc/envoy_authz.protoset");
    if std::env::var_os("AUTHGATE_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    assert!(
        fresh == authgate::grpc::ENVOY_AUTHZ_DESCRIPTORS,
        "src/grpc/envoy_authz.protoset is stale: run with AUTHGATE_BLESS=1"
    );
}
