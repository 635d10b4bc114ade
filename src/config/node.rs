//! A YAML tree that remembers where every node came from, and a serde
//! `Deserializer` over it that keeps going after a mistake.
//!
//! serde stops at the first error, but `check-config` must list them all. So
//! the file is first read into [`Node`]s (only a YAML *syntax* error stops
//! here), environment overrides are grafted onto that tree, and the raw
//! structs are deserialized from it by [`NodeDe`], which:
//! - reports an unknown key (with a "did you mean", or what to write instead
//!   of a Pomerium name) and skips it, and sets proxy-only keys aside for one
//!   warning, instead of failing the struct;
//! - lets every [`Val`] field catch its own type error, record it with the
//!   node's location, and carry on with the next field.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Origin {
    /// A line and column (1-based) in the configuration file.
    File { line: usize, column: usize },
    /// The named environment variable.
    Env(String),
    /// The file as a whole (e.g. a required key that is missing).
    Document,
}

/// A value's key path (`policy[0].allowed_groups`) and origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct At {
    pub path: String,
    pub origin: Origin,
}

impl At {
    /// A key of the file that has no node (missing, or a whole-file rule).
    pub fn key(path: impl Into<String>) -> Self {
        At {
            path: path.into(),
            origin: Origin::Document,
        }
    }

    fn child_key(&self, key: &str, origin: Origin) -> At {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        At { path, origin }
    }

    fn child_index(&self, index: usize, origin: Origin) -> At {
        At {
            path: format!("{}[{index}]", self.path),
            origin,
        }
    }
}

/// One problem found while loading, before it is rendered for a file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub at: At,
    pub message: String,
}

/// A parsed YAML node. No `Debug`: scalars may be secrets.
pub(crate) struct Node {
    pub at: At,
    pub kind: Kind,
    /// The source text of a non-string scalar (`0123`, `1e3`, `yes`), so a
    /// key that wants a string gets what was written, not a re-rendering.
    pub raw: Option<String>,
}

pub(crate) enum Kind {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Kind {
    /// What a user would call this kind of value, for "expected X, found Y".
    fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "nothing",
            Kind::Bool(_) => "a boolean",
            Kind::I64(_) | Kind::U64(_) | Kind::F64(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// A mapping key and where it is written.
pub(crate) struct Key {
    pub name: String,
    pub at: At,
}

impl Node {
    /// A string node set from an environment variable.
    pub fn env_str(path: &str, var: &str, value: String) -> Node {
        Node {
            at: At {
                path: path.to_owned(),
                origin: Origin::Env(var.to_owned()),
            },
            kind: Kind::Str(value),
            raw: None,
        }
    }

    /// A list node set from a comma-separated environment variable.
    pub fn env_list(path: &str, var: &str, value: &str) -> Node {
        let origin = Origin::Env(var.to_owned());
        let at = At {
            path: path.to_owned(),
            origin: origin.clone(),
        };
        let items = value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .enumerate()
            .map(|(i, item)| Node {
                at: at.child_index(i, origin.clone()),
                kind: Kind::Str(item.to_owned()),
                raw: None,
            })
            .collect();
        Node {
            at,
            kind: Kind::Seq(items),
            raw: None,
        }
    }

    /// The text of a scalar as a string key wants it; `None` for null,
    /// lists and mappings.
    fn scalar_text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            Kind::Bool(_) | Kind::I64(_) | Kind::U64(_) | Kind::F64(_) => self.raw.as_deref(),
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }
}

/// Parse YAML text into a located tree. Only a syntax error fails here.
pub(crate) fn parse(text: &str) -> Result<Node, Problem> {
    let options = serde_saphyr::options! { with_snippet: false, };
    match serde_saphyr::from_str_with_options::<Spanned<Yaml>>(text, options) {
        Ok(doc) => Ok(convert(doc, At::key(""), text)),
        Err(e) => {
            let origin = match e.location() {
                Some(loc) => Origin::File {
                    line: usize::try_from(loc.line()).unwrap_or(usize::MAX),
                    column: usize::try_from(loc.column()).unwrap_or(usize::MAX),
                },
                None => Origin::Document,
            };
            Err(Problem {
                at: At {
                    path: String::new(),
                    origin,
                },
                message: syntax_message(&e.without_snippet().to_string()),
            })
        }
    }
}

/// serde-saphyr's message minus its own location suffix (we print ours in
/// front) and minus advice about its API that means nothing to a user.
fn syntax_message(message: &str) -> String {
    let mut message = message.trim();
    if let Some(i) = message.rfind(" at line ") {
        message = &message[..i];
    }
    if let Some(i) = message.find(", set DuplicateKeyPolicy") {
        message = &message[..i];
    }
    format!("invalid YAML: {message}")
}

/// What serde-saphyr hands us: any YAML value, each with its location.
enum Yaml {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Spanned<Yaml>>),
    Map(Vec<(Spanned<String>, Spanned<Yaml>)>),
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AnyVisitor;
        impl<'de> Visitor<'de> for AnyVisitor {
            type Value = Yaml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Yaml, E> {
                Ok(Yaml::Null)
            }
            fn visit_none<E>(self) -> Result<Yaml, E> {
                Ok(Yaml::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
                Yaml::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
                Ok(Yaml::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
                Ok(Yaml::I64(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Yaml, E> {
                Ok(Yaml::U64(v))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Yaml, E> {
                Ok(Yaml::Str(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Yaml, E> {
                Ok(Yaml::Str(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
                Ok(Yaml::F64(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Yaml, E> {
                Ok(Yaml::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Yaml, E> {
                Ok(Yaml::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Yaml::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Yaml::Map(entries))
            }
        }
        d.deserialize_any(AnyVisitor)
    }
}

fn origin_of(loc: &serde_saphyr::Location) -> Origin {
    Origin::File {
        line: usize::try_from(loc.line()).unwrap_or(usize::MAX),
        column: usize::try_from(loc.column()).unwrap_or(usize::MAX),
    }
}

/// The exact source text of a plain scalar, when the parser gave a byte span.
fn source_text(text: &str, loc: &serde_saphyr::Location) -> Option<String> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?).map(str::to_owned)
}

fn convert(yaml: Spanned<Yaml>, at: At, text: &str) -> Node {
    let loc = yaml.referenced;
    let scalar_raw = |fallback: String| Some(source_text(text, &loc).unwrap_or(fallback));
    let (kind, raw) = match yaml.value {
        Yaml::Null => (Kind::Null, None),
        Yaml::Bool(b) => (Kind::Bool(b), scalar_raw(b.to_string())),
        Yaml::I64(n) => (Kind::I64(n), scalar_raw(n.to_string())),
        Yaml::U64(n) => (Kind::U64(n), scalar_raw(n.to_string())),
        Yaml::F64(n) => (Kind::F64(n), scalar_raw(n.to_string())),
        Yaml::Str(s) => (Kind::Str(s), None),
        Yaml::Seq(items) => {
            let items = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let child = at.child_index(i, origin_of(&item.referenced));
                    convert(item, child, text)
                })
                .collect();
            (Kind::Seq(items), None)
        }
        Yaml::Map(entries) => {
            let entries = entries
                .into_iter()
                .map(|(key, value)| {
                    let key_at = at.child_key(&key.value, origin_of(&key.referenced));
                    let value_at = At {
                        path: key_at.path.clone(),
                        origin: origin_of(&value.referenced),
                    };
                    let node = convert(value, value_at, text);
                    (
                        Key {
                            name: key.value,
                            at: key_at,
                        },
                        node,
                    )
                })
                .collect();
            (Kind::Map(entries), None)
        }
    };
    Node {
        at: At {
            path: at.path,
            origin: origin_of(&loc),
        },
        kind,
        raw,
    }
}

/// A field value with its location. `value` is `None` when the node had the
/// wrong type; that problem is already recorded, so validation just skips it.
pub(crate) struct Val<T> {
    pub at: At,
    pub value: Option<T>,
}

/// In the schema a located value is just the value.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Val<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// The newtype name by which [`Val`] asks [`NodeDe`] for its location.
const VAL_MARKER: &str = "__authgate_config_val";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Val<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ValVisitor<T> {
            type Value = Val<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a located configuration value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<T>, A::Error> {
                let at: At = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("value without a location"))?;
                // An error here has been recorded by `ValSeq`; keep going.
                let value = seq.next_element::<T>().ok().flatten();
                Ok(Val { at, value })
            }
        }
        d.deserialize_newtype_struct(VAL_MARKER, ValVisitor(PhantomData))
    }
}

/// A mapping kept in file order (for `allowed_idp_claims`).
pub(crate) struct Entries<T>(pub Vec<(String, T)>);

/// In the schema: an object whose every value is a `T`.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Entries<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Entries_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<T>(),
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for EntriesVisitor<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// What deserialization collects besides the value.
#[derive(Default)]
pub(crate) struct Sink {
    pub problems: RefCell<Vec<Problem>>,
    /// Keys accepted with a hint (Pomerium names that mean nothing here).
    pub warnings: RefCell<Vec<Problem>>,
    /// Proxy-only keys seen, as generalized paths (`policy[].to`), in order.
    pub ignored: RefCell<Vec<String>>,
}

impl Sink {
    fn report(&self, at: At, message: String) {
        self.problems.borrow_mut().push(Problem { at, message });
    }

    fn warn(&self, at: At, message: String) {
        self.warnings.borrow_mut().push(Problem { at, message });
    }

    fn ignore(&self, path: &str) {
        let general = generalize(path);
        let mut ignored = self.ignored.borrow_mut();
        if !ignored.contains(&general) {
            ignored.push(general);
        }
    }
}

/// `policy[3].to` → `policy[].to`: one warning line per kind of key.
fn generalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push(c);
            }
            ']' => {
                in_index = false;
                out.push(c);
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// What a struct does with a key it has no field for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extra {
    /// Only concerns proxying: set aside for the one "ignoring" warning.
    Ignored,
    /// A Pomerium name (of its config file or its Helm values) with no field
    /// here: `message` says what to write instead. Refused when `error`,
    /// else accepted, ignored and warned about at its line and column.
    Hint { message: &'static str, error: bool },
    /// Refused, with a "did you mean" when it looks like a typo.
    Unknown,
}

/// How a struct (by serde's name for it) treats a key it has no field for;
/// the raw module supplies it.
pub(crate) type KeyRules = fn(struct_name: &str, key: &str) -> Extra;

/// Deserialize `T` from `node`, recording problems in `sink`. `None` only
/// when the node as a whole has the wrong shape (also recorded).
pub(crate) fn deserialize<'a, T: Deserialize<'a>>(
    node: &'a Node,
    sink: &'a Sink,
    rules: KeyRules,
) -> Option<T> {
    match T::deserialize(NodeDe { node, sink, rules }) {
        Ok(value) => Some(value),
        Err(e) => {
            if !e.reported {
                sink.report(e.at.unwrap_or_else(|| node.at.clone()), e.message);
            }
            None
        }
    }
}

/// The error of [`NodeDe`]. Its message never quotes the value: it may be a
/// secret.
#[derive(Debug)]
pub(crate) struct DeError {
    at: Option<At>,
    message: String,
    /// Already in the sink; only unwinds to the enclosing [`Val`].
    reported: bool,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            at: None,
            message: msg.to_string(),
            reported: false,
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'a> {
    node: &'a Node,
    sink: &'a Sink,
    rules: KeyRules,
}

impl<'a> NodeDe<'a> {
    fn with(self, node: &'a Node) -> Self {
        NodeDe { node, ..self }
    }

    fn expected(&self, what: &str) -> DeError {
        DeError {
            at: Some(self.node.at.clone()),
            message: format!("expected {what}, found {}", self.node.kind.describe()),
            reported: false,
        }
    }

    /// Give an error from a visitor this node's location unless a deeper
    /// node already claimed it.
    fn locate(&self, mut e: DeError) -> DeError {
        if e.at.is_none() {
            e.at = Some(self.node.at.clone());
        }
        e
    }

    fn visit_seq_of<V: Visitor<'a>>(self, items: &'a [Node], v: V) -> Result<V::Value, DeError> {
        v.visit_seq(SeqDe {
            de: self,
            items: items.iter(),
        })
        .map_err(|e| self.locate(e))
    }
}

impl<'a> Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::I64(n) => v.visit_i64(*n),
            Kind::U64(n) => v.visit_u64(*n),
            Kind::F64(n) => v.visit_f64(*n),
            Kind::Str(s) => v.visit_borrowed_str(s),
            Kind::Seq(items) => return self.visit_seq_of(items, v),
            Kind::Map(entries) => v.visit_map(MapDe {
                de: self,
                entries: entries.iter().collect::<Vec<_>>().into_iter(),
                pending: None,
            }),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let b = match &self.node.kind {
            Kind::Bool(b) => *b,
            Kind::Str(s) => parse_bool(s).ok_or_else(|| self.expected("true or false"))?,
            _ => return Err(self.expected("true or false")),
        };
        v.visit_bool(b).map_err(|e| self.locate(e))
    }

    fn deserialize_str<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let text = self
            .node
            .scalar_text()
            .ok_or_else(|| self.expected("a string"))?;
        v.visit_borrowed_str(text).map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    /// A single scalar where a list is expected is a one-element list, as
    /// Pomerium's `StringSlice` reads `allowed_users: alice@example.com`.
    fn deserialize_seq<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(items) => self.visit_seq_of(items, v),
            Kind::Null | Kind::Map(_) => Err(self.expected("a list")),
            _ => self.visit_seq_of(std::slice::from_ref(self.node), v),
        }
    }

    fn deserialize_map<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Map(_) => self.deserialize_any(v),
            _ => Err(self.expected("a mapping")),
        }
    }

    /// Unknown keys are reported (proxy-only ones set aside, Pomerium names
    /// answered with their hint) here, so the derived visitor, for all its
    /// `deny_unknown_fields`, never fails.
    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let Kind::Map(entries) = &self.node.kind else {
            return Err(self.expected("a mapping"));
        };
        let mut kept = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = &entry.0;
            if fields.contains(&key.name.as_str()) {
                kept.push(entry);
                continue;
            }
            match (self.rules)(name, &key.name) {
                Extra::Ignored => self.sink.ignore(&key.at.path),
                Extra::Hint {
                    message,
                    error: true,
                } => self.sink.report(key.at.clone(), message.to_owned()),
                Extra::Hint {
                    message,
                    error: false,
                } => self.sink.warn(key.at.clone(), message.to_owned()),
                Extra::Unknown => self
                    .sink
                    .report(key.at.clone(), unknown_key(&key.name, fields)),
            }
        }
        v.visit_map(MapDe {
            de: self,
            entries: kept.into_iter(),
            pending: None,
        })
        .map_err(|e| self.locate(e))
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == VAL_MARKER {
            v.visit_seq(ValSeq { de: self, step: 0 })
        } else {
            v.visit_newtype_struct(self)
        }
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct tuple tuple_struct enum
    }
}

/// Pomerium reads booleans with Go's `strconv.ParseBool`; YAML 1.1 words
/// too, since they arrive as strings from the environment.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "on" => Some(true),
        "false" | "f" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn unknown_key(name: &str, fields: &[&str]) -> String {
    match closest(name, fields) {
        Some(suggestion) => format!("unknown key `{name}`; did you mean `{suggestion}`?"),
        None => format!("unknown key `{name}`"),
    }
}

/// The known key nearest to a misspelt one, if it is near enough to be a typo.
pub(crate) fn closest<'f>(name: &str, candidates: &[&'f str]) -> Option<&'f str> {
    let name = name.to_ascii_lowercase();
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (levenshtein(&name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

struct SeqDe<'a> {
    de: NodeDe<'a>,
    items: std::slice::Iter<'a, Node>,
}

impl<'a> SeqAccess<'a> for SeqDe<'a> {
    type Error = DeError;
    fn next_element_seed<S: DeserializeSeed<'a>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed.deserialize(self.de.with(node)).map(Some),
            None => Ok(None),
        }
    }
}

struct MapDe<'a> {
    de: NodeDe<'a>,
    entries: std::vec::IntoIter<&'a (Key, Node)>,
    pending: Option<&'a Node>,
}

impl<'a> MapAccess<'a> for MapDe<'a> {
    type Error = DeError;
    fn next_key_seed<S: DeserializeSeed<'a>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some(value);
        seed.deserialize(BorrowedStrDeserializer::new(&key.name))
            .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'a>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let node = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("value requested before its key"))?;
        seed.deserialize(self.de.with(node))
    }
}

/// Serves a [`Val`]: first its location, then its value, whose error is
/// recorded here so that `Val` can swallow it and deserialization goes on.
struct ValSeq<'a> {
    de: NodeDe<'a>,
    step: u8,
}

impl<'a> SeqAccess<'a> for ValSeq<'a> {
    type Error = DeError;
    fn next_element_seed<S: DeserializeSeed<'a>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        self.step += 1;
        match self.step {
            1 => {
                let at = serde_json::to_value(&self.de.node.at).map_err(de::Error::custom)?;
                seed.deserialize(at).map(Some).map_err(de::Error::custom)
            }
            2 => match seed.deserialize(self.de) {
                Ok(value) => Ok(Some(value)),
                Err(e) if e.reported => Err(e),
                Err(e) => {
                    let at = e.at.unwrap_or_else(|| self.de.node.at.clone());
                    self.de.sink.report(at, e.message);
                    Err(DeError {
                        at: None,
                        message: String::new(),
                        reported: true,
                    })
                }
            },
            _ => Ok(None),
        }
    }
}

/// The field names serde derived for `T`, read by asking it to deserialize
/// from a probe that only records what `deserialize_struct` is told.
pub(crate) fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl fmt::Display for Found {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Ok(_) => &[],
        Err(Found(fields)) => fields,
    }
}

/// A value of any shape with the location of every node: a route's
/// `policy`, whose problems are placed at the criterion that has them.
pub(crate) enum Located {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
    Seq(Vec<Val<Located>>),
    Map(Vec<(String, Val<Located>)>),
}

/// In the schema: a Pomerium policy, a rule or a list of rules.
impl schemars::JsonSchema for Located {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Policy".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Pomerium Policy Language: a rule (`allow`/`deny` → `and`/`or`/`not`/`nor` → criteria) or a list of rules",
            "type": ["object", "array"],
        })
    }
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LocatedVisitor;
        impl<'de> Visitor<'de> for LocatedVisitor {
            type Value = Located;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Located, E> {
                Ok(Located::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Located, E> {
                Ok(Located::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Located, E> {
                Ok(Located::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Located, E> {
                Ok(Located::Number(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Located, E> {
                Ok(Located::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Located, E> {
                serde_json::Number::from_f64(n)
                    .map(Located::Number)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Located, E> {
                Ok(Located::Str(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Located::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Located::Map(entries))
            }
        }
        d.deserialize_any(LocatedVisitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn no_ignored(_: &str, _: &str) -> Extra {
        Extra::Unknown
    }

    /// Plain scalars that YAML types as numbers keep their source text when a
    /// string is wanted: `0123` must not become `123`.
    #[test]
    fn string_from_number_keeps_source_text() {
        let node = parse("a: 0123\nb: 1.50\nc: yes\n").unwrap();
        let sink = Sink::default();
        let map: Entries<Val<String>> = deserialize(&node, &sink, no_ignored).unwrap();
        let got: Vec<_> = map
            .0
            .iter()
            .map(|(_, v)| v.value.clone().unwrap())
            .collect();
        assert_eq!(got, ["0123", "1.50", "yes"]);
    }

    /// A wrong type inside a list is reported at the element, and the other
    /// elements survive.
    #[test]
    fn element_type_error_is_located_and_does_not_stop() {
        let node = parse("l:\n  - a\n  - {x: 1}\n  - c\n").unwrap();
        let sink = Sink::default();
        let map: Entries<Val<Vec<Val<String>>>> = deserialize(&node, &sink, no_ignored).unwrap();
        let list = map.0[0].1.value.as_ref().unwrap();
        let ok: Vec<_> = list.iter().filter_map(|v| v.value.clone()).collect();
        assert_eq!(ok, ["a", "c"]);
        let problems = sink.problems.borrow();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].at.path, "l[1]");
        assert_eq!(problems[0].at.origin, Origin::File { line: 3, column: 5 });
        assert_eq!(problems[0].message, "expected a string, found a mapping");
    }

    #[test]
    fn closest_suggests_only_near_keys() {
        let keys = ["cookie_secret", "cookie_name", "address"];
        assert_eq!(closest("cookie_secrt", &keys), Some("cookie_secret"));
        assert_eq!(closest("COOKIE_NAME", &keys), Some("cookie_name"));
        assert_eq!(closest("listen", &keys), None);
    }

    #[test]
    fn syntax_error_has_location_and_plain_message() {
        let p = parse("a: 1\nb: [1, 2\nc: 3\n").err().unwrap();
        assert!(matches!(p.at.origin, Origin::File { line: 3, .. }), "{p:?}");
        assert!(p.message.starts_with("invalid YAML: "), "{}", p.message);
        assert!(!p.message.contains("at line"), "{}", p.message);
        let dup = parse("a: 1\na: 2\n").err().unwrap();
        assert_eq!(dup.message, "invalid YAML: duplicate mapping key: a");
    }
}
