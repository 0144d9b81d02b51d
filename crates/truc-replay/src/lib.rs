//! Replaying the published figures through the hub: [`plan`] builds the exact list of
//! documents a replay sends, so that the hub's own sent/received counts equal the reports'.
//!
//! The counting rule is the reports': one sent document counts once for its sender and once
//! for each recipient, and a recipient's count is taken when it acknowledges arrival.

pub mod plan;
mod rng;

pub use plan::{
    build, plan_2019, plan_2021, plan_2022, Constraints, FeedbackProfile, Pin, Plan, PlanError,
    PlannedDocument, Signing, Unit,
};
