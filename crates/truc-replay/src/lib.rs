//! Replaying the published figures through the hub: [`plan`] builds the exact list of
//! documents a replay sends, so that the hub's own sent/received counts equal the reports';
//! [`driver`] sends them through a real hub; [`source`] reads the hub's figures back (operator
//! API or data directory); [`report`] sets them beside [`published`] figures and renders the
//! comparison as text, JSON and CSV; [`attachments`] says how large each document's one
//! attachment is (320 B, a fixed size, or an assumed distribution of PDF sizes).
//!
//! The counting rule is the reports': one sent document counts once for its sender and once
//! for each recipient, and a recipient's count is taken when it acknowledges arrival.

pub mod attachments;
pub mod driver;
pub mod plan;
pub mod progress;
pub mod published;
pub mod report;
pub mod source;

pub use plan::{
    build, plan_2019, plan_2021, plan_2022, Constraints, FeedbackProfile, Pin, Plan, PlanError,
    PlannedDocument, Signing, Unit,
};
