-- What the dynamic line policy (docs/scoring-decisions.md, "Dynamic limits and pricing")
-- remembers per customer: whether it froze the line itself (only such freezes are
-- lifted on cure: a freeze by an operator or a suspension is not ours to lift), and the
-- score at its last raise (the next raise needs a better one).
CREATE TABLE line_policy (
    customer_id       uuid        NOT NULL PRIMARY KEY,
    frozen_by_policy  boolean     NOT NULL DEFAULT false,
    raise_score       integer,
    update_time       timestamptz NOT NULL DEFAULT now()
);
