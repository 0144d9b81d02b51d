//! The status machine of Decision 28/2018/QD-TTg, art. 10: forward moves only,
//! skipping allowed, nothing after a terminal state, rejection needs a reason.
//! A sender's recall, update or replace (13) waits for the recipient's answer:
//! agreed (15) is final, refused (16, with a reason) returns the delivery to
//! where it stood before the request.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Status {
    Arrived,
    Received,
    Assigned,
    Processing,
    Completed,
    Rejected,
    /// The sender asked to recall, update or replace the document (13).
    RecallRequested,
    /// The recipient agreed (15), or the hub withdrew a delivery not yet fetched.
    RecallAgreed,
    /// The recipient refused the request, with a reason (16).
    RecallRefused,
}

/// What a recall, update or replace does to one delivery (see
/// [`Status::request_effect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestEffect {
    /// Not yet fetched: taken from its queue, 13 then 15 recorded at once.
    Withdraw,
    /// The recipient holds it: 13 recorded, its answer (15 or 16) awaited.
    Ask,
    /// Nothing recorded, and why (a final state, or a request already waiting).
    Unchanged(StatusMoveError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusMoveError {
    #[error(
        "the delivery has not been acknowledged yet (current state: queued); it must arrive first"
    )]
    NotDelivered,
    #[error("current state is {current}, which is final; nothing may follow it")]
    Terminal { current: Status },
    #[error("current state is {current}; moving to {next} is not forward")]
    Backward { current: Status, next: Status },
    #[error("a rejection must say why")]
    ReasonRequired,
    #[error("status code {0} is not one a recipient may report")]
    UnknownCode(u32),
    #[error("13 (recall requested) is recorded by the sender's recall, update or replace, not moved by a recipient")]
    SenderOnly,
    #[error("a recall, update or replace is waiting for an answer: 15 (agree) or 16 (refuse), not {next}")]
    RecallPending { next: Status },
    #[error("current state is {current}; there is no recall, update or replace to answer")]
    NoRecallPending { current: Status },
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Arrived,
        Status::Received,
        Status::Assigned,
        Status::Processing,
        Status::Completed,
        Status::Rejected,
        Status::RecallRequested,
        Status::RecallAgreed,
        Status::RecallRefused,
    ];

    /// The edXML status code.
    pub fn code(self) -> u32 {
        match self {
            Status::Arrived => 1,
            Status::Rejected => 2,
            Status::Received => 3,
            Status::Assigned => 4,
            Status::Processing => 5,
            Status::Completed => 6,
            Status::RecallRequested => 13,
            Status::RecallAgreed => 15,
            Status::RecallRefused => 16,
        }
    }

    pub fn from_code(code: u32) -> Result<Self, StatusMoveError> {
        Ok(match code {
            1 => Status::Arrived,
            2 => Status::Rejected,
            3 => Status::Received,
            4 => Status::Assigned,
            5 => Status::Processing,
            6 => Status::Completed,
            13 => Status::RecallRequested,
            15 => Status::RecallAgreed,
            16 => Status::RecallRefused,
            other => return Err(StatusMoveError::UnknownCode(other)),
        })
    }

    /// Position on the forward path; rejection may follow any non-final
    /// state. The answers to a request are checked apart and rank last.
    fn rank(self) -> u8 {
        match self {
            Status::Arrived => 1,
            Status::Received => 2,
            Status::Assigned => 3,
            Status::Processing => 4,
            Status::Completed => 5,
            Status::Rejected => 6,
            Status::RecallRequested | Status::RecallAgreed | Status::RecallRefused => 7,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Rejected | Status::RecallAgreed
        )
    }

    /// The state a delivery's next move is checked against, from the codes
    /// of its history, oldest first: the last one, except that a refused
    /// request (16) returns to the state before the request (13).
    pub fn state_of(
        codes: impl IntoIterator<Item = u32>,
    ) -> Result<Option<Status>, StatusMoveError> {
        let mut state = None;
        let mut before_request = None;
        for code in codes {
            match Status::from_code(code)? {
                Status::RecallRequested => {
                    before_request = state;
                    state = Some(Status::RecallRequested);
                }
                Status::RecallRefused => state = before_request,
                other => state = Some(other),
            }
        }
        Ok(state)
    }

    /// Checks that a sender may ask a recipient that holds the document
    /// (`current` is its state) to agree to a recall, update or replace.
    pub fn check_request(current: Status) -> Result<(), StatusMoveError> {
        match current {
            Status::RecallRequested => Err(StatusMoveError::RecallPending {
                next: Status::RecallRequested,
            }),
            // A completed document may still be recalled: the recipient answers.
            Status::Rejected | Status::RecallAgreed => Err(StatusMoveError::Terminal { current }),
            _ => Ok(()),
        }
    }

    /// What a sender's recall, update or replace does to one recipient's
    /// delivery, given its state (`None`: not yet fetched).
    pub fn request_effect(current: Option<Status>) -> RequestEffect {
        match current {
            // Nobody holds it yet: withdrawn at once, nothing was delivered.
            None => RequestEffect::Withdraw,
            Some(current) => match Status::check_request(current) {
                Ok(()) => RequestEffect::Ask,
                Err(refusal) => RequestEffect::Unchanged(refusal),
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Arrived => "arrived",
            Status::Received => "received",
            Status::Assigned => "assigned",
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Rejected => "rejected",
            Status::RecallRequested => "recall-requested",
            Status::RecallAgreed => "recall-agreed",
            Status::RecallRefused => "recall-refused",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.name() == name)
    }

    /// Checks a move requested by a recipient. `current` is `None` while the
    /// delivery is queued and not yet acknowledged.
    pub fn check_move(
        current: Option<Status>,
        next: Status,
        reason: &str,
    ) -> Result<(), StatusMoveError> {
        if next == Status::RecallRequested {
            return Err(StatusMoveError::SenderOnly);
        }
        if matches!(next, Status::Rejected | Status::RecallRefused) && reason.trim().is_empty() {
            return Err(StatusMoveError::ReasonRequired);
        }
        let Some(current) = current else {
            return Err(StatusMoveError::NotDelivered);
        };
        let answer = matches!(next, Status::RecallAgreed | Status::RecallRefused);
        if current == Status::RecallRequested {
            return if answer {
                Ok(())
            } else {
                Err(StatusMoveError::RecallPending { next })
            };
        }
        if answer {
            return Err(StatusMoveError::NoRecallPending { current });
        }
        if current.is_terminal() {
            return Err(StatusMoveError::Terminal { current });
        }
        if next.rank() <= current.rank() {
            return Err(StatusMoveError::Backward { current, next });
        }
        Ok(())
    }
}

/// Checks the text of a status reason by the rule of the header's text
/// fields: at most `chars_max` characters, no control characters but
/// newlines and tabs. Whether a reason is required is the status machine's
/// part ([`Status::check_move`]); a reason of control characters alone would
/// otherwise pass for one.
pub fn check_reason(reason: &str, chars_max: usize) -> Result<(), crate::EnvelopeError> {
    crate::envelope::check_text("reason", reason, chars_max, false)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02} {}", self.code(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_withdraws_what_nobody_holds_and_asks_whoever_holds_it() {
        assert_eq!(Status::request_effect(None), RequestEffect::Withdraw);
        for current in Status::ALL {
            let effect = Status::request_effect(Some(current));
            match current {
                Status::RecallRequested | Status::Rejected | Status::RecallAgreed => {
                    assert!(matches!(effect, RequestEffect::Unchanged(_)), "{current:?}")
                }
                // A completed document may still be recalled: the recipient answers.
                _ => assert_eq!(effect, RequestEffect::Ask, "{current:?}"),
            }
        }
    }

    #[test]
    fn every_pair_of_states_follows_the_rules() {
        use Status::{RecallAgreed, RecallRefused, RecallRequested};
        for current in std::iter::once(None).chain(Status::ALL.into_iter().map(Some)) {
            for next in Status::ALL {
                let result = Status::check_move(current, next, "lý do");
                let answer = matches!(next, RecallAgreed | RecallRefused);
                let expected_ok = match current {
                    _ if next == RecallRequested => false,
                    None => false,
                    Some(RecallRequested) => answer,
                    _ if answer => false,
                    // Never a state: `state_of` returns to the one before the request.
                    Some(RecallRefused) => false,
                    Some(c) if c.is_terminal() => false,
                    Some(c) => next == Status::Rejected || next.rank() > c.rank(),
                };
                assert_eq!(
                    result.is_ok(),
                    expected_ok,
                    "{current:?} -> {next:?}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn rejection_needs_a_reason_and_codes_round_trip() {
        assert_eq!(
            Status::check_move(Some(Status::Arrived), Status::Rejected, "  "),
            Err(StatusMoveError::ReasonRequired)
        );
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Ok(status));
            assert_eq!(Status::from_name(status.name()), Some(status));
        }
        assert!(Status::from_code(0).is_err());
        assert!(Status::from_code(14).is_err());
        assert_eq!(
            Status::check_move(Some(Status::RecallRequested), Status::RecallRefused, ""),
            Err(StatusMoveError::ReasonRequired)
        );
    }

    #[test]
    fn a_refused_request_returns_to_the_state_before_it() {
        let state = |codes: &[u32]| Status::state_of(codes.iter().copied()).unwrap();
        assert_eq!(state(&[]), None);
        assert_eq!(state(&[1, 3]), Some(Status::Received));
        assert_eq!(state(&[1, 3, 13]), Some(Status::RecallRequested));
        assert_eq!(state(&[1, 3, 13, 16]), Some(Status::Received));
        assert_eq!(
            state(&[1, 3, 13, 16, 5, 13, 15]),
            Some(Status::RecallAgreed)
        );
        assert!(Status::check_request(Status::Completed).is_ok());
        assert!(Status::check_request(Status::RecallRequested).is_err());
        assert!(Status::check_request(Status::Rejected).is_err());
        assert!(Status::check_request(Status::RecallAgreed).is_err());
    }

    #[test]
    fn reasons_follow_the_text_rule() {
        assert!(check_reason("Sai thẩm quyền\nđề nghị gửi lại", 2_000).is_ok());
        assert!(check_reason("", 2_000).is_ok());
        for bad in ["\0", "\u{1b}[2J", "Đã nhận\u{7}", "\r"] {
            let error = check_reason(bad, 2_000).unwrap_err();
            assert_eq!(error.field, "reason");
            assert!(!error.too_large);
        }
        assert!(check_reason(&"ệ".repeat(2_000), 2_000).is_ok());
        assert!(check_reason(&"ệ".repeat(2_001), 2_000).is_err());
    }
}
