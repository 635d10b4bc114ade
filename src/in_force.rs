//! The policy in force, and what each decision made under it leaves
//! behind: its count and latency in the metrics, and its log line.
//!
//! A reload swaps the compiled policy whole ([`PolicyInForce::replace`]); a
//! decision loads it once and keeps it to the end, even across a reload.
//! The front ends record what they answered (as Pomerium's `Check` does),
//! so the decision core knows no metric and no log line.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use opentelemetry::trace::FutureExt as _;

use crate::decision::{Decider, Decision, Request, Step};
use crate::metrics::{DecisionMetrics, Metrics, Outcome};
use crate::policy::{Policy, Target};
use crate::telemetry::Asker;
use crate::traces::DecisionSpan;

/// One compiled policy and the decision counters of its routes (resolved
/// per route of that policy, so they are swapped together).
pub struct InForce {
    pub policy: Arc<Policy>,
    counters: Option<DecisionMetrics>,
}

impl InForce {
    /// Counts `decision`, made for `asker` since `started`, logs it (a
    /// refusal at info, the rest at debug) and ends its trace span.
    pub fn record(
        &self,
        asker: Asker<'_>,
        target: Option<&Target<'_>>,
        decision: &Decision,
        started: Instant,
        span: DecisionSpan,
    ) {
        if let Some(counters) = &self.counters {
            let outcome = match decision {
                Decision::Allow { .. } => Outcome::Allow,
                Decision::SignIn { .. } => Outcome::SignIn,
                Decision::Deny { .. } => Outcome::Deny,
                Decision::Unavailable => Outcome::Unavailable,
            };
            counters.record(
                asker.front_end,
                decision.route(),
                outcome,
                started.elapsed(),
            );
        }
        // The span ends with the decision; the log line, written after,
        // still carries its trace id.
        let traced = span.logged().cloned();
        span.end(&self.policy, decision);
        let _traced = traced.map(opentelemetry::Context::attach);
        crate::telemetry::log_decision(&self.policy, asker, target, decision);
    }
}

/// The policy decisions are made under now.
pub struct PolicyInForce {
    current: ArcSwap<InForce>,
    /// Where decisions are counted (none: not counted).
    metrics: Option<Arc<Metrics>>,
}

impl PolicyInForce {
    pub fn new(policy: Arc<Policy>, metrics: Option<Arc<Metrics>>) -> PolicyInForce {
        PolicyInForce {
            current: ArcSwap::from_pointee(in_force(policy, metrics.as_deref())),
            metrics,
        }
    }

    /// Decides `request` for `asker` under the policy in force and records
    /// it, if that needs no I/O (most decisions: they need no future at
    /// all). `None`: ask [`PolicyInForce::decide`].
    pub fn decide_now<'a, C>(
        &self,
        decider: &Decider,
        asker: Asker<'_>,
        request: Request<'a, C>,
    ) -> Option<Decision>
    where
        C: IntoIterator<Item = &'a str>,
    {
        let started = Instant::now();
        let in_force = self.current.load();
        let target = request.target.as_ref().ok();
        match decider.try_now(&in_force.policy, request) {
            Step::Done(decision) => {
                let span = DecisionSpan::start(asker.front_end, asker.trace, started);
                in_force.record(asker, target, &decision, started, span);
                Some(decision)
            }
            Step::NeedsIo(_) => None,
        }
    }

    /// Decides `request` for `asker` under the policy in force, with I/O
    /// if it needs some, and records it.
    pub async fn decide<'a, C>(
        &self,
        decider: &Decider,
        asker: Asker<'_>,
        request: Request<'a, C>,
    ) -> Decision
    where
        C: IntoIterator<Item = &'a str>,
    {
        let started = Instant::now();
        // One policy for the whole decision, even if a reload swaps it
        // meanwhile (an `Arc`, not a guard: the decision may await).
        let in_force = self.current.load_full();
        let target = request.target.as_ref().ok();
        let span = DecisionSpan::start(asker.front_end, asker.trace, started);
        let decision = match decider.try_now(&in_force.policy, request) {
            Step::Done(decision) => decision,
            // The store and refresh spans of the I/O are the decision's
            // children.
            Step::NeedsIo(pending) => match span.context() {
                Some(cx) => {
                    decider
                        .finish(&in_force.policy, pending)
                        .with_context(cx.clone())
                        .await
                }
                None => decider.finish(&in_force.policy, pending).await,
            },
        };
        in_force.record(asker, target, &decision, started, span);
        decision
    }

    /// The compiled policy alone.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.current.load().policy)
    }

    /// Puts `policy` in force for every decision that starts from now on;
    /// returns the one it replaces.
    pub fn replace(&self, policy: Arc<Policy>) -> Arc<Policy> {
        let next = in_force(policy, self.metrics.as_deref());
        Arc::clone(&self.current.swap(Arc::new(next)).policy)
    }
}

fn in_force(policy: Arc<Policy>, metrics: Option<&Metrics>) -> InForce {
    InForce {
        counters: metrics.map(|metrics| DecisionMetrics::new(metrics, &policy)),
        policy,
    }
}
