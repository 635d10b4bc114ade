//! `docs/authgate.schema.json`, the JSON Schema editors use for
//! `authgate.yaml`: it is what the config types generate now, and the
//! shipped examples validate against it (a misspelt key does not).

use authgate::config::schema::{SCHEMA_PATH, json_schema};
use serde_json::Value;

use crate::support::repo_root;

/// The committed schema is the generated one. To refresh it after changing
/// the config types: `AUTHGATE_UPDATE_SCHEMA=1 cargo test --test it schema`.
#[test]
fn schema_is_current() {
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&json_schema()).unwrap()
    );
    let path = repo_root().join(SCHEMA_PATH);
    if std::env::var_os("AUTHGATE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{SCHEMA_PATH} is not what the config types generate; run \
         AUTHGATE_UPDATE_SCHEMA=1 cargo test --test it schema and commit it"
    );
}

/// The YAML `text` as JSON.
fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap()
}

/// The validator of the committed schema.
fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join(SCHEMA_PATH)).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

/// The errors of `instance`, one line each.
fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// examples/authgate.yaml validates, names the schema for editors, and
/// Pomerium's ignored keys and one-or-list values validate where users
/// write them; a misspelt key, a wrong type or a key of another name is
/// refused, each at its place.
#[test]
fn examples_validate_against_the_schema() {
    let validator = validator();
    let text = std::fs::read_to_string(repo_root().join("examples/authgate.yaml")).unwrap();
    assert!(text.starts_with("# yaml-language-server: $schema=../docs/authgate.schema.json"));
    let example = yaml(&text);
    assert_eq!(errors(&validator, &example), Vec::<String>::new());

    let pomerium = yaml(
        "authenticate_service_url: https://auth.example.com\n\
         idp_scopes: openid profile email groups offline_access\n\
         insecure_server: true\n\
         policy:\n\
         \x20 - from: https://hello.example.com\n\
         \x20   to: http://nextcloud.nextcloud.svc.cluster.local:8080\n\
         \x20   allowed_groups: [devops]\n\
         \x20   allowed_idp_claims:\n\
         \x20     groups: devops\n",
    );
    assert_eq!(errors(&validator, &pomerium), Vec::<String>::new());

    for (bad, at) in [
        ("cookie_secrte: x\n", ""),
        ("cookie_secure: maybe\n", "/cookie_secure"),
        (
            "policy:\n  - from: https://a.example.com\n    alowed_groups: [x]\n",
            "/policy/0",
        ),
        ("rootDomain: example.com\n", ""),
    ] {
        let errors = errors(
            &validator,
            &yaml(&format!("idp_client_id: authgate\n{bad}")),
        );
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{at}: "))),
            "{bad:?}: {errors:?}"
        );
    }
}

/// The authgate.yaml the Helm chart renders from each of its `ci/` values
/// files (the seed's Pomerium values among them) validates too.
#[test]
fn chart_rendered_configs_validate_against_the_schema() {
    let validator = validator();
    for values in crate::packaging::CI_VALUES {
        let docs = crate::packaging::documents(&crate::packaging::template(values));
        let config = yaml(crate::packaging::authgate_yaml(&docs));
        assert_eq!(
            errors(&validator, &config),
            Vec::<String>::new(),
            "{values}"
        );
    }
}
