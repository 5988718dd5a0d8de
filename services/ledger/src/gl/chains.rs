//! Linked chains, shared by `CreateAccounts` and `CreateTransfers`: an item flagged
//! `linked` succeeds or fails together with the next one; a chain ends at the first item
//! without the flag. A chain that fails leaves the state exactly as before it (the state
//! is snapshotted when the chain opens and restored when it fails).

/// What one item came to, before chain rules are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<S> {
    /// Applied to the state (CREATED).
    Applied(S),
    /// Already there with identical fields (EXISTS): a success that changed nothing.
    Existed(S),
    /// Refused; the state is unchanged.
    Failed(S),
}

/// The statuses chain rules assign.
#[derive(Clone, Copy, Debug)]
pub struct ChainStatuses<S> {
    pub linked_event_failed: S,
    pub linked_event_chain_open: S,
}

/// Runs `items` in order through `existing` (the EXISTS / EXISTS_WITH_DIFFERENT_FIELDS
/// check, which precedes the chain statuses) and `apply` (every other check, then the
/// change), chain by chain. Returns one status per item, in order.
///
/// Precedence inside a chain: an item's own EXISTS / EXISTS_WITH_DIFFERENT_FIELDS first;
/// then LINKED_EVENT_FAILED for every item after a failed one and for every applied item
/// of a failed chain; then LINKED_EVENT_CHAIN_OPEN for the last item of a batch that ends
/// with `linked`; then the item's own checks.
pub fn run_chains<I, St: Clone, S: Copy>(
    items: &[I],
    is_linked: impl Fn(&I) -> bool,
    state: &mut St,
    statuses: ChainStatuses<S>,
    mut existing: impl FnMut(&St, &I) -> Option<Outcome<S>>,
    mut apply: impl FnMut(&mut St, usize, &I) -> Outcome<S>,
) -> Vec<S> {
    let mut results = Vec::with_capacity(items.len());
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        while is_linked(&items[end]) && end + 1 < items.len() {
            end += 1;
        }
        let chain_open = is_linked(&items[end]);
        let snapshot = (end > start || chain_open).then(|| state.clone());
        let mut outcomes = Vec::with_capacity(end - start + 1);
        let mut failed = false;
        for (index, item) in items.iter().enumerate().take(end + 1).skip(start) {
            let outcome = if let Some(found) = existing(state, item) {
                found
            } else if failed {
                Outcome::Failed(statuses.linked_event_failed)
            } else if chain_open && index == end {
                Outcome::Failed(statuses.linked_event_chain_open)
            } else {
                apply(state, index, item)
            };
            failed |= matches!(outcome, Outcome::Failed(_));
            outcomes.push(outcome);
        }
        if failed && let Some(snapshot) = snapshot {
            *state = snapshot;
        }
        results.extend(outcomes.into_iter().map(|outcome| match outcome {
            Outcome::Applied(_) if failed => statuses.linked_event_failed,
            Outcome::Applied(status) | Outcome::Existed(status) | Outcome::Failed(status) => status,
        }));
        start = end + 1;
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items are (linked, ok); the state counts applied items.
    fn run(items: &[(bool, bool)]) -> (Vec<&'static str>, u32) {
        let mut applied = 0u32;
        let results = run_chains(
            items,
            |item| item.0,
            &mut applied,
            ChainStatuses {
                linked_event_failed: "linked_failed",
                linked_event_chain_open: "chain_open",
            },
            |_, _| None,
            |state, _, item| {
                if item.1 {
                    *state += 1;
                    Outcome::Applied("created")
                } else {
                    Outcome::Failed("bad")
                }
            },
        );
        (results, applied)
    }

    #[test]
    fn a_failed_item_fails_its_whole_chain_and_only_it() {
        let (results, applied) = run(&[(true, true), (true, false), (false, true), (false, true)]);
        assert_eq!(
            results,
            ["linked_failed", "bad", "linked_failed", "created"]
        );
        assert_eq!(applied, 1);
    }

    #[test]
    fn a_batch_ending_with_linked_leaves_its_chain_open() {
        let (results, applied) = run(&[(false, true), (true, true), (true, true)]);
        assert_eq!(results, ["created", "linked_failed", "chain_open"]);
        assert_eq!(applied, 1);
    }

    #[test]
    fn unlinked_items_are_independent() {
        let (results, applied) = run(&[(false, false), (false, true)]);
        assert_eq!(results, ["bad", "created"]);
        assert_eq!(applied, 1);
    }
}
