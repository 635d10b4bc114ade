//! The JSON Schema of `authgate.yaml`, for editors (yaml-language-server
//! reads a `# yaml-language-server: $schema=…` line) and for checking files
//! before they reach `check-config`. Derived from the raw configuration
//! types, whose doc comments (with each key's default) become the
//! descriptions; then what those types cannot say is added: the Pomerium
//! keys that are accepted and ignored, and the keys that take one value or
//! a list. `docs/authgate.schema.json` is this function's output, and a
//! test keeps it current.

use serde_json::{Map, Value, json};

use super::raw::{POMERIUM_KEYS, PROXY_ONLY_KEYS, PROXY_ONLY_ROUTE_KEYS, RawConfig};

/// Where the schema is published, relative to the repository.
pub const SCHEMA_PATH: &str = "docs/authgate.schema.json";

/// The schema, as JSON (draft 2020-12).
pub fn json_schema() -> Value {
    let mut schema = schemars::schema_for!(RawConfig).to_value();
    // Every key is optional, but none takes `null`.
    drop_null_types(&mut schema);
    if let Some(top) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for key in PROXY_ONLY_KEYS {
            top.insert((*key).to_owned(), ignored("concerns proxying only"));
        }
        for key in POMERIUM_KEYS.iter().filter(|k| !k.error) {
            top.insert(key.key.to_owned(), ignored(key.message));
        }
        // One string of scopes (spaces or commas between them) or a list.
        one_or_list(top, "idp_scopes", json!({ "type": "string" }));
    }
    if let Some(route) = schema
        .pointer_mut("/$defs/RawRoute/properties")
        .and_then(Value::as_object_mut)
    {
        for key in PROXY_ONLY_ROUTE_KEYS {
            route.insert((*key).to_owned(), ignored("concerns proxying only"));
        }
        // Claim → accepted values; one value stands for a one-element list.
        if let Some(values) = route
            .get_mut("allowed_idp_claims")
            .and_then(|claims| claims.get_mut("additionalProperties"))
        {
            let list = values.take();
            *values = json!({ "anyOf": [list, { "type": ["string", "number", "boolean"] }] });
        }
    }
    schema
}

/// A Pomerium key authgate accepts and ignores, with a warning.
fn ignored(why: &str) -> Value {
    json!({ "description": format!("Pomerium's key, accepted and ignored: {why}.") })
}

/// Lets `key` of `properties` also be a single `one`.
fn one_or_list(properties: &mut Map<String, Value>, key: &str, one: Value) {
    if let Some(slot) = properties.get_mut(key) {
        let mut list = slot.take();
        let description = list
            .as_object_mut()
            .and_then(|list| list.remove("description"))
            .unwrap_or(Value::Null);
        *slot = json!({ "description": description, "anyOf": [one, list] });
    }
}

/// Removes `"null"` from every `type` list (schemars allows it for each
/// `Option`, which here only means "may be left out").
fn drop_null_types(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::Array(types)) = object.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    object.insert("type".to_owned(), only);
                }
            }
            object.values_mut().for_each(drop_null_types);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_types),
        _ => {}
    }
}
