//! Pomerium Policy Language (PPL): a route's `policy:`, compiled once and
//! evaluated without allocating.
//!
//! A policy is a rule or a list of rules; a rule maps `allow` or `deny` to
//! operators (`and`, `or`, `not` = ¬A∧¬B, `nor` = ¬A∨¬B), each over a list
//! of criteria. Several operators in one rule, and several rules, are
//! OR-ed; a request is allowed when some `allow` matches and no `deny` does.
//!
//! As in Pomerium, a criterion about the user, asked when nobody is signed
//! in, is false *and* marks the result "needs sign-in": if that mark
//! reaches the final `allow` or `deny` result the answer is a sign-in, not
//! a 403. Merging keeps the marks of the results that decided (`and`: all
//! if true, the false ones if false; `or`: the true ones if true, all if
//! false), exactly Pomerium's reason sets.
//!
//! Where authgate differs, it is stricter: emails and domains are compared
//! without regard to ASCII case, an email the provider marks unverified is
//! no email, and what could silently never match (an unknown criterion or
//! operator, a bare list where a value is expected, a `time_of_day`
//! window across midnight) is a configuration error.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;
use serde_json::{Number, Value};

use super::authz::{
    StrSet, number_eq, verified_email, verified_email_domain, with_ascii_lowercase,
};
use crate::identity::Identity;

/// A policy document as written, each node with a `place` the caller maps
/// back to a file position (an index into its own table; 0 when built in
/// code).
#[derive(Clone, Debug)]
pub struct Tree {
    pub place: u32,
    pub kind: TreeKind,
}

#[derive(Clone, Debug)]
pub enum TreeKind {
    Null,
    Bool(bool),
    Number(Number),
    Str(String),
    Seq(Vec<Tree>),
    /// Keys in file order, each with the place of its value.
    Map(Vec<(String, Tree)>),
}

impl Tree {
    /// From JSON (demo, tests, `explain`): every place is 0.
    pub fn from_json(value: &Value) -> Tree {
        let kind = match value {
            Value::Null => TreeKind::Null,
            Value::Bool(b) => TreeKind::Bool(*b),
            Value::Number(n) => TreeKind::Number(n.clone()),
            Value::String(s) => TreeKind::Str(s.clone()),
            Value::Array(items) => TreeKind::Seq(items.iter().map(Tree::from_json).collect()),
            Value::Object(map) => TreeKind::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Tree::from_json(v)))
                    .collect(),
            ),
        };
        Tree { place: 0, kind }
    }

    fn describe(&self) -> &'static str {
        match self.kind {
            TreeKind::Null => "nothing",
            TreeKind::Bool(_) => "a boolean",
            TreeKind::Number(_) => "a number",
            TreeKind::Str(_) => "a string",
            TreeKind::Seq(_) => "a list",
            TreeKind::Map(_) => "a mapping",
        }
    }

    /// A scalar as the string a matcher compares (`1` → "1").
    fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            TreeKind::Str(s) => Some(s.clone()),
            TreeKind::Number(n) => Some(n.to_string()),
            TreeKind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// A problem in a policy, at a node's place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PplError {
    pub place: u32,
    pub message: String,
}

/// A compiled `policy:`.
#[derive(Clone, Debug, Default)]
pub struct Ppl {
    pub(crate) allow: Vec<Term>,
    pub(crate) deny: Vec<Term>,
}

/// One operator over its criteria.
#[derive(Clone, Debug)]
pub(crate) struct Term {
    pub(crate) op: Op,
    pub(crate) criteria: Box<[Criterion]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    And,
    Or,
    Not,
    Nor,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::And => "and",
            Op::Or => "or",
            Op::Not => "not",
            Op::Nor => "nor",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Criterion {
    Accept,
    Reject,
    AuthenticatedUser,
    Email(StrMatch),
    User(StrMatch),
    Domain(StrMatch),
    Groups(ListMatch),
    Claim {
        name: Box<str>,
        matcher: ListMatch,
    },
    HttpMethod(StrMatch),
    HttpPath(StrMatch),
    SourceIp(Box<[IpNet]>),
    CorsPreflight,
    Date {
        after: Option<Timestamp>,
        before: Option<Timestamp>,
    },
    /// Bit `n`: weekday `n` (Monday 0), in UTC.
    DayOfWeek(u8),
    TimeOfDay {
        zone: TimeZone,
        after: Option<Time>,
        before: Option<Time>,
    },
}

/// A string matcher: every operator must hold.
#[derive(Clone, Debug)]
pub(crate) struct StrMatch {
    ops: Box<[StrOp]>,
    case: Case,
}

/// How a matcher treats ASCII case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// As written (paths, user ids).
    Exact,
    /// Either case (emails, domains): operands lower-cased when compiled,
    /// the value when compared.
    Fold,
    /// Methods: operands upper-cased when compiled, compared as sent.
    Upper,
}

#[derive(Clone, Debug)]
enum StrOp {
    Is(Box<str>),
    Not(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    In(StrSet),
    NotIn(StrSet),
}

/// A string-list matcher (`groups`, `claim/…`): every operator must hold.
#[derive(Clone, Debug)]
pub(crate) struct ListMatch {
    ops: Box<[ListOp]>,
}

#[derive(Clone, Debug)]
enum ListOp {
    /// Some element equals the value.
    Has(Scalar),
    /// Exactly one element, equal to the value.
    Is(Scalar),
    /// No element equals the value.
    Exclude(Scalar),
}

/// A value a list element is compared with: same type, same value.
#[derive(Clone, Debug)]
enum Scalar {
    Str(Box<str>),
    Number(Number),
    Bool(bool),
}

impl Scalar {
    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Scalar::Str(a), Value::String(b)) => **a == **b,
            (Scalar::Number(a), Value::Number(b)) => number_eq(a, b),
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }

    fn equals_str(&self, value: &str) -> bool {
        matches!(self, Scalar::Str(a) if **a == *value)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => f.write_str(s),
            Scalar::Number(n) => write!(f, "{n}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Criteria Pomerium has that authgate cannot evaluate: refused rather than
/// silently true or false.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "device",
        "device identity (WebAuthn enrolment) is Pomerium's own",
    ),
    (
        "client_certificate",
        "authgate never sees the client's TLS certificate: the proxy terminates TLS (check it there, e.g. nginx's ssl_verify_client)",
    ),
    (
        "invalid_client_certificate",
        "authgate never sees the client's TLS certificate: the proxy terminates TLS",
    ),
    ("record", "external data sources are Pomerium Enterprise's"),
    ("mcp_tool", "authgate does not read request bodies"),
    ("pomerium_routes", "authgate has no `.pomerium` routes"),
    ("ssh_username", "authgate decides HTTP requests only"),
    ("ssh_publickey", "authgate decides HTTP requests only"),
];

/// The result of a criterion, an operator or a rule set: its value, and
/// whether "needs sign-in" reached it (Pomerium's `user-unauthenticated`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Outcome {
    pub(crate) value: bool,
    pub(crate) needs_login: bool,
}

/// What a criterion looks at.
pub(crate) struct Input<'a> {
    pub(crate) identity: Option<&'a Identity>,
    pub(crate) method: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) preflight: bool,
    pub(crate) now: i64,
}

/// Parse a `policy:` value, collecting every problem.
pub fn parse(tree: &Tree) -> Result<Ppl, Vec<PplError>> {
    let mut errors = Vec::new();
    let mut ppl = Ppl::default();
    let rules: &[Tree] = match &tree.kind {
        TreeKind::Seq(items) => items,
        TreeKind::Map(_) => std::slice::from_ref(tree),
        _ => {
            return Err(vec![PplError {
                place: tree.place,
                message: format!(
                    "expected a rule (`allow:`/`deny:`) or a list of rules, found {}",
                    tree.describe()
                ),
            }]);
        }
    };
    for rule in rules {
        let TreeKind::Map(actions) = &rule.kind else {
            errors.push(error(
                rule,
                "a rule is a mapping of `allow` or `deny` to operators",
            ));
            continue;
        };
        for (action, body) in actions {
            let list = match action.as_str() {
                "allow" => &mut ppl.allow,
                "deny" => &mut ppl.deny,
                other => {
                    errors.push(error(
                        body,
                        &format!("`{other}` is not an action: use `allow` or `deny`"),
                    ));
                    continue;
                }
            };
            parse_body(body, list, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(ppl)
    } else {
        Err(errors)
    }
}

fn error(at: &Tree, message: &str) -> PplError {
    PplError {
        place: at.place,
        message: message.to_owned(),
    }
}

fn parse_body(body: &Tree, terms: &mut Vec<Term>, errors: &mut Vec<PplError>) {
    let TreeKind::Map(ops) = &body.kind else {
        errors.push(error(
            body,
            &format!(
                "expected operators (`and`, `or`, `not`, `nor`), found {}",
                body.describe()
            ),
        ));
        return;
    };
    for (name, list) in ops {
        let op = match name.as_str() {
            "and" => Op::And,
            "or" => Op::Or,
            "not" => Op::Not,
            "nor" => Op::Nor,
            other => {
                errors.push(error(
                    list,
                    &format!("`{other}` is not an operator: use `and`, `or`, `not` or `nor`"),
                ));
                continue;
            }
        };
        let TreeKind::Seq(items) = &list.kind else {
            errors.push(error(
                list,
                &format!(
                    "`{name}` takes a list of criteria, found {}",
                    list.describe()
                ),
            ));
            continue;
        };
        let criteria: Vec<Criterion> = items
            .iter()
            .filter_map(|item| parse_criterion(item).map_err(|e| errors.push(e)).ok())
            .collect();
        // Pomerium drops an empty operator: it decides nothing.
        if !criteria.is_empty() {
            terms.push(Term {
                op,
                criteria: criteria.into(),
            });
        }
    }
}

fn parse_criterion(item: &Tree) -> Result<Criterion, PplError> {
    let (key, value) = match &item.kind {
        TreeKind::Map(entries) if entries.len() == 1 => (&entries[0].0, &entries[0].1),
        _ => {
            return Err(error(
                item,
                "a criterion is a mapping with one key, like `email: {is: a@example.com}`",
            ));
        }
    };
    let (name, sub) = match key.split_once('/') {
        Some((name, sub)) => (name, Some(sub)),
        None => (key.as_str(), None),
    };
    if sub.is_some() && name != "claim" {
        return Err(error(
            item,
            &format!("`{name}` takes no sub-path (`{key}`)"),
        ));
    }
    let user_string = |case| parse_str_match(value, case);
    Ok(match name {
        "accept" => Criterion::Accept,
        "reject" => Criterion::Reject,
        "authenticated_user" => Criterion::AuthenticatedUser,
        "cors_preflight" => Criterion::CorsPreflight,
        "email" => Criterion::Email(user_string(Case::Fold)?),
        "domain" => Criterion::Domain(user_string(Case::Fold)?),
        "user" => Criterion::User(user_string(Case::Exact)?),
        "http_method" => Criterion::HttpMethod(user_string(Case::Upper)?),
        "http_path" => Criterion::HttpPath(user_string(Case::Exact)?),
        "groups" => Criterion::Groups(parse_list_match(value)?),
        "claim" => match sub {
            Some(claim) if !claim.is_empty() => Criterion::Claim {
                name: claim.into(),
                matcher: parse_list_match(value)?,
            },
            _ => {
                return Err(error(
                    item,
                    "`claim` needs the claim's name: `claim/family_name: Smith`",
                ));
            }
        },
        "source_ip" => Criterion::SourceIp(parse_source_ip(value)?),
        "date" => parse_date(value)?,
        "day_of_week" => Criterion::DayOfWeek(parse_days(value)?),
        "time_of_day" => parse_time_of_day(value)?,
        other => {
            let message = match UNSUPPORTED.iter().find(|(n, _)| *n == other) {
                Some((_, why)) => format!("authgate cannot evaluate `{other}`: {why}"),
                None => format!(
                    "unknown criterion `{other}`; known: accept, reject, authenticated_user, email, user, domain, groups, claim/<name>, http_method, http_path, source_ip, cors_preflight, date, day_of_week, time_of_day"
                ),
            };
            return Err(error(item, &message));
        }
    })
}

/// A string matcher: an object of operators, or a bare scalar (`is`).
fn parse_str_match(value: &Tree, case: Case) -> Result<StrMatch, PplError> {
    let text = |v: &Tree| -> Result<Box<str>, PplError> {
        let s = v
            .scalar_text()
            .ok_or_else(|| error(v, &format!("expected a string, found {}", v.describe())))?;
        Ok(match case {
            Case::Exact => s,
            Case::Fold => s.to_ascii_lowercase(),
            Case::Upper => s.to_ascii_uppercase(),
        }
        .into())
    };
    let set = |v: &Tree| -> Result<StrSet, PplError> {
        let TreeKind::Seq(items) = &v.kind else {
            return Err(error(v, "expected a list of strings"));
        };
        items.iter().map(text).collect()
    };
    let mut ops = Vec::new();
    match &value.kind {
        TreeKind::Map(entries) if !entries.is_empty() => {
            for (op, operand) in entries {
                ops.push(match op.as_str() {
                    "is" => StrOp::Is(text(operand)?),
                    "not" => StrOp::Not(text(operand)?),
                    "starts_with" => StrOp::StartsWith(text(operand)?),
                    "ends_with" => StrOp::EndsWith(text(operand)?),
                    "contains" => StrOp::Contains(text(operand)?),
                    "in" => StrOp::In(set(operand)?),
                    "not_in" => StrOp::NotIn(set(operand)?),
                    other => {
                        return Err(error(
                            operand,
                            &format!(
                                "`{other}` is not a string matcher: use is, not, starts_with, ends_with, contains, in or not_in"
                            ),
                        ));
                    }
                });
            }
        }
        TreeKind::Seq(_) => {
            return Err(error(
                value,
                "a bare list would never match (Pomerium compares it with `is`): write `in: [...]`",
            ));
        }
        _ => ops.push(StrOp::Is(text(value)?)),
    }
    Ok(StrMatch {
        ops: ops.into(),
        case,
    })
}

/// A string-list matcher: an object of `has`/`is`/`exclude`, or a bare
/// scalar (`has`).
fn parse_list_match(value: &Tree) -> Result<ListMatch, PplError> {
    let scalar = |v: &Tree| -> Result<Scalar, PplError> {
        match &v.kind {
            TreeKind::Str(s) => Ok(Scalar::Str(s.as_str().into())),
            TreeKind::Number(n) => Ok(Scalar::Number(n.clone())),
            TreeKind::Bool(b) => Ok(Scalar::Bool(*b)),
            TreeKind::Seq(_) => Err(error(
                v,
                "a list would never match (each element is compared with one value): write one criterion per value under `or`",
            )),
            _ => Err(error(
                v,
                &format!(
                    "expected a string, number or boolean, found {}",
                    v.describe()
                ),
            )),
        }
    };
    let mut ops = Vec::new();
    match &value.kind {
        TreeKind::Map(entries) if !entries.is_empty() => {
            for (op, operand) in entries {
                ops.push(match op.as_str() {
                    "has" => ListOp::Has(scalar(operand)?),
                    "is" => ListOp::Is(scalar(operand)?),
                    "exclude" => ListOp::Exclude(scalar(operand)?),
                    other => {
                        return Err(error(
                            operand,
                            &format!("`{other}` is not a list matcher: use has, is or exclude"),
                        ));
                    }
                });
            }
        }
        _ => ops.push(ListOp::Has(scalar(value)?)),
    }
    Ok(ListMatch { ops: ops.into() })
}

fn parse_source_ip(value: &Tree) -> Result<Box<[IpNet]>, PplError> {
    let one = |v: &Tree| -> Result<IpNet, PplError> {
        let TreeKind::Str(s) = &v.kind else {
            return Err(error(v, "expected an IP address or CIDR range"));
        };
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(|net| net.trunc())
            .map_err(|_| error(v, &format!("`{s}` is not an IP address or CIDR range")))
    };
    match &value.kind {
        TreeKind::Seq(items) if !items.is_empty() => items.iter().map(one).collect(),
        TreeKind::Seq(_) => Err(error(value, "an empty list matches nobody")),
        _ => Ok(Box::new([one(value)?])),
    }
}

/// `{after, before}`, each an ISO-8601 date-time (UTC unless it has an
/// offset) or date.
fn parse_date(value: &Tree) -> Result<Criterion, PplError> {
    let (after, before) = bounds(value, "date", |v| {
        let TreeKind::Str(s) = &v.kind else {
            return Err(error(
                v,
                "expected an ISO-8601 date, like 2026-01-02T16:20:00",
            ));
        };
        parse_instant(s.trim()).ok_or_else(|| {
            error(
                v,
                &format!("`{s}` is not an ISO-8601 date or date-time (2026-01-02, 2026-01-02T16:20:00, 2026-01-02T16:20:00+02:00)"),
            )
        })
    })?;
    Ok(Criterion::Date { after, before })
}

fn parse_instant(s: &str) -> Option<Timestamp> {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts);
    }
    let civil = s
        .parse::<DateTime>()
        .or_else(|_| {
            s.parse::<jiff::civil::Date>()
                .map(|d| d.to_datetime(Time::midnight()))
        })
        .ok()?;
    civil.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// An object's `after` and `before` (at least one; `timezone` allowed only
/// where `allow_zone`), parsed with `parse`.
fn bounds<T>(
    value: &Tree,
    criterion: &str,
    parse: impl Fn(&Tree) -> Result<T, PplError>,
) -> Result<(Option<T>, Option<T>), PplError> {
    let TreeKind::Map(entries) = &value.kind else {
        return Err(error(
            value,
            &format!("`{criterion}` takes `after` and/or `before`"),
        ));
    };
    let (mut after, mut before) = (None, None);
    for (key, v) in entries {
        match key.as_str() {
            "after" => after = Some(parse(v)?),
            "before" => before = Some(parse(v)?),
            "timezone" if criterion == "time_of_day" => {}
            other => {
                return Err(error(
                    v,
                    &format!("`{other}` is not a key of `{criterion}`"),
                ));
            }
        }
    }
    if after.is_none() && before.is_none() {
        return Err(error(
            value,
            &format!("`{criterion}` needs `after` and/or `before`"),
        ));
    }
    Ok((after, before))
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `*`, `mon,wed,fri`, `mon-fri` (full names or three letters), as a mask.
fn parse_days(value: &Tree) -> Result<u8, PplError> {
    let TreeKind::Str(text) = &value.kind else {
        return Err(error(value, "expected days, like `mon-fri` or `sat,sun`"));
    };
    let day = |name: &str| -> Result<u8, PplError> {
        let name = name.trim().to_ascii_lowercase();
        DAYS.iter()
            .position(|d| *d == name || (name.len() == 3 && d.starts_with(&name)))
            .map(|i| i as u8)
            .ok_or_else(|| error(value, &format!("`{name}` is not a day of the week")))
    };
    let mut mask = 0u8;
    for part in text.split(',') {
        let part = part.trim();
        if part == "*" {
            mask = 0x7f;
        } else if let Some((from, to)) = part.split_once('-') {
            let (from, to) = (day(from)?, day(to)?);
            let mut d = from;
            loop {
                mask |= 1 << d;
                if d == to {
                    break;
                }
                d = (d + 1) % 7;
            }
        } else {
            mask |= 1 << day(part)?;
        }
    }
    Ok(mask)
}

/// `{timezone, after, before}`; times as Pomerium writes them (`3:04 PM`,
/// `3PM`, `15:04:05`, `15:04`).
fn parse_time_of_day(value: &Tree) -> Result<Criterion, PplError> {
    let zone = match &value.kind {
        TreeKind::Map(entries) => entries.iter().find(|(k, _)| k == "timezone"),
        _ => None,
    };
    let Some((_, zone)) = zone else {
        return Err(error(
            value,
            "`time_of_day` needs a `timezone` (like `Europe/Berlin` or `UTC`)",
        ));
    };
    let zone = match &zone.kind {
        TreeKind::Str(name) => TimeZone::get(name.trim()).map_err(|_| {
            error(
                zone,
                &format!("`{name}` is not a time zone (use a name like `America/Phoenix`)"),
            )
        })?,
        _ => return Err(error(zone, "expected a time zone name")),
    };
    let (after, before) = bounds(value, "time_of_day", |v| {
        v.scalar_text()
            .as_deref()
            .and_then(parse_clock)
            .ok_or_else(|| {
                error(
                    v,
                    "expected a time like `15:04`, `15:04:05`, `3:04 PM` or `3PM`",
                )
            })
    })?;
    if let (Some(a), Some(b)) = (after, before)
        && a >= b
    {
        return Err(error(
            value,
            "`after` is not before `before`, so this matches no time: for a window across midnight write two rules under `or`",
        ));
    }
    Ok(Criterion::TimeOfDay {
        zone,
        after,
        before,
    })
}

fn parse_clock(text: &str) -> Option<Time> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    let (clock, meridiem) = if let Some(rest) = upper.strip_suffix("PM") {
        (rest.trim_end(), Some(12))
    } else if let Some(rest) = upper.strip_suffix("AM") {
        (rest.trim_end(), Some(0))
    } else {
        (upper.as_str(), None)
    };
    let mut parts = clock.splitn(3, ':');
    let hour: i8 = parts.next()?.parse().ok()?;
    let minute: i8 = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    let (second, nanos) = match parts.next() {
        None => (0, 0),
        Some(s) => {
            let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
            let nanos = if fraction.is_empty() {
                0
            } else if fraction.len() <= 9 && fraction.bytes().all(|b| b.is_ascii_digit()) {
                format!("{fraction:0<9}").parse().ok()?
            } else {
                return None;
            };
            (whole.parse().ok()?, nanos)
        }
    };
    let hour = match meridiem {
        Some(offset) if (1..=12).contains(&hour) => hour % 12 + offset,
        Some(_) => return None,
        None => hour,
    };
    Time::new(hour, minute, second, nanos).ok()
}

impl Ppl {
    /// Whether some criterion asks for a group (`groups`, `claim/groups`).
    pub(crate) fn asks_for_groups(&self) -> bool {
        self.allow.iter().chain(&self.deny).any(|t| {
            t.criteria.iter().any(|c| match c {
                Criterion::Groups(_) => true,
                Criterion::Claim { name, .. } => &**name == "groups",
                _ => false,
            })
        })
    }

    /// `allow` and `deny` of this policy.
    pub(crate) fn evaluate(&self, input: &Input<'_>, trace: &mut impl Trace) -> (Outcome, Outcome) {
        (
            any_of(&self.allow, input, trace, true),
            any_of(&self.deny, input, trace, false),
        )
    }
}

/// The OR of `terms` (rules and operators of one action).
fn any_of(terms: &[Term], input: &Input<'_>, trace: &mut impl Trace, allow: bool) -> Outcome {
    merge_or(terms.iter().map(|term| term.evaluate(input, trace, allow)))
}

impl Term {
    fn evaluate(&self, input: &Input<'_>, trace: &mut impl Trace, allow: bool) -> Outcome {
        let results = self.criteria.iter().map(|c| {
            let outcome = c.evaluate(input);
            trace.criterion(allow, self.op, c, outcome, input);
            outcome
        });
        let outcome = match self.op {
            Op::And => merge_and(results),
            Op::Or => merge_or(results),
            Op::Not => merge_and(results.map(invert)),
            Op::Nor => merge_or(results.map(invert)),
        };
        trace.term(allow, self.op, outcome);
        outcome
    }
}

fn invert(o: Outcome) -> Outcome {
    Outcome {
        value: !o.value,
        needs_login: o.needs_login,
    }
}

/// Pomerium's `merge_with_and`: true if all are; the marks of the results
/// that decided. Evaluates every result (marks need them all).
fn merge_and(results: impl Iterator<Item = Outcome>) -> Outcome {
    let (mut all, mut mark_true, mut mark_false) = (true, false, false);
    for r in results {
        all &= r.value;
        if r.value {
            mark_true |= r.needs_login;
        } else {
            mark_false |= r.needs_login;
        }
    }
    Outcome {
        value: all,
        needs_login: if all { mark_true } else { mark_false },
    }
}

/// Pomerium's `merge_with_or`: true if any is; the marks of the true ones
/// if true, of all if false. An empty list is false.
pub(crate) fn merge_or(results: impl Iterator<Item = Outcome>) -> Outcome {
    let (mut any, mut mark_true, mut mark_false) = (false, false, false);
    for r in results {
        any |= r.value;
        if r.value {
            mark_true |= r.needs_login;
        } else {
            mark_false |= r.needs_login;
        }
    }
    Outcome {
        value: any,
        needs_login: if any { mark_true } else { mark_false },
    }
}

/// The result of a criterion about the user when nobody is signed in.
const NOBODY: Outcome = Outcome {
    value: false,
    needs_login: true,
};

fn plain(value: bool) -> Outcome {
    Outcome {
        value,
        needs_login: false,
    }
}

impl Criterion {
    pub(crate) fn evaluate(&self, input: &Input<'_>) -> Outcome {
        let user = input.identity;
        match self {
            Criterion::Accept => plain(true),
            Criterion::Reject => plain(false),
            Criterion::AuthenticatedUser => user.map_or(NOBODY, |_| plain(true)),
            Criterion::Email(m) => user.map_or(NOBODY, |u| {
                plain(verified_email(u).is_some_and(|e| m.matches(e)))
            }),
            Criterion::Domain(m) => user.map_or(NOBODY, |u| {
                plain(verified_email_domain(u).is_some_and(|(_, d)| m.matches(d)))
            }),
            Criterion::User(m) => user.map_or(NOBODY, |u| plain(m.matches(&u.subject))),
            Criterion::Groups(m) => user.map_or(NOBODY, |u| {
                plain(m.matches_strs(u.groups.iter().map(String::as_str)))
            }),
            Criterion::Claim { name, matcher } => user.map_or(NOBODY, |u| {
                plain(match claim(u, name) {
                    Some(Value::Array(items)) => matcher.matches_values(items),
                    Some(value) => matcher.matches_values(std::slice::from_ref(value)),
                    None => matcher.matches_values(&[]),
                })
            }),
            Criterion::HttpMethod(m) => plain(input.method.is_some_and(|v| m.matches(v))),
            Criterion::HttpPath(m) => plain(m.matches(input.path)),
            Criterion::SourceIp(nets) => plain(input.source_ip.is_some_and(|ip| {
                let ip = canonical_ip(ip);
                nets.iter().any(|n| n.contains(&ip))
            })),
            Criterion::CorsPreflight => plain(input.preflight),
            Criterion::Date { after, before } => {
                let now = Timestamp::from_second(input.now).ok();
                plain(now.is_some_and(|now| {
                    after.is_none_or(|a| now > a) && before.is_none_or(|b| now < b)
                }))
            }
            Criterion::DayOfWeek(mask) => {
                plain(Timestamp::from_second(input.now).is_ok_and(|now| {
                    let day = TimeZone::UTC
                        .to_datetime(now)
                        .weekday()
                        .to_monday_zero_offset();
                    mask & (1 << day) != 0
                }))
            }
            Criterion::TimeOfDay {
                zone,
                after,
                before,
            } => plain(Timestamp::from_second(input.now).is_ok_and(|now| {
                let time = zone.to_datetime(now).time();
                after.is_none_or(|a| time > a) && before.is_none_or(|b| time < b)
            })),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A claim by name, else by its `/` or `.` separated path into nested
/// objects (Pomerium's `object_get`).
fn claim<'i>(identity: &'i Identity, name: &str) -> Option<&'i Value> {
    if let Some(value) = identity.claims.get(name) {
        return Some(value);
    }
    let mut segments = name.split(['/', '.']);
    let mut value = identity.claims.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

impl StrMatch {
    fn matches(&self, value: &str) -> bool {
        if self.case == Case::Fold {
            with_ascii_lowercase(value, |v| self.matches_exact(v))
        } else {
            self.matches_exact(value)
        }
    }

    fn matches_exact(&self, value: &str) -> bool {
        self.ops.iter().all(|op| match op {
            StrOp::Is(s) => **s == *value,
            StrOp::Not(s) => **s != *value,
            StrOp::StartsWith(s) => value.starts_with(&**s),
            StrOp::EndsWith(s) => value.ends_with(&**s),
            StrOp::Contains(s) => value.contains(&**s),
            StrOp::In(set) => set.contains(value),
            StrOp::NotIn(set) => !set.contains(value),
        })
    }
}

impl ListMatch {
    fn matches_values(&self, items: &[Value]) -> bool {
        self.ops.iter().all(|op| match op {
            ListOp::Has(s) => items.iter().any(|v| s.equals(v)),
            ListOp::Is(s) => items.len() == 1 && s.equals(&items[0]),
            ListOp::Exclude(s) => !items.iter().any(|v| s.equals(v)),
        })
    }

    fn matches_strs<'s>(&self, items: impl Iterator<Item = &'s str> + Clone) -> bool {
        self.ops.iter().all(|op| match op {
            ListOp::Has(s) => items.clone().any(|v| s.equals_str(v)),
            ListOp::Is(s) => {
                let mut it = items.clone();
                it.next().is_some_and(|v| s.equals_str(v)) && it.next().is_none()
            }
            ListOp::Exclude(s) => !items.clone().any(|v| s.equals_str(v)),
        })
    }
}

/// Watches an evaluation, for `explain` and the 403 page; [`NoTrace`] on
/// the decision path costs nothing.
pub(crate) trait Trace {
    fn criterion(
        &mut self,
        _allow: bool,
        _op: Op,
        _criterion: &Criterion,
        _outcome: Outcome,
        _input: &Input<'_>,
    ) {
    }
    fn term(&mut self, _allow: bool, _op: Op, _outcome: Outcome) {}
}

pub(crate) struct NoTrace;

impl Trace for NoTrace {}

/// Every criterion's result, in words.
#[derive(Default)]
pub(crate) struct Explain {
    /// Every criterion's line, when asked for (`explain`, `tests:`).
    pub(crate) lines: Option<Vec<String>>,
    /// Sentences for the criteria that kept an `allow` from matching, for
    /// the 403 page.
    pub(crate) unmet_allow: Vec<String>,
    /// … and for those that made a `deny` match.
    pub(crate) unmet_deny: Vec<String>,
}

impl Explain {
    /// Recording every criterion's line too.
    pub(crate) fn with_lines() -> Explain {
        Explain {
            lines: Some(Vec::new()),
            ..Explain::default()
        }
    }

    /// Adds a line, if lines are recorded.
    pub(crate) fn line(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push(line());
        }
    }
}

impl Trace for Explain {
    fn criterion(
        &mut self,
        allow: bool,
        op: Op,
        criterion: &Criterion,
        outcome: Outcome,
        input: &Input<'_>,
    ) {
        let action = if allow { "allow" } else { "deny" };
        let verdict = match (outcome.value, outcome.needs_login) {
            (_, true) => "needs sign-in",
            (true, false) => "yes",
            (false, false) => "no",
        };
        self.line(|| {
            format!(
                "  {:<10} {:<50} {verdict}",
                format!("{action} {}:", op.name()),
                criterion.to_string(),
            )
        });
        // What to tell a refused user: an allow criterion that failed (in
        // `and`/`or`), or a deny criterion that matched.
        let blocking = match (allow, op) {
            (true, Op::And | Op::Or) => !outcome.value,
            (true, Op::Not | Op::Nor) => outcome.value,
            (false, Op::And | Op::Or) => outcome.value,
            (false, Op::Not | Op::Nor) => !outcome.value,
        };
        if blocking && !outcome.needs_login {
            let list = if allow {
                &mut self.unmet_allow
            } else {
                &mut self.unmet_deny
            };
            list.push(criterion.unmet(allow, op, input));
        }
    }
}

impl Criterion {
    /// Why this criterion refused, for the person refused.
    fn unmet(&self, allow: bool, op: Op, input: &Input<'_>) -> String {
        let negated = matches!(op, Op::Not | Op::Nor) == allow;
        let what = self.to_string();
        let you = match self {
            Criterion::Groups(_) => {
                crate::identity::groups_sentence(input.identity.map_or(&[][..], |u| &u.groups))
            }
            Criterion::Email(_) | Criterion::Domain(_) => format!(
                "you are {}",
                input
                    .identity
                    .and_then(verified_email)
                    .unwrap_or("without a verified email")
            ),
            Criterion::Claim { name, .. } => match input.identity.and_then(|u| claim(u, name)) {
                Some(value) => format!("your `{name}` is {value}"),
                None => format!("your sign-in carried no `{name}` claim"),
            },
            Criterion::SourceIp(_) => match input.source_ip {
                Some(ip) => format!("you come from {ip}"),
                None => "the proxy did not say where you come from".to_owned(),
            },
            Criterion::HttpMethod(_) => {
                format!("the method is {}", input.method.unwrap_or("unknown"))
            }
            Criterion::HttpPath(_) => format!("the path is {}", input.path),
            _ => String::new(),
        };
        let need = if negated {
            format!("refuses {what}")
        } else {
            format!("needs {what}")
        };
        if you.is_empty() {
            need
        } else {
            format!("{need}; {you}")
        }
    }
}

impl fmt::Display for Criterion {
    /// The criterion in words: `group devops`, `email ending in @corp.com`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Criterion::Accept => f.write_str("anyone (accept)"),
            Criterion::Reject => f.write_str("nobody (reject)"),
            Criterion::AuthenticatedUser => f.write_str("a signed-in user"),
            Criterion::Email(m) => write!(f, "email {m}"),
            Criterion::Domain(m) => write!(f, "email domain {m}"),
            Criterion::User(m) => write!(f, "user id {m}"),
            Criterion::Groups(m) => write!(f, "group {m}"),
            Criterion::Claim { name, matcher } => write!(f, "claim `{name}` {matcher}"),
            Criterion::HttpMethod(m) => write!(f, "method {m}"),
            Criterion::HttpPath(m) => write!(f, "path {m}"),
            Criterion::SourceIp(nets) => {
                f.write_str("source address in ")?;
                for (i, n) in nets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n}")?;
                }
                Ok(())
            }
            Criterion::CorsPreflight => f.write_str("a CORS preflight"),
            Criterion::Date { after, before } => {
                f.write_str("a date")?;
                if let Some(a) = after {
                    write!(f, " after {a}")?;
                }
                if let Some(b) = before {
                    write!(f, " before {b}")?;
                }
                Ok(())
            }
            Criterion::DayOfWeek(mask) => {
                f.write_str("a day (UTC) among ")?;
                let names: Vec<&str> = (0..7)
                    .filter(|d| mask & (1 << d) != 0)
                    .map(|d| &DAYS[d][..3])
                    .collect();
                f.write_str(&names.join(","))
            }
            Criterion::TimeOfDay {
                zone,
                after,
                before,
            } => {
                write!(f, "a time ({})", zone.iana_name().unwrap_or("fixed offset"))?;
                if let Some(a) = after {
                    write!(f, " after {a}")?;
                }
                if let Some(b) = before {
                    write!(f, " before {b}")?;
                }
                Ok(())
            }
        }
    }
}

/// Every operator of a matcher, joined by "and" (they must all hold).
fn and_joined<T>(
    f: &mut fmt::Formatter<'_>,
    ops: &[T],
    each: impl Fn(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            f.write_str(" and ")?;
        }
        each(f, op)?;
    }
    Ok(())
}

impl fmt::Display for StrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        and_joined(f, &self.ops, |f, op| match op {
            StrOp::Is(s) => write!(f, "{s}"),
            StrOp::Not(s) => write!(f, "not {s}"),
            StrOp::StartsWith(s) => write!(f, "starting with {s}"),
            StrOp::EndsWith(s) => write!(f, "ending with {s}"),
            StrOp::Contains(s) => write!(f, "containing {s}"),
            StrOp::In(set) => write!(f, "one of {set}"),
            StrOp::NotIn(set) => write!(f, "none of {set}"),
        })
    }
}

impl fmt::Display for ListMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        and_joined(f, &self.ops, |f, op| match op {
            ListOp::Has(s) => write!(f, "{s}"),
            ListOp::Is(s) => write!(f, "{s} only"),
            ListOp::Exclude(s) => write!(f, "not {s}"),
        })
    }
}

#[cfg(test)]
#[path = "ppl_tests.rs"]
mod tests;
